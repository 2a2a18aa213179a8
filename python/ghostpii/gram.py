"""Sealed Gram matrices (op ``gram``): building their ONE answer-key descriptor and decoding
the answer into exact (or, under DP grants, noisy) second moments.

A sealed Gram (see ``src/core/src/sealed_gram.rs``) holds masked sums for the entries
``(i, j)`` of ``[X 1]ᵀ[X 1]`` over one row multiset. :func:`descriptor` builds the keyhost
descriptor of one or several sealed Grams over the same rows (their entries merged), and
:func:`decode` turns the answer keys into a :class:`GramMatrix`. :class:`GramBatch` does both
for every sealed Gram of a frame, so a batch of statistics costs one descriptor per row set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ghostpii import _protocol

__all__ = ["GramBatch", "GramMatrix", "combine", "decode", "descriptor", "is_gram", "statistic"]

_MOD = 1 << 128


def _signed(x: int) -> int:
    x %= _MOD
    return x - _MOD if x >= 1 << 127 else x


def is_gram(payload: dict[str, Any]) -> bool:
    """Whether a sealed payload is a Gram matrix (not a sealed sum)."""
    return payload.get("op") == "gram"


def _entry_key(e: dict[str, Any]) -> tuple[int, int, int | None]:
    return (int(e["term"]["column_id"]), int(e["term"]["epoch"]), e.get("weight"))


def _rows_key(p: dict[str, Any]) -> str:
    return json.dumps(
        [p["dataset_id"], p["rids"], p.get("repeats") or [], [w["values"] for w in p.get("weights") or []]]
    )


def descriptor(payloads: Sequence[dict[str, Any]]) -> tuple[_protocol.Gram, list[tuple[int, int, int | None]]]:
    """The ONE ``gram`` descriptor of sealed Grams over the same rows (and per-row weights),
    with the entry order of the answer's ``keys``."""
    p0 = payloads[0]
    order: list[tuple[int, int, int | None]] = []
    for p in payloads:
        if _rows_key(p) != _rows_key(p0):
            raise ValueError("sealed Grams of one descriptor must cover the same rows")
        for e in p["entries"]:
            k = _entry_key(e)
            if k not in order:
                order.append(k)
    d = _protocol.gram(
        p0["dataset_id"],
        p0["rids"],
        [{"column_id": c, "epoch": ep, "weight": w} for c, ep, w in order],
        repeats=[{"k": int(r["k"]), "rids": r["rids"]} for r in p0.get("repeats") or []],
        weights=[{"values": w["values"]} for w in p0.get("weights") or []],
    )
    return d, order


@dataclass
class GramMatrix:
    """Revealed second moments of ``names`` (and the intercept, index ``len(names)``).

    ``sums[(i, j)]`` is the exact integer sum at fixed-point scale ``scales[(i, j)]`` (value =
    sum / 10^scale); ``n`` the rows (with multiplicity), ``rows_in`` the input rows before
    rows with a null feature were dropped. ``noise[(i, j)]`` is the standard deviation of the
    DP noise of an entry, in its real units (absent for exact answers).
    """

    names: list[str]
    n: int
    rows_in: int
    sums: dict[tuple[int, int], int] = field(default_factory=dict)
    scales: dict[tuple[int, int], int] = field(default_factory=dict)
    noise: dict[tuple[int, int], float] = field(default_factory=dict)
    bounds: list[tuple[float, float] | None] = field(default_factory=list)
    dp: dict[str, Any] | None = None

    @property
    def intercept(self) -> int:
        return len(self.names)

    def has(self, i: int, j: int) -> bool:
        return (min(i, j), max(i, j)) in self.sums

    def exact(self, i: int, j: int) -> tuple[int, int]:
        """(integer sum, scale) of entry (i, j)."""
        k = (min(i, j), max(i, j))
        if k not in self.sums:
            raise KeyError(f"entry ({self.label(i)}, {self.label(j)}) was not revealed")
        return self.sums[k], self.scales[k]

    def value(self, i: int, j: int) -> float:
        s, sc = self.exact(i, j)
        return float(s / 10**sc)

    def label(self, i: int) -> str:
        return "1" if i == self.intercept else self.names[i]

    def centered(self, i: int, j: int) -> float:
        """``Σ (x_i − x̄_i)(x_j − x̄_j)``, computed exactly from the integer sums."""
        c = self.intercept
        sij, sc = self.exact(i, j)
        si, a = self.exact(i, c)
        sj, b = self.exact(j, c)
        # n·Σxy − Σx·Σy at scale sc (= a + b), divided by n
        return (self.n * sij * 10 ** (a + b - sc) - si * sj) / (self.n * 10 ** (a + b)) if self.n else 0.0


