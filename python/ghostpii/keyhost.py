"""The embedded keyhost: ``gp.Keyhost.local()`` runs the Rust keyhost inside this process."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ghostpii import _internal
from ghostpii.client import Session

__all__ = ["Keyhost"]


class Keyhost:
    """A keyhost running in this process (SQLite in ``path``, HTTP on loopback).

    Use it as a context manager, or call :meth:`close`. Other processes reach it at :attr:`url`.
    """

    def __init__(self, inner: _internal.LocalKeyhost, path: Path, owns_dir: bool) -> None:
        self._inner = inner
        self.path = path
        self._owns_dir = owns_dir

    @classmethod
    def local(
        cls,
        path: str | Path | None = None,
        *,
        listen: str = "127.0.0.1:0",
        default_dp_budget: float | None = None,
        default_dp_delta: float | None = None,
    ) -> Keyhost:
        """Start an embedded keyhost; with ``path=None`` its data lives in a temporary directory.

        ``default_dp_budget`` / ``default_dp_delta``: the (ε, δ) total of an identity on a dataset
        when no budget is set or granted (defaults 1.0 and 1e-5).
        """
        owns = path is None
        p = Path(tempfile.mkdtemp(prefix="ghostpii-keyhost-")) if path is None else Path(path)
        return cls(_internal.LocalKeyhost(p, listen, default_dp_budget, default_dp_delta), p, owns)

    @property
    def url(self) -> str:
        """The keyhost's base URL, e.g. ``http://127.0.0.1:40123``."""
        return str(self._inner.url)

    @property
    def keyhost_id(self) -> str:
        return str(self._inner.keyhost_id)

    def admin(self) -> Session:
        """A session as this keyhost's bootstrap admin identity."""
        from ghostpii.tokens import activate

        token = Path(self._inner.admin_token_path).read_text().strip()
        return activate(Session(self.url, token))

    def close(self) -> None:
        """Stop the keyhost; a temporary data directory is removed."""
        self._inner.close()
        if self._owns_dir:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Keyhost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._inner.running else "closed"
        return f"Keyhost(url={self.url!r}, path={str(self.path)!r}, {state})"
