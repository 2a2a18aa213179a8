"""Progress bars for long encryption, key and FHE work (tqdm, shown on large inputs only)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["progress"]

THRESHOLD = 2_000_000


class _Bar(Protocol):
    def update(self, n: int) -> object: ...


class _Silent:
    def update(self, n: int) -> None:
        return None


@contextmanager
def progress(total: int, desc: str, show: bool | None = None, unit: str = "cell") -> Iterator[_Bar]:
    """A tqdm bar over ``total`` cells (or other ``unit``) when ``show`` (default: large input on a
    terminal)."""
    if show is None:
        show = total >= THRESHOLD and sys.stderr.isatty()
    if not show:
        yield _Silent()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