def decode(p0: dict[str, Any], order: list[tuple[int, int, int | None]], result: dict[str, Any]) -> GramMatrix:
    """The :class:`GramMatrix` of sealed Gram ``p0`` from the answer ``result`` of its descriptor."""
    keys = [int(k) for k in result["keys"]]
    if len(keys) != len(order):
        raise ValueError(f"the keyhost answered {len(keys)} entries for {len(order)}")
    pos = {k: i for i, k in enumerate(order)}
    dp = result.get("dp")
    g = GramMatrix(
        names=[f["name"] for f in p0["features"]],
        n=int(p0["n"]),
        rows_in=int(p0["rows_in"]),
        dp=dp,
    )
    for f in p0["features"]:
        b = f.get("bounds")
        g.bounds.append(None if b is None else (b[0] / 10 ** f["scale"], b[1] / 10 ** f["scale"]))
    for e in p0["entries"]:
        ij = (int(e["i"]), int(e["j"]))
        at = pos[_entry_key(e)]
        g.sums[ij] = _signed(int(e["masked"]) - keys[at])
        g.scales[ij] = int(e["scale"])
        if dp is not None:
            per = dp["entries"][at]
            sd = per.get("sigma")
            if sd is None and per.get("scale") is not None:
                sd = math.sqrt(2.0) * float(per["scale"])  # discrete Laplace: variance ≈ 2b²
            g.noise[ij] = float(sd or 0.0) / 10 ** g.scales[ij]
    for e in p0["plain"]:
        ij = (int(e["i"]), int(e["j"]))
        g.sums[ij] = int(e["value"])
        g.scales[ij] = int(e["scale"])
    return g


def combine(g: GramMatrix, maps: Sequence[dict[int, int]], names: Sequence[str]) -> GramMatrix:
    """The Gram matrix of features that are integer combinations ``Σ w_i · input_i`` of ``g``'s
    inputs (``maps[k] = {input index: weight}``; the intercept stays last). Exact: the sums stay
    integers; the inputs of one combination must share their fixed-point scale."""
    c = g.intercept
    out = GramMatrix(names=list(names), n=g.n, rows_in=g.rows_in, dp=g.dp)
    full = [*maps, {c: 1}]
    for a, ma in enumerate(full):
        lo_hi = None
        if a < len(maps):
            bs = [g.bounds[i] for i in ma]
            if all(b is not None for b in bs):
                span = sum(abs(w) * max(abs(b[0]), abs(b[1])) for w, b in zip(ma.values(), bs, strict=True) if b)
                lo_hi = (-span, span)
            out.bounds.append(lo_hi)
        for b in range(a, len(full)):
            mb = full[b]
            if not all(g.has(i, j) for i in ma for j in mb):
                continue  # not revealed (e.g. the target's square): not needed by the fit
            if a == b == len(full) - 1:
                total, scale = g.exact(c, c)
            else:
                total, scale = 0, None
                for i, wi in ma.items():
                    for j, wj in mb.items():
                        v, sc = g.exact(i, j)
                        if scale is not None and sc != scale:
                            raise ValueError("a combination mixes inputs of different decimals")
                        scale = sc
                        total += wi * wj * v
                        var = g.noise.get((min(i, j), max(i, j)))
                        if var is not None:
                            out.noise[(a, b)] = math.hypot(out.noise.get((a, b), 0.0), wi * wj * var)
            out.sums[(a, b)] = total
            out.scales[(a, b)] = int(scale or 0)
    return out


def statistic(g: GramMatrix, stat: str) -> float | None:
    """A statistic of the first one or two features (ddof=1 like Polars), from their Gram matrix.
    Under DP noise, variances are clamped at 0 and correlations to [−1, 1]."""
    c = g.intercept
    if stat in ("var", "std"):
        if g.n < 2:
            return None
        v = max(g.centered(0, 0), 0.0) / (g.n - 1)
        return v if stat == "var" else math.sqrt(v)
    if stat == "cov":
        return None if g.n < 2 else g.centered(0, 1) / (g.n - 1)
    if stat == "corr":
        den = max(g.centered(0, 0), 0.0) * max(g.centered(1, 1), 0.0)
        if g.n < 2 or den <= 0:
            return None
        return max(-1.0, min(1.0, g.centered(0, 1) / math.sqrt(den)))
    if stat == "dot":
        return g.value(0, 1)
    if stat == "norm":
        return math.sqrt(max(g.value(0, 0), 0.0))
    if stat == "cosine":
        s00, s11 = max(g.value(0, 0), 0.0), max(g.value(1, 1), 0.0)
        if s00 <= 0 or s11 <= 0:
            return None
        return max(-1.0, min(1.0, g.value(0, 1) / math.sqrt(s00 * s11)))
    if stat == "mean":
        return g.value(0, c) / g.n if g.n else None
    raise ValueError(f"unknown statistic {stat!r}")


class GramBatch:
    """Every sealed Gram of one reveal: one descriptor per distinct row set."""

    def __init__(self) -> None:
        self._groups: dict[str, list[dict[str, Any]]] = {}
        self._slots: list[tuple[str, dict[str, Any]]] = []
        self._desc: dict[str, tuple[int, list[tuple[int, int, int | None]]]] = {}

    def add(self, p: dict[str, Any]) -> int:
        k = _rows_key(p)
        if int(p["n"]) > 0:  # no rows: nothing to ask (the value is null)
            self._groups.setdefault(k, []).append(p)
        self._slots.append((k, p))
        return len(self._slots) - 1

    def register(self, want: Callable[[_protocol.Gram], int]) -> None:
        """Add the merged descriptors to the request (``want`` returns each one's index)."""
        for k, ps in self._groups.items():
            d, order = descriptor(ps)
            self._desc[k] = (want(d), order)

    def matrix(self, slot: int, results: Sequence[dict[str, Any]]) -> GramMatrix:
        k, p = self._slots[slot]
        at, order = self._desc[k]
        return decode(p, order, results[at])

    def value(self, slot: int, results: Sequence[dict[str, Any]]) -> float | None:
        _, p = self._slots[slot]
        if int(p["n"]) == 0:
            return None
        return statistic(self.matrix(slot, results), p["stat"])
