"""Column specifications for :func:`ghostpii.encrypt`: ``gp.integer()``, ``gp.number(...)``, …"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from ghostpii.errors import EncryptionError

__all__ = ["ColumnSpec", "SearchShape", "boolean", "date", "datetime", "integer", "number", "text"]

_INT_DTYPES: dict[type[pl.DataType], str] = {
    pl.Int8: "int8",
    pl.Int16: "int16",
    pl.Int32: "int32",
    pl.Int64: "int64",
    pl.UInt8: "uint8",
    pl.UInt16: "uint16",
    pl.UInt32: "uint32",
}
_FLOAT_DTYPES: dict[type[pl.DataType], str] = {pl.Float32: "float32", pl.Float64: "float64"}


_DEFAULT_DOMAINS: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    # dates: ±2^23 days (about ±22,000 years) in three 8-bit blocks
    "date": (-(2**23), 2**23 - 1),
}


#: longest value (characters) of a search facet when ``gp.text`` is given no ``max_length``
DEFAULT_SEARCH_LENGTH = 32
_MAX_PIECE = 64


@dataclass(frozen=True)
class SearchShape:
    """The declared shape of a ``search`` facet (see :func:`text`)."""

    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    substring: int | None = None
    max_length: int = DEFAULT_SEARCH_LENGTH


def _lengths(name: str, v: int | tuple[int, ...] | list[int] | None) -> tuple[int, ...]:
    if v is None:
        return ()
    items = (v,) if isinstance(v, int) else tuple(v)
    for x in items:
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= _MAX_PIECE:
            raise EncryptionError(f"{name} lengths must be integers between 1 and {_MAX_PIECE}, got {v!r}")
    return tuple(sorted(set(items)))


def _search_shape(
    prefix: int | tuple[int, ...] | list[int] | None,
    suffix: int | tuple[int, ...] | list[int] | None,
    substring: int | None,
    max_length: int | None,
) -> SearchShape | None:
    p, s = _lengths("prefix", prefix), _lengths("suffix", suffix)
    if substring is not None and (
        isinstance(substring, bool) or not isinstance(substring, int) or not 1 <= substring <= _MAX_PIECE
    ):
        raise EncryptionError(
            f"substring (the q-gram length) must be an integer between 1 and {_MAX_PIECE}, got {substring!r}"
        )
    if not p and not s and substring is None:
        return None
    m = DEFAULT_SEARCH_LENGTH if max_length is None else min(max_length, 1024)
    if max_length is not None and max_length > 1024:
        raise EncryptionError(f"a column with the search facet takes max_length <= 1024 characters, got {max_length}")
    if substring is not None and substring > m:
        raise EncryptionError(f"substring={substring} is longer than max_length={m}")
    return SearchShape(p, s, substring, m)


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is encrypted. Build it with the functions of this module."""

    kind: str
    decimals: int = 0
    bounds: tuple[float, float] | None = None
    clip: bool = False
    facets: tuple[str, ...] = ("num",)
    accepted: tuple[str, ...] = field(default=())
    max_length: int | None = None
    #: join domain of the ``group`` and ``fuzzy`` facets (``session.create_join_domain``)
    join_domain: str | None = None
    #: owner of that join domain, when the dataset's owner may use several of that name (its own
    #: and another owner's that made it a member)
    join_domain_owner: str | None = None
    #: shape of the ``search`` facet: prefix lengths, suffix lengths, q-gram length, maximum
    #: length in characters (``gp.text(prefix=..., suffix=..., substring=...)``)
    search: SearchShape | None = None
    #: bigram space of the ``fuzzy`` facet shared with other columns (``gp.text(fuzzy_space=...)``)
    fuzzy_space: str | None = None

    def search_meta(self) -> dict[str, object] | None:
        """The ``search`` entry of the column metadata (``ghostpii_core::search::SearchParams``)."""
        if self.search is None:
            return None
        out: dict[str, object] = {"max_length": self.search.max_length}
        if self.search.prefix:
            out["prefix"] = list(self.search.prefix)
        if self.search.suffix:
            out["suffix"] = list(self.search.suffix)
        if self.search.substring is not None:
            out["substring"] = self.search.substring
        return out

    def logical_dtype(self, name: str, dtype: pl.DataType) -> str:
        """The logical type name for a column of ``dtype``, or an error naming the mismatch."""
        base = dtype.base_type()
        if self.kind in ("integer", "number") and base in _INT_DTYPES:
            return _INT_DTYPES[base]
        if self.kind == "number" and base in _FLOAT_DTYPES:
            return _FLOAT_DTYPES[base]
        if self.kind == "boolean" and base is pl.Boolean:
            return "boolean"
        if self.kind == "date" and base is pl.Date:
            return "date"
        if self.kind == "datetime" and base is pl.Datetime:
            return "datetime"
        if self.kind == "text" and base in (pl.String, pl.Categorical, pl.Enum):
            return "string"
        hint = {
            "integer": "Int8–Int64 or UInt8–UInt32",
            "number": "an integer or float dtype",
            "boolean": "Boolean",
            "date": "Date",
            "datetime": "Datetime",
            "text": "String",
        }[self.kind]
        if base is pl.UInt64:
            hint += " (UInt64 is not supported: values above 2^63 do not fit; cast to Int64 first)"
        raise EncryptionError(f"column {name!r} has dtype {dtype}, but gp.{self.kind}() needs {hint}")

    def order_domain(self, logical: str) -> dict[str, int]:
        """The ``ord`` facet's domain ``{"offset", "bits"}``: the declared bounds, else the dtype's range."""
        b = self.scaled_bounds()
        if b is None:
            lo, hi = _DEFAULT_DOMAINS.get(logical, (-(2**63), 2**63 - 1))
            if self.kind == "number" and logical in _INT_DTYPES.values() and self.decimals:
                lo, hi = -(2**63), 2**63 - 1
        else:
            lo, hi = b
        return {"offset": lo, "bits": max((hi - lo).bit_length(), 1)}

    def scaled_bounds(self) -> tuple[int, int] | None:
        """Bounds as stored integers (``round(x * 10^decimals)``)."""
        if self.bounds is None:
            return None
        lo, hi = self.bounds
        f = Decimal(10) ** self.decimals
        return int((Decimal(str(lo)) * f).to_integral_value()), int((Decimal(str(hi)) * f).to_integral_value())


