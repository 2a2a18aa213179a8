"""The answer-key descriptors, the one place Python builds them.

Each function returns the JSON form of one variant of ``ghostpii_proto::Descriptor`` (the Rust
protocol crate that the keyhost reads and the Rust resolver writes), typed as a ``TypedDict``.
A rid set is either base64 of its wire encoding (``str``) or its raw wire encoding (``bytes``),
which ``Session.answer_keys`` sends raw in a request frame. No other module writes an ``"op"``.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Compare",
    "Decrypt",
    "Descriptor",
    "Gram",
    "GramEntry",
    "Match",
    "MatchConstant",
    "Pads",
    "Repeat",
    "Score",
    "Term",
    "Weights",
    "compare",
    "compute",
    "ComputeRequest",
    "decrypt",
    "gram",
    "match",
    "pads",
    "score",
]

Rids = str | bytes
"""A rid set: base64 of its wire encoding, or the encoding itself (sent raw)."""


class Term(TypedDict):
    """``weight · column`` at key ``epoch``."""

    column_id: int
    epoch: int
    weight: int


class Repeat(TypedDict):
    """Rows counted ``k`` times each."""

    k: int
    rids: Rids


class Weights(TypedDict):
    """Per-row weights of Gram entries: base64 of little-endian i64, one per row in rid order."""

    values: str


class GramEntry(TypedDict):
    """An entry of a Gram descriptor: a ``num`` or ``deg2`` column, optionally weighted."""

    column_id: int
    epoch: int
    weight: NotRequired[int | None]


class MatchConstant(TypedDict, total=False):
    """A match constant as stored: ``{"text": s}`` (text columns) or ``{"int": i}`` (the others)."""

    text: str
    int: int


class Compare(TypedDict):
    op: Literal["compare"]
    dataset_id: int
    column_id: int
    epoch: int
    constant: int


class Match(TypedDict):
    op: Literal["match"]
    dataset_id: int
    column_id: int
    epoch: int
    constant: MatchConstant


class Pads(TypedDict):
    op: Literal["pads"]
    dataset_id: int
    column_id: int
    epoch: int
    facet: Literal["group", "fuzzy"]
    rids: Rids


class Decrypt(TypedDict):
    op: Literal["decrypt"]
    dataset_id: int
    column_id: int
    epoch: int
    facet: Literal["num", "val"]
    rids: NotRequired[Rids]


class Score(TypedDict):
    op: Literal["score"]
    dataset_id: int
    rids: Rids
    terms: list[Term]
    scale_bits: int


class Gram(TypedDict):
    op: Literal["gram"]
    dataset_id: int
    rids: Rids
    entries: list[GramEntry]
    repeats: NotRequired[list[Repeat]]
    weights: NotRequired[list[Weights]]


Descriptor = Compare | Match | Pads | Decrypt | Score | Gram
"""Any descriptor Python sends (sums and ``sums`` batches are written in Rust, ``reveal.rs``)."""


def compare(dataset_id: int, column_id: int, epoch: int, constant: int) -> Compare:
    """The comparison token of ``constant`` (a stored integer of the column)."""
    return {"op": "compare", "dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "constant": constant}


def match(dataset_id: int, column_id: int, epoch: int, constant: MatchConstant) -> Match:
    """The match token of ``constant``."""
    return {"op": "match", "dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "constant": constant}


def pads(dataset_id: int, column_id: int, epoch: int, facet: Literal["group", "fuzzy"], rids: Rids) -> Pads:
    """Per-row pads (``group``) or sealing seeds (``fuzzy``) of ``rids``."""
    return {
        "op": "pads",
        "dataset_id": dataset_id,
        "column_id": column_id,
        "epoch": epoch,
        "facet": facet,
        "rids": rids,
    }


def decrypt(dataset_id: int, column_id: int, epoch: int, facet: Literal["num", "val"]) -> Decrypt:
    """Per-row keys of ``facet``; its rid set is given beside it (``RevealPlan.add_descriptor``)."""
    return {"op": "decrypt", "dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "facet": facet}


def score(dataset_id: int, rids: Rids, terms: list[Term], scale_bits: int) -> Score:
    """Per-row masks of ``Σ weight·column`` (weights at fixed point ``2^-scale_bits``)."""
    return {"op": "score", "dataset_id": dataset_id, "rids": rids, "terms": terms, "scale_bits": scale_bits}


def gram(
    dataset_id: int,
    rids: Rids,
    entries: list[GramEntry],
    repeats: list[Repeat] | None = None,
    weights: list[Weights] | None = None,
) -> Gram:
    """Every entry of a Gram matrix over one row multiset (and per-row weights)."""
    d: Gram = {"op": "gram", "dataset_id": dataset_id, "rids": rids, "entries": entries}
    if repeats:
        d["repeats"] = repeats
    if weights:
        d["weights"] = weights
    return d


class ComputeRequest(TypedDict):
    """The JSON of ``POST /v1/compute`` (``ghostpii_proto::circuit::ComputeRequest``): the rid set
    and the ciphertexts are ``bytes``, blobs of the request frame. The circuit's JSON (inputs,
    nodes, output) is built by :mod:`ghostpii.circuit`."""

    dataset_id: int
    rids: bytes
    circuit: dict[str, Any]
    bits: int
    output: Literal["revealed"]
    text: str
    ciphertexts: bytes


def compute(
    dataset_id: int, rids: bytes, circuit: dict[str, Any], bits: int, text: str, ciphertexts: bytes
) -> ComputeRequest:
    """A row-wise circuit over the rows ``rids`` (ascending), whose inputs are ``ciphertexts``."""
    return {
        "dataset_id": dataset_id,
        "rids": rids,
        "circuit": circuit,
        "bits": bits,
        "output": "revealed",
        "text": text,
        "ciphertexts": ciphertexts,
    }
