"""Comparison tokens: fetched from the keyhost in one batch per query, cached per process.

``lf.ghost.collect(session)`` scans the plan for the tokens it needs and fetches them all in one
request. A plain ``.collect()`` still works: a kernel missing a token asks the keyhost itself, in Rust,
once per (column epoch, constant), through the connection pool of the active session of the
column's keyhost (:func:`activate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from ghostpii import _internal
from ghostpii import client as _client
from ghostpii.client import Session

__all__ = ["activate", "connect", "prefetch"]


def activate(session: Session) -> Session:
    """Make ``session`` the one used for token fetches of its keyhost (``gp.connect`` does this)."""
    session._rs.activate(session.keyhost_id)  # kernels of a plain .collect() reach the keyhost through its pool
    return session


def connect(
    url: str, token: str, *, timeout: tuple[float, float] = _client.DEFAULT_TIMEOUT, retries: int = 3
) -> Session:
    """Connect to the keyhost at ``url`` with an identity ``token`` (checked at once).

    ``timeout`` is (seconds to connect, seconds for a whole request and its answer); ``retries``
    bounds the retries of refused connections, 502/503/504 answers and, for answer-key requests
    (idempotent), read timeouts. The session becomes the active one for its keyhost, so the
    kernels of a plain ``.collect()`` can fetch comparison tokens and pads through its connection
    pool. Bad, expired or revoked tokens raise :class:`~ghostpii.AuthenticationError`.
    """
    return activate(_client.connect(url, token, timeout=timeout, retries=retries))


@dataclass(frozen=True)
class PlannedTokens:
    """The comparison and match tokens a plan needs, with their values (picklable: a
    distributed run ships them to its workers)."""

    needs: list[dict[str, Any]]
    tokens: list[bytes]
    match_needs: list[dict[str, Any]]
    match_tokens: list[bytes]

    def install(self) -> None:
        """Cache the tokens in this process, where the kernels look for them."""
        if self.needs:
            _internal.insert_tokens(self.needs, self.tokens)
        if self.match_needs:
            _internal.insert_match_tokens(self.match_needs, self.match_tokens)


def prefetch(lf: pl.LazyFrame, session: Session) -> None:
    """Resolve every token ``lf`` needs in ONE keyhost request (nothing is sent if none are needed)."""
    plan_tokens(lf, session)


def plan_tokens(lf: pl.LazyFrame, session: Session) -> PlannedTokens:
    """The tokens ``lf`` needs and their values, fetched in ONE keyhost request (none if none are
    needed) and cached for the kernels: what :func:`prefetch` does, and what a distributed run
    ships to its workers. One call into Rust (``token_plan.rs``), which resolves the plan's types
    through ``lf.explain`` (the plugin's type functions record the tokens; explain re-resolves
    even when the frame's schema is cached) and fetches through the session's connection pool."""
    activate(session)
    needs, tokens, match_needs, match_tokens = _internal.plan_tokens(
        session.keyhost_id, lambda: lf.explain(optimized=False)
    )
    return PlannedTokens(needs, tokens, match_needs, match_tokens)


def clear() -> None:
    """Forget cached tokens."""
    _internal.clear_tokens()
    _internal.clear_match_tokens()