def _check_bounds(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    if bounds is None:
        return None
    lo, hi = bounds
    if not lo <= hi:
        raise EncryptionError(f"bounds must satisfy low <= high, got {bounds!r}")
    return (lo, hi)


def _facets(compare: bool) -> tuple[str, ...]:
    return ("num", "ord") if compare else ("num",)


def _keyed(
    base: tuple[str, ...], match: bool, group: bool, fuzzy: bool, join_domain: str | None
) -> tuple[tuple[str, ...], str | None]:
    """Add the match/group/fuzzy facets; a join domain needs group or fuzzy."""
    for name, v in (("match", match), ("group", group), ("fuzzy", fuzzy)):
        if not isinstance(v, bool):
            raise EncryptionError(f"{name} must be True or False, got {v!r}")
    if join_domain is not None:
        if not isinstance(join_domain, str) or not join_domain:
            raise EncryptionError(f"join_domain must be a non-empty name, got {join_domain!r}")
        if not (group or fuzzy):
            raise EncryptionError(
                f"join_domain={join_domain!r} needs group=True or fuzzy=True (only those facets join or link)"
            )
    extra = tuple(f for f, on in (("match", match), ("group", group), ("fuzzy", fuzzy)) if on)
    return base + extra, join_domain


def _domain_owner(join_domain: str | None, owner: str | None) -> str | None:
    """``join_domain_owner`` checked: a non-empty owner name, and only with a join domain."""
    if owner is None:
        return None
    if not isinstance(owner, str) or not owner:
        raise EncryptionError(f"join_domain_owner must be a non-empty owner name, got {owner!r}")
    if join_domain is None:
        raise EncryptionError("join_domain_owner needs join_domain (it names the owner of that domain)")
    return owner


def integer(
    *,
    bounds: tuple[int, int] | None = None,
    clip: bool = False,
    compare: bool = False,
    match: bool = False,
    group: bool = False,
    fuzzy: bool = False,
    join_domain: str | None = None,
    join_domain_owner: str | None = None,
) -> ColumnSpec:
    """An integer column (Int8–Int64, UInt8–UInt32). Sums are exact.

    ``bounds=(lo, hi)`` declares the range of values; values outside it raise
    :class:`~ghostpii.errors.EncryptionError` unless ``clip=True``. ``compare=True`` adds the
    ``ord`` facet (order comparisons against constants with keyhost-issued tokens).
    ``match=True`` adds equality against constants (``ghost.eq``/``ghost.is_in``), ``group=True``
    pseudonymous keys (``ghost.key()``) for group_by / join / n_unique, ``fuzzy=True`` record
    linkage on the digits (``gp.link``); ``join_domain`` names the domain whose columns join and
    link with this one (ids, zip codes).
    """
    facets, jd = _keyed(_facets(compare), match, group, fuzzy, join_domain)
    return ColumnSpec(
        "integer",
        0,
        _check_bounds(bounds),
        clip,
        facets,
        join_domain=jd,
        join_domain_owner=_domain_owner(jd, join_domain_owner),
    )


def number(
    *, decimals: int = 6, bounds: tuple[float, float] | None = None, clip: bool = False, compare: bool = False
) -> ColumnSpec:
    """A number stored in fixed point with ``decimals`` digits after the point.

    Floats are rounded (half to even) to ``decimals`` digits; sums and means are exact on the
    rounded values. ``bounds=(lo, hi)`` declares the range; out-of-range values raise unless
    ``clip=True``. ``compare=True`` adds the ``ord`` facet for comparisons against constants.
    """
    if not 0 <= decimals <= 12:
        raise EncryptionError(f"decimals must be between 0 and 12, got {decimals}")
    return ColumnSpec("number", decimals, _check_bounds(bounds), clip, _facets(compare))


def boolean() -> ColumnSpec:
    """A boolean column (sums count the true values)."""
    return ColumnSpec("boolean")


def date(
    *,
    compare: bool = False,
    match: bool = False,
    group: bool = False,
    fuzzy: bool = False,
    join_domain: str | None = None,
    join_domain_owner: str | None = None,
) -> ColumnSpec:
    """A date column (days since 1970-01-01); means and per-row decryption.

    ``compare=True`` adds the ``ord`` facet: ``ghost.older_than``, ``lt``, ``between``, …
    ``match``, ``group``, ``fuzzy`` and ``join_domain`` as for :func:`text` (birth dates: fuzzy
    linkage compares the ISO form ``YYYY-MM-DD``).
    """
    facets, jd = _keyed(_facets(compare), match, group, fuzzy, join_domain)
    return ColumnSpec("date", facets=facets, join_domain=jd, join_domain_owner=_domain_owner(jd, join_domain_owner))


def datetime(*, compare: bool = False) -> ColumnSpec:
    """A datetime column (its time unit and zone are kept); ``compare=True`` adds the ``ord`` facet."""
    return ColumnSpec("datetime", facets=_facets(compare))


def text(
    *,
    max_length: int | None = None,
    match: bool = False,
    group: bool = False,
    fuzzy: bool = False,
    join_domain: str | None = None,
    join_domain_owner: str | None = None,
    prefix: int | tuple[int, ...] | list[int] | None = None,
    suffix: int | tuple[int, ...] | list[int] | None = None,
    substring: int | None = None,
    fuzzy_space: str | None = None,
) -> ColumnSpec:
    """A text column, sealed per row (``val`` facet): decryptable where a grant allows.

    ``match=True`` adds equality and ``is_in`` against constants with keyhost-issued tokens
    (exact UTF-8 equality, no normalisation); ``group=True`` pseudonymous keys
    (``pl.col(c).ghost.key()``) for group_by, joins and n_unique; ``fuzzy=True`` sealed Bloom-filter
    encodings for record linkage (``gp.link``). Columns that should join or link across datasets
    share a ``join_domain`` (created with ``session.create_join_domain(name)``). Domain names are
    scoped per owner: ``join_domain`` names the dataset owner's own domain, or one of another owner
    that made it a member (``session.add_join_domain_member``); ``join_domain_owner`` names that
    owner when both exist. At rest none of these facets shows which rows are equal (see
    docs/threat-model.md).

    Ciphertext lengths reveal only a length class: by default each value (its UTF-8 bytes plus a
    4-byte length) is padded to the next power of two of at least 16 bytes. ``max_length=M``
    pads every value to ``M`` bytes, so all cells of the column have one length; values longer
    than ``M`` bytes (UTF-8) raise :class:`~ghostpii.errors.EncryptionError`.

    ``prefix=(1, 2, 3)``, ``suffix=(...)`` and ``substring=q`` add the ``search`` facet:
    ``ghost.starts_with`` / ``ghost.ends_with`` for constants of a declared length, and
    ``ghost.contains`` (and ``starts_with`` of any length ≥ q) for constants of at least ``q``
    characters, with keyhost-issued tokens (``gp.allow.search``); exact, case-sensitive
    characters as ``str.starts_with`` / ``str.contains`` see them. Each row stores one tag per
    declared length and one per q-gram position up to ``max_length`` characters (default 32;
    longer values raise :class:`~ghostpii.errors.EncryptionError`), every tag bound to the row,
    so equal values and pieces look unrelated at rest. What each token reveals:
    docs/threat-model.md ("search").

    ``fuzzy_space="name"`` (with ``fuzzy=True``) hashes the column's bigrams in a space shared
    with the other columns that name it, instead of the column's own: ``gp.link`` then finds a
    record whose given name and surname were swapped (on FEBRL4's given name, surname and date
    of birth, recall 0.893 → 0.965 at threshold 0.6; benchmarks/linkage.md). Both sides of a
    link must declare the same space. A link-grant holder can then also compare one column's
    values with the other's (docs/threat-model.md, "fuzzy").
    """
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= 2**31
    ):
        raise EncryptionError(f"max_length must be an integer between 1 and 2**31 (bytes), got {max_length!r}")
    facets, jd = _keyed(("val",), match, group, fuzzy, join_domain)
    shape = _search_shape(prefix, suffix, substring, max_length)
    if shape is not None:
        facets = (*facets, "search")
    if fuzzy_space is not None:
        if not isinstance(fuzzy_space, str) or not fuzzy_space:
            raise EncryptionError(f"fuzzy_space must be a non-empty name, got {fuzzy_space!r}")
        if not fuzzy:
            raise EncryptionError("fuzzy_space needs fuzzy=True (it names the bigram space of the fuzzy facet)")
    return ColumnSpec(
        "text",
        facets=facets,
        max_length=max_length,
        join_domain=jd,
        join_domain_owner=_domain_owner(jd, join_domain_owner),
        search=shape,
        fuzzy_space=fuzzy_space,
    )


def precheck_length(s: pl.Series, spec: ColumnSpec) -> None:
    """Refuse text longer than the spec's ``max_length`` before anything is registered on the keyhost."""
    if spec.search is not None and s.dtype == pl.String:
        m = spec.search.max_length
        bad = s.to_frame("v").select(pl.arg_where(pl.col("v").str.len_chars() > m).first()).item()
        if bad is not None:
            raise EncryptionError(
                f"column {s.name!r}: the value at row {bad} has {s.str.len_chars()[bad]} characters, more than "
                f"max_length = {m} of its search facet; give gp.text(..., max_length=...) or shorten the value"
            )
    if spec.max_length is None or s.dtype != pl.String:
        return
    lengths = s.str.len_bytes()
    bad = s.to_frame("v").select(pl.arg_where(pl.col("v").str.len_bytes() > spec.max_length).first()).item()
    if bad is not None:
        raise EncryptionError(
            f"column {s.name!r}: the value at row {bad} is {lengths[bad]} bytes (UTF-8), longer than "
            f"max_length = {spec.max_length} declared by gp.text(max_length=...); raise max_length or shorten it"
        )
