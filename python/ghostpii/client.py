"""Sessions with a keyhost: ``gp.connect(url, token)``.

One :class:`Session` wraps one HTTP connection pool, in Rust (keep-alive, timeouts, retries on
transient failures, https when the URL says so), and counts its round trips. Kernels that
miss tokens or pads under a plain ``.collect()`` use the same pool, without calling back into
Python.
"""

from __future__ import annotations

import json as _json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn, overload
from urllib.parse import quote, urlencode

import polars as pl

from ghostpii import _internal, frames
from ghostpii.allow import Allow, Allows, flatten
from ghostpii.errors import KeyhostError, error_for

__all__ = ["AuditPage", "Dataset", "Session", "connect"]

DEFAULT_TIMEOUT = (5.0, 120.0)
AUDIT_PAGE = 1000


def _seg(name: str) -> str:
    """One URL path segment: every reserved character (``/ ? # %``, non-ASCII, …) percent-encoded."""
    return quote(name, safe="")


@dataclass(frozen=True)
class _Response:
    """A keyhost response, read to the end."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)


@dataclass(frozen=True)
class Dataset:
    """A dataset on a keyhost, as seen through a session."""

    name: str
    id: int
    owner: str
    session: Session

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, id={self.id}, owner={self.owner!r})"


_AUDIT_SCHEMA: dict[str, type[pl.DataType]] = {
    "index": pl.Int64, "time": pl.String, "identity": pl.String, "dataset": pl.String,
    "column": pl.String, "operation": pl.String, "params": pl.String, "rid_count": pl.Int64,
    "rid_digest": pl.String, "decision": pl.String, "reason": pl.String,
    "prev_hash": pl.String, "hash": pl.String,
}  # fmt: skip


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit log: ``entries`` (newest first unless asked otherwise), ``total``
    entries matching the filter over all pages, and ``next``, the cursor of the following page
    (``None`` on the last page)."""

    entries: pl.DataFrame
    total: int
    next: int | None

    @property
    def partial(self) -> bool:
        """True when the page does not hold every matching entry."""
        return self.entries.height < self.total

    def summary(self) -> str:
        """``showing N of M entries`` (and how to get the next page)."""
        line = f"showing {self.entries.height} of {self.total} entries"
        return line + (f"; older entries: --before {self.next}" if self.next is not None else "")


