"""Sessions with a keyhost: ``gp.connect(url, token)``.

One :class:`Session` wraps one HTTP connection pool (keep-alive, timeouts, retries on
transient failures, https when the URL says so) and counts its round trips.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ghostpii.allow import Allow
from ghostpii.errors import KeyhostError, error_for

__all__ = ["Dataset", "Session", "connect"]

DEFAULT_TIMEOUT = (5.0, 120.0)


@dataclass(frozen=True)
class Dataset:
    """A dataset on a keyhost, as seen through a session."""

    name: str
    id: int
    owner: str
    session: Session

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, id={self.id}, owner={self.owner!r})"


class Session:
    """An authenticated connection to a keyhost.

    Create one with :func:`connect` (or ``Keyhost.admin()``). All answer keys of a query are
    fetched in one request; :meth:`stats` counts the round trips.
    """

    def __init__(self, url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT, retries: int = 3):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"keyhost URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._token = token.strip()
        self._timeout = timeout
        self._http = requests.Session()
        retry = Retry(
            total=retries,
            connect=retries,
            backoff_factor=0.1,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "POST", "PUT", "DELETE"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=8)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._http.headers["Authorization"] = f"Bearer {self._token}"
        self._lock = threading.Lock()
        self._stats = {"round_trips": 0, "answer_key_requests": 0, "descriptors": 0}
        self._whoami: dict[str, Any] | None = None

    def __repr__(self) -> str:
        who = self._whoami["identity"] if self._whoami else "?"
        return f"Session(url={self.url!r}, identity={who!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> Any:
        with self._lock:
            self._stats["round_trips"] += 1
        try:
            r = self._http.request(method, self.url + path, timeout=self._timeout, **kw)
        except requests.RequestException as e:
            raise KeyhostError(f"cannot reach the keyhost at {self.url}: {e}", reason="unreachable") from e
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise error_for(
                    err.get("reason", "internal"),
                    err.get("message", r.text),
                    status=r.status_code,
                    missing_grant=err.get("missing_grant"),
                )
            except (ValueError, KeyError, TypeError):
                raise KeyhostError(
                    f"keyhost answered HTTP {r.status_code}: {r.text[:200]}", status=r.status_code
                ) from None
        return r.json()

    def stats(self) -> dict[str, int]:
        """Counters of this session: keyhost round trips, answer-key requests, descriptors sent."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            for k in self._stats:
                self._stats[k] = 0

    # -- identity ---------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The identity and role of this session's token, and the keyhost id."""
        if self._whoami is None:
            self._whoami = self._request("GET", "/v1/whoami")
        return self._whoami

    @property
    def keyhost_id(self) -> str:
        return str(self.whoami()["keyhost_id"])

    # -- datasets ---------------------------------------------------------------------------
    def create_dataset(self, name: str, *, exist_ok: bool = True) -> Dataset:
        """Create a dataset owned by this identity (or return it if it exists and ``exist_ok``)."""
        d = self._request("POST", "/v1/datasets", json={"name": name, "exist_ok": exist_ok})
        return Dataset(d["name"], int(d["id"]), d["owner"], self)

    def dataset(self, name: str) -> Dataset:
        """A dataset visible to this identity, by name."""
        for d in self._request("GET", "/v1/datasets")["datasets"]:
            if d["name"] == name:
                return Dataset(d["name"], int(d["id"]), d["owner"], self)
        raise error_for("not_found", f"dataset {name!r} is unknown or not visible to this identity", status=404)

    def datasets(self) -> list[Dataset]:
        return [
            Dataset(d["name"], int(d["id"]), d["owner"], self) for d in self._request("GET", "/v1/datasets")["datasets"]
        ]

    def register_column(self, dataset: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Register an encrypted column; returns its ids and the keys for encryption only."""
        return self._request("POST", f"/v1/datasets/{dataset}/columns", json=spec)  # type: ignore[no-any-return]

    def allocate_rids(self, dataset: str, count: int, columns: Sequence[int]) -> int:
        """Allocate ``count`` row ids for the columns; returns the first."""
        r = self._request("POST", f"/v1/datasets/{dataset}/rids", json={"count": count, "columns": list(columns)})
        return int(r["start"])

    # -- identities, tokens, grants ----------------------------------------------------------
    def create_identity(self, name: str, role: str = "member", *, exist_ok: bool = False) -> dict[str, Any]:
        return self._request("POST", "/v1/identities", json={"name": name, "role": role, "exist_ok": exist_ok})  # type: ignore[no-any-return]

    def identities(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/identities")["identities"]  # type: ignore[no-any-return]

    def create_token(self, identity: str, *, ttl_seconds: int | None = 30 * 86400) -> str:
        """Issue a new token for ``identity``; the secret is returned once, stored hashed."""
        return str(
            self._request("POST", "/v1/tokens", json={"identity": identity, "ttl_seconds": ttl_seconds})["token"]
        )

    def tokens(self, identity: str | None = None) -> list[dict[str, Any]]:
        params = {"identity": identity} if identity else None
        return self._request("GET", "/v1/tokens", params=params)["tokens"]  # type: ignore[no-any-return]

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/v1/tokens/{token_id}")

    def rotate_token(self, *, ttl_seconds: int | None = None) -> str:
        """Replace this session's token by a new one for the same identity (the old token is
        revoked at once); the session continues with the new token, which is returned.

        The new token expires when the old one would have (or after ``ttl_seconds`` if that is
        sooner): rotation never extends a token's life."""
        body: dict[str, Any] = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        token = str(self._request("POST", "/v1/tokens/rotate", json=body)["token"])
        self._token = token
        self._http.headers["Authorization"] = f"Bearer {token}"
        return token

    def grant(
        self,
        identity: str,
        dataset: Dataset | str,
        allows: Iterable[Allow],
        *,
        ttl_seconds: int | None = 30 * 86400,
        issue_token: bool = True,
    ) -> str | None:
        """Grant ``allows`` on ``dataset`` to ``identity`` (created if needed); return a new token for it."""
        ds = dataset.name if isinstance(dataset, Dataset) else dataset
        self.create_identity(identity, exist_ok=True)
        for a in allows:
            if not isinstance(a, Allow):
                raise TypeError(f"grant takes gp.allow.* values, got {a!r}")
            self._request(
                "POST",
                "/v1/grants",
                json={
                    "identity": identity,
                    "dataset": ds,
                    "column": a.column,
                    "operation": a.operation,
                    "params": a.params,
                },
            )
        return self.create_token(identity, ttl_seconds=ttl_seconds) if issue_token else None

    def grants(self, dataset: Dataset | str | None = None, identity: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {}
        if dataset is not None:
            params["dataset"] = dataset.name if isinstance(dataset, Dataset) else dataset
        if identity is not None:
            params["identity"] = identity
        return self._request("GET", "/v1/grants", params=params)["grants"]  # type: ignore[no-any-return]

    def revoke(self, identity: str, dataset: Dataset | str, allows: Iterable[Allow] | None = None) -> int:
        """Revoke grants of ``identity`` on ``dataset`` (all, or those matching ``allows``). Returns how many."""
        wanted = {(a.operation, a.column) for a in allows} if allows is not None else None
        n = 0
        for g in self.grants(dataset, identity):
            if wanted is None or (g["operation"], g["column"]) in wanted:
                self._request("DELETE", f"/v1/grants/{g['grant_id']}")
                n += 1
        return n

    # -- answer keys and audit ----------------------------------------------------------------
    def answer_keys(self, descriptors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ask for many answer keys in ONE request. Raises the typed error of the first refusal."""
        if not descriptors:
            return []
        with self._lock:
            self._stats["answer_key_requests"] += 1
            self._stats["descriptors"] += len(descriptors)
        results: list[dict[str, Any]] = self._request("POST", "/v1/answer-keys", json={"requests": list(descriptors)})[
            "results"
        ]
        for r in results:
            if not r.get("ok"):
                raise error_for(
                    r.get("reason", "internal"),
                    r.get("message", "refused"),
                    status=403,
                    missing_grant=r.get("missing_grant"),
                )
        return results

    def audit(
        self,
        dataset: Dataset | str | None = None,
        *,
        identity: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """Audit entries visible to this identity (owners: their datasets) as a DataFrame."""
        params: dict[str, str] = {}
        if dataset is not None:
            params["dataset"] = dataset.name if isinstance(dataset, Dataset) else dataset
        if identity:
            params["identity"] = identity
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else since
        if limit is not None:
            params["limit"] = str(limit)
        entries = self._request("GET", "/v1/audit", params=params)["entries"]
        schema = {
            "index": pl.Int64, "time": pl.String, "identity": pl.String, "dataset": pl.String,
            "column": pl.String, "operation": pl.String, "params": pl.String, "rid_count": pl.Int64,
            "rid_digest": pl.String, "decision": pl.String, "reason": pl.String,
            "prev_hash": pl.String, "hash": pl.String,
        }  # fmt: skip
        rows = [{k: (json.dumps(e.get(k)) if k == "params" else e.get(k)) for k in schema} for e in entries]
        return pl.DataFrame(rows, schema=schema)

    def verify_audit(self) -> dict[str, Any]:
        """Recompute the audit hash chain on the keyhost (admin only)."""
        return self._request("GET", "/v1/audit/verify")  # type: ignore[no-any-return]

    def audit_checkpoint(self) -> dict[str, Any]:
        """The keyhost's current signed audit checkpoint (Merkle root of the whole log, Ed25519)."""
        return self._request("GET", "/v1/audit/checkpoint")  # type: ignore[no-any-return]

    # -- privacy budgets -------------------------------------------------------------------------
    def budget(self, dataset: Dataset | str, identity: str | None = None) -> dict[str, Any]:
        """Privacy budget of this identity (or, for owners/admins, ``identity``) on ``dataset``.

        One (ε, δ) total caps every DP answer (Laplace and Gaussian alike): ``epsilon_spent``,
        ``epsilon_total``, ``remaining``, ``delta``, ``total_source`` (``set``, ``grant`` or
        ``keyhost_default``), ``answers``, and ``accounting`` (the basic and zCDP bounds the
        spent ε is the smaller of).
        """
        params = {"dataset": dataset.name if isinstance(dataset, Dataset) else dataset}
        if identity is not None:
            params["identity"] = identity
        return self._request("GET", "/v1/budget", params=params)  # type: ignore[no-any-return]

    def set_budget(
        self, identity: str, dataset: Dataset | str, total: float, *, delta: float | None = None
    ) -> dict[str, Any]:
        """Set the total privacy budget (ε, and optionally δ) of ``identity`` on ``dataset`` (owner or admin).

        It caps every DP mechanism together; without ``delta`` the keyhost's default δ applies.
        """
        ds = dataset.name if isinstance(dataset, Dataset) else dataset
        body: dict[str, Any] = {"identity": identity, "dataset": ds, "total": float(total)}
        if delta is not None:
            body["delta"] = float(delta)
        return self._request("PUT", "/v1/budget", json=body)  # type: ignore[no-any-return]

    def reset_budget(self, identity: str, dataset: Dataset | str) -> dict[str, Any]:
        """Forget what ``identity`` has spent on ``dataset`` (owner or admin)."""
        ds = dataset.name if isinstance(dataset, Dataset) else dataset
        return self._request("POST", "/v1/budget/reset", json={"identity": identity, "dataset": ds})  # type: ignore[no-any-return]

    # -- key lifecycle ---------------------------------------------------------------------------
    def rotate_column_key(self, dataset: Dataset | str, column: str) -> dict[str, Any]:
        """Start a new key epoch for ``column`` (owner or admin): new encryptions use it; data
        encrypted under older epochs still gets answer keys."""
        ds = dataset.name if isinstance(dataset, Dataset) else dataset
        return self._request("POST", f"/v1/datasets/{ds}/columns/{column}/rotate", json={})  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT, retries: int = 3) -> Session:
    """Connect to the keyhost at ``url`` with an identity ``token``.

    The token is checked at once: a bad, expired or revoked token raises
    :class:`~ghostpii.errors.AuthenticationError`.
    """
    s = Session(url, token, timeout=timeout, retries=retries)
    s.whoami()
    return s