class Session:
    """An authenticated connection to a keyhost.

    Create one with :func:`connect` (or ``Keyhost.admin()``). All answer keys of a query are
    fetched in one request; :meth:`stats` counts the round trips.
    """

    def __init__(self, url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT, retries: int = 3):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"keyhost URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._token = token.strip()
        # the transport is Rust (_internal.KeyhostClient): one pool shared with the kernels
        self._rs = _internal.KeyhostClient(self.url, token, float(timeout[0]), float(timeout[1]), int(retries))
        self._whoami: dict[str, Any] | None = None

    def __repr__(self) -> str:
        who = self._whoami["identity"] if self._whoami else "?"
        return f"Session(url={self.url!r}, identity={who!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        idempotency_key: str | None = None,
    ) -> _Response:
        """One request through the Rust client (GIL released): retried on refused connections
        and 502/503/504, and, when it carries an idempotency key (the keyhost answers a retry
        from its record), on read timeouts and dropped connections too."""
        if params:
            path = f"{path}?{urlencode(params)}"
        if json is not None:
            data, content_type = _json.dumps(json).encode(), "application/json"
        status, body = self._rs.request(method, path, data, content_type, accept, idempotency_key)
        return _Response(status, body)

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        r = self._send(method, path, **kw)
        if r.status_code >= 400:
            self._raise_http(r)
        return r.json()

    def _raise_http(self, r: _Response) -> NoReturn:
        """Raise the typed error of an HTTP error response."""
        try:
            err = r.json()["error"]
            exc: Exception = error_for(
                err.get("reason", "internal"),
                err.get("message", r.text),
                status=r.status_code,
                missing_grant=err.get("missing_grant"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyhostError(f"keyhost answered HTTP {r.status_code}: {r.text[:200]}", status=r.status_code) from None
        raise exc

    def stats(self) -> dict[str, int]:
        """Counters of this session: keyhost round trips (retries included), answer-key requests,
        descriptors sent, and retries (after read timeouts, 502/503/504 or dropped connections).
        Requests that kernels make through this session (plain ``.collect()``) count too."""
        return dict(self._rs.stats())

    def reset_stats(self) -> None:
        self._rs.reset_stats()

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
    def create_dataset(self, name: str, *, exist_ok: bool = True, population: str | None = None) -> Dataset:
        """Create a dataset owned by this identity (or return it if it exists and ``exist_ok``).

        ``population`` is the owner's declaration of who the rows are, fixed at creation: two
        datasets of one owner with different labels are declared to hold different people.
        Without it (or with the same label), exact answers on a column whose name the owner
        also holds in another such dataset are refused (``population_overlap``), because an
        analyst could match the rows and difference the answers. See ``docs/privacy.md``.
        """
        body: dict[str, Any] = {"name": name, "exist_ok": exist_ok}
        if population is not None:
            body["population"] = population
        d = self._request("POST", "/v1/datasets", json=body)
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

    def create_join_domain(self, name: str, *, exist_ok: bool = True) -> str:
        """Create a join domain (owner or admin role): columns encrypted with
        ``join_domain=name`` share its keys, so their ``ghost.key()`` pseudonyms join and their
        ``fuzzy`` encodings link across datasets. The domain belongs to this identity (names are
        scoped per owner); other owners' columns join it only once this owner adds them
        (:meth:`add_join_domain_member`). Returns the name."""
        d = self._request("POST", "/v1/join-domains", json={"name": name, "exist_ok": exist_ok})
        return str(d["name"])

    def join_domains(self) -> list[dict[str, Any]]:
        """This owner's join domains (with their ``members``) and those of other owners that made
        it a member: ``{"id", "name", "owner", "members"?}``."""
        return self._request("GET", "/v1/join-domains")["join_domains"]  # type: ignore[no-any-return]

    def add_join_domain_member(self, domain: str, owner: str) -> list[dict[str, Any]]:
        """Consent to ``owner``'s columns joining this owner's join domain ``domain``: they then
        register in it and receive its keys (so that owner can compute the pseudonym of any value
        it guesses, see ``docs/privacy.md``). Audited in both owners' logs. Returns the members."""
        r = self._request("POST", f"/v1/join-domains/{_seg(domain)}/members", json={"owner": owner})
        return r["members"]  # type: ignore[no-any-return]

    def remove_join_domain_member(self, domain: str, member: str, *, owner: str | None = None) -> None:
        """Remove ``member`` from this owner's join domain ``domain``, or, with ``member`` this
        identity, leave another owner's domain (``owner`` names it if several share the name).
        Registered columns keep their keys; :meth:`rotate_join_domain` gives new columns a new key."""
        params = {"owner": owner} if owner is not None else None
        self._request("DELETE", f"/v1/join-domains/{_seg(domain)}/members/{_seg(member)}", params=params)

    def leave_join_domain(self, domain: str, *, owner: str | None = None) -> None:
        """Leave another owner's join domain ``domain`` (audited in both owners' logs)."""
        self.remove_join_domain_member(domain, str(self.whoami()["identity"]), owner=owner)

    def rotate_join_domain(self, domain: str) -> dict[str, Any]:
        """A new key for this owner's join domain ``domain``: columns registered from now on use it
        and do not join ciphertext under the old key; columns registered before keep theirs."""
        return self._request("POST", f"/v1/join-domains/{_seg(domain)}/rotate")  # type: ignore[no-any-return]

    def register_column(self, dataset: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Register an encrypted column; returns its ids and the keys for encryption only."""
        return self._request("POST", f"/v1/datasets/{_seg(dataset)}/columns", json=spec)  # type: ignore[no-any-return]

    def allocate_rids(self, dataset: str, count: int, columns: Sequence[int]) -> int:
        """Allocate ``count`` row ids for the columns; returns the first."""
        r = self._request("POST", f"/v1/datasets/{_seg(dataset)}/rids", json={"count": count, "columns": list(columns)})
        return int(r["start"])

    # -- identities, tokens, grants ----------------------------------------------------------
    def create_identity(self, name: str, role: str = "member", *, exist_ok: bool = False) -> dict[str, Any]:
        """Create an identity. An admin creates keyhost-wide identities of any role; an owner
        creates analysts in its own namespace: ``name="worker"`` by owner ``clinic`` is
        ``clinic/worker`` (the returned ``name``), which only ``clinic`` grants to and issues
        tokens for. With ``exist_ok`` an existing identity of that name is returned."""
        return self._request("POST", "/v1/identities", json={"name": name, "role": role, "exist_ok": exist_ok})  # type: ignore[no-any-return]

    def identities(self) -> list[dict[str, Any]]:
        """Admin: every identity. Owner: the identities it manages and those shared with it
        (``manager``, ``shared_with``)."""
        return self._request("GET", "/v1/identities")["identities"]  # type: ignore[no-any-return]

    def share_identity(self, identity: str, owner: str, *, shared: bool = True) -> None:
        """Let another ``owner`` grant on its datasets to ``identity``, an analyst this owner
        manages (``shared=False`` takes it back). The one act by which a worker serves two
        organisations: the other owner's grants then reach whoever holds the identity's tokens,
        which this owner issues. Audited in both owners' logs."""
        self._request("POST", "/v1/identities/share", json={"identity": identity, "with": owner, "shared": shared})

    def delegate_tokens(
        self, identity: str, *, max_ttl_seconds: int | None = None, ttl_seconds: int | None = None, revoke: bool = False
    ) -> dict[str, Any]:
        """Make ``identity``, an analyst this owner manages, the lead of its identities for
        ``ttl_seconds``: the lead then issues, lists and revokes the tokens of the owner's other
        identities (:meth:`create_token`, :meth:`tokens`, :meth:`revoke_token`), each living at most
        ``max_ttl_seconds`` and never beyond the delegation; it cannot create identities, grant,
        or issue tokens for itself. ``revoke=True`` ends the delegation. Audited in the owner's log."""
        body: dict[str, Any] = {"identity": identity, "revoke": revoke}
        if max_ttl_seconds is not None:
            body["max_ttl_seconds"] = max_ttl_seconds
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return self._request("POST", "/v1/identities/delegate", json=body)  # type: ignore[no-any-return]

    def create_token(self, identity: str, *, ttl_seconds: int | None = 30 * 86400) -> str:
        """Issue a new token for ``identity``; the secret is returned once, stored hashed."""
        return str(
            self._request("POST", "/v1/tokens", json={"identity": identity, "ttl_seconds": ttl_seconds})["token"]
        )

    def tokens(self, identity: str | None = None) -> list[dict[str, Any]]:
        params = {"identity": identity} if identity else None
        return self._request("GET", "/v1/tokens", params=params)["tokens"]  # type: ignore[no-any-return]

    def revoke_token(self, token_id: int) -> None:
        """Revoke the token with id ``token_id`` (the ``token_id`` of :meth:`tokens`), at once."""
        self._request("DELETE", f"/v1/tokens/{int(token_id)}")

    def rotate_token(self, *, ttl_seconds: int | None = None) -> str:
        """Replace this session's token by a new one for the same identity (the old token is
        revoked at once); the session continues with the new token, which is returned.

        The new token expires when the old one would have (or after ``ttl_seconds`` if that is
        sooner): rotation never extends a token's life."""
        body: dict[str, Any] = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
        token = str(self._request("POST", "/v1/tokens/rotate", json=body)["token"])
        self._token = token
        self._rs.set_token(token)
        return token

    @overload
    def grant(
        self,
        identity: str,
        dataset: Dataset | str,
        allows: Iterable[Allow | Allows],
        *,
        ttl_seconds: int | None = ...,
        issue_token: Literal[True] = ...,
    ) -> str: ...

    @overload
    def grant(
        self,
        identity: str,
        dataset: Dataset | str,
        allows: Iterable[Allow | Allows],
        *,
        ttl_seconds: int | None = ...,
        issue_token: Literal[False],
    ) -> None: ...

    @overload
    def grant(
        self,
        identity: str,
        dataset: Dataset | str,
        allows: Iterable[Allow | Allows],
        *,
        ttl_seconds: int | None = ...,
        issue_token: bool,
    ) -> str | None: ...

    def grant(
        self,
        identity: str,
        dataset: Dataset | str,
        allows: Iterable[Allow | Allows],
        *,
        ttl_seconds: int | None = 30 * 86400,
        issue_token: bool = True,
    ) -> str | None:
        """Grant ``allows`` on ``dataset`` to ``identity`` (created if needed); return a new token for it.

        For an owner, ``identity`` is one of its own analysts (``"worker"`` is ``"<owner>/worker"``,
        created in its namespace if needed), one another owner shared with it (full name), or a
        keyhost-wide identity; tokens are issued only for identities this owner manages."""
        ds = dataset.name if isinstance(dataset, Dataset) else dataset
        me = self.whoami()
        target = self.create_identity(identity, exist_ok=True)
        identity = str(target["name"])
        if issue_token and me.get("role") != "admin" and target.get("manager") != me.get("identity"):
            raise error_for(
                "permission_denied",
                f"identity {identity!r} is not managed by {me.get('identity')!r}, which may not issue its tokens; "
                "grant with issue_token=False (its manager or an admin issues them)",
                status=403,
            )
        owner = dataset.owner if isinstance(dataset, Dataset) else None
        for a in flatten(allows):
            for column in a.columns():
                self._request(
                    "POST",
                    "/v1/grants",
                    json={
                        "identity": identity,
                        "dataset": ds,
                        "owner": owner,
                        "column": column,
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

    def revoke(self, identity: str, dataset: Dataset | str, allows: Iterable[Allow | Allows] | None = None) -> int:
        """Revoke grants of ``identity`` on ``dataset`` (all, or those matching ``allows``). Returns how many."""
        wanted = {(a.operation, c) for a in flatten(allows) for c in a.columns()} if allows is not None else None
        n = 0
        for g in self.grants(dataset, identity):
            if wanted is None or (g["operation"], g["column"]) in wanted:
                self._request("DELETE", f"/v1/grants/{g['grant_id']}")
                n += 1
        return n

    # -- answer keys and audit ----------------------------------------------------------------
    def answer_keys(self, descriptors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Ask for many answer keys in ONE request. Raises the typed error of the first refusal.

        Per-row byte fields (``pads``, the ``keys`` of decrypt and score answers) are ``bytes``:
        they travel raw in the keyhost's binary answer frame (:mod:`ghostpii.frames`). Likewise,
        descriptor fields given as ``bytes`` (rid sets in their wire encoding) travel raw in a
        request frame instead of as base64 in JSON."""
        if not descriptors:
            return []
        if frames.has_bytes(descriptors):  # rid sets as bytes travel raw, in a request frame
            body, content_type = frames.write(list(descriptors)), frames.MEDIA_TYPE
        else:
            body, content_type = _json.dumps({"requests": list(descriptors)}).encode(), "application/json"
        results = frames.read(self.answer_keys_raw(body, len(descriptors), content_type=content_type))
        for r in results:
            if not r.get("ok"):
                raise error_for(
                    r.get("reason", "internal"),
                    r.get("message", "refused"),
                    status=403,
                    missing_grant=r.get("missing_grant"),
                )
        return results

    def answer_keys_raw(self, body: bytes, count: int, *, content_type: str = "application/json") -> bytes:
        """Send an answer-key request body built elsewhere (``gp.reveal`` builds it in Rust: JSON,
        or a request frame with raw rid sets) in ONE request, with the retries and idempotency of
        :meth:`answer_keys`; returns the response body, an answer frame (refusals inside it are the
        caller's to raise)."""
        self._rs.count_answer_request(count)
        # one key per request, reused by its retries: the keyhost answers a retry from its record
        # (audited and charged once)
        r = self._send(
            "POST",
            "/v1/answer-keys",
            data=body,
            content_type=content_type,
            accept=frames.MEDIA_TYPE,
            idempotency_key=secrets.token_hex(16),
        )
        if r.status_code >= 400:
            self._raise_http(r)
        return r.content

    def audit_page(
        self,
        dataset: Dataset | str | None = None,
        *,
        identity: str | None = None,
        since: datetime | str | None = None,
        limit: int = AUDIT_PAGE,
        before: int | None = None,
        oldest_first: bool = False,
        mine: bool = False,
    ) -> AuditPage:
        """One page of audit entries, newest first (``oldest_first=True``: oldest first).

        ``before`` (or, oldest first, the entries after it) is the ``next`` of the previous page.
        ``mine=True`` (owners): every entry filed under this owner (its datasets, its join
        domains' membership changes, the identities it manages) instead of one dataset's.
        """
        params: dict[str, str] = {"limit": str(int(limit))}
        if dataset is not None:
            params["dataset"] = dataset.name if isinstance(dataset, Dataset) else dataset
            if isinstance(dataset, Dataset):
                params["owner"] = dataset.owner
        if mine:
            params["scope"] = "mine"
        if identity:
            params["identity"] = identity
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else since
        if before is not None:
            params["after" if oldest_first else "before"] = str(int(before))
        if oldest_first:
            params["order"] = "oldest"
        r = self._request("GET", "/v1/audit", params=params)
        rows = [
            {k: (_json.dumps(e.get(k)) if k == "params" else e.get(k)) for k in _AUDIT_SCHEMA} for e in r["entries"]
        ]
        nxt = r.get("next")
        return AuditPage(pl.DataFrame(rows, schema=_AUDIT_SCHEMA), int(r["total"]), None if nxt is None else int(nxt))

    def audit(
        self,
        dataset: Dataset | str | None = None,
        *,
        identity: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
        oldest_first: bool = False,
        mine: bool = False,
    ) -> pl.DataFrame:
        """Audit entries visible to this identity (owners: their datasets; ``mine=True``: everything
        filed under the owner, see :meth:`audit_page`) as a DataFrame, newest
        first: all of them (fetched page by page), or the newest ``limit``. For one page with its
        total count, use :meth:`audit_page`."""
        pages: list[pl.DataFrame] = []
        cursor: int | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = AUDIT_PAGE if remaining is None else min(remaining, AUDIT_PAGE)
            page = self.audit_page(
                dataset,
                identity=identity,
                since=since,
                limit=size,
                before=cursor,
                oldest_first=oldest_first,
                mine=mine,
            )
            pages.append(page.entries)
            if remaining is not None:
                remaining -= page.entries.height
            cursor = page.next
            if cursor is None:
                break
        return pl.concat(pages) if len(pages) > 1 else pages[0]

    def verify_audit(self) -> dict[str, Any]:
        """Recompute the audit hash chain on the keyhost (admin only)."""
        return self._request("GET", "/v1/audit/verify")  # type: ignore[no-any-return]

    def audit_checkpoint(self) -> dict[str, Any]:
        """The keyhost's current signed audit checkpoint (Merkle root of the whole log, Ed25519)."""
        return self._request("GET", "/v1/audit/checkpoint")  # type: ignore[no-any-return]

    def check_receipt(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """Check an answer's ``receipt`` (a signed promise that its audit entry is in the log by
        ``include_by``): ``{"ok", "status", "audit_index", "leaf_hash", "problems"}``, ``status``
        one of ``included``, ``pending``, ``missing``, ``late``, ``mismatch``, ``invalid``."""
        return self._request("POST", "/v1/audit/receipt", json=receipt)  # type: ignore[no-any-return]

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
        return self._request("POST", f"/v1/datasets/{_seg(ds)}/columns/{_seg(column)}/rotate", json={})  # type: ignore[no-any-return]

    def close(self) -> None:
        """Nothing to release eagerly: idle pooled connections close when the session is dropped."""

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
