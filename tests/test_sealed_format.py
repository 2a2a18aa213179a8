"""The binary sealed format (format 2): typed fields, revealed in Rust, format 1 still read."""

from __future__ import annotations

import base64
import json

import polars as pl
import pytest

import ghostpii as gp
from ghostpii.reveal import sum_descriptors


@pytest.fixture()
def enc(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"g": [i % 3 for i in range(30)], "x": list(range(30)), "y": [i * 0.5 for i in range(30)]})
    return gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 100)), "y": gp.number(decimals=1, bounds=(0, 100))})


def test_fields_are_typed(enc: pl.DataFrame) -> None:
    out = enc.group_by("g").agg(pl.col("x").ghost.sum()).sort("g")
    st = out["x"].ext.storage()
    assert st.dtype == gp.SealedType.STORAGE
    assert st.struct.field("format").to_list() == [2, 2, 2]
    assert st.struct.field("op").to_list() == ["sum"] * 3
    assert st.struct.field("n").to_list() == [10, 10, 10]
    assert all(len(m) == 16 for m in st.struct.field("masked").to_list())
    assert all(len(t) == 20 for t in st.struct.field("terms").to_list())
    assert st.struct.field("label").to_list() == ["<sealed sum(x) over 10 rows>"] * 3
    meta = json.loads(st.struct.field("meta")[0])
    assert meta["column"] == "x"


def test_reveal_in_rust_equals_plaintext(admin: gp.Session, enc: pl.DataFrame) -> None:
    q = (
        enc.lazy()
        .group_by("g")
        .agg(pl.col("x").ghost.sum(), pl.col("y").ghost.mean().alias("ym"), gp.linear_sum({"x": 2}).alias("x2"))
    )
    admin.reset_stats()
    got = q.ghost.collect(admin).sort("g")
    assert admin.stats()["answer_key_requests"] == 1
    assert got["x"].to_list() == [135, 145, 155]
    assert got["x2"].to_list() == [270, 290, 310]
    assert got["ym"].to_list() == pytest.approx([6.75, 7.25, 7.75])
    assert got.schema["x"] == pl.Int64 and got.schema["ym"] == pl.Float64


def test_descriptors_for_tools(enc: pl.DataFrame) -> None:
    out = enc.select(pl.col("x").ghost.sum())
    (d,) = sum_descriptors(out["x"])
    assert d["op"] == "sum" and d["terms"][0]["weight"] == 1
    assert base64.b64decode(d["rids"])[0] in (1, 2)


def test_format_1_values_still_reveal(admin: gp.Session, enc: pl.DataFrame) -> None:
    """A sealed column written by an older build (JSON payload) is read and revealed."""
    new = enc.select(pl.col("x").ghost.sum())
    (d,) = sum_descriptors(new["x"])
    st = new["x"].ext.storage().struct
    meta = json.loads(st.field("meta")[0])
    masked = int.from_bytes(st.field("masked")[0], "little")
    payload = {"op": "sum", "meta": meta, "masked": str(masked), "n": 30, "rids": d["rids"]}
    v1 = pl.DataFrame(
        {"x": [{"label": "<sealed sum(x) over 30 rows>", "payload": json.dumps(payload).encode()}]},
        schema={"x": gp.SealedType.STORAGE_V1},
    )
    v1_type = gp.SealedType.ext_from_params("ghostpii.sealed", gp.SealedType.STORAGE_V1, None)
    v1 = v1.with_columns(pl.col("x").ext.to(v1_type))
    assert gp.reveal(v1, admin)["x"].to_list() == [435]
    bad = pl.DataFrame(
        {"x": [{"label": "<sealed>", "payload": b"{not json"}]}, schema={"x": gp.SealedType.STORAGE_V1}
    ).with_columns(pl.col("x").ext.to(v1_type))
    with pytest.raises(gp.CiphertextError, match="corrupt sealed value"):
        gp.reveal(bad, admin)


def test_tampered_fields_are_refused(admin: gp.Session, enc: pl.DataFrame) -> None:
    out = enc.select(pl.col("x").ghost.sum())
    st = out["x"].ext.storage()
    for field, value in [("masked", b"\x01" * 15), ("terms", b"\x00" * 7), ("op", "gram"), ("format", 9)]:
        lit = pl.lit(value, pl.UInt8) if field == "format" else pl.lit(value)
        bad = pl.DataFrame({"x": st}).select(pl.col("x").struct.with_fields(lit.alias(field)).ext.to(gp.SealedType()))
        with pytest.raises(gp.GhostError):
            gp.reveal(bad, admin)


def test_many_groups_one_request(admin: gp.Session, dataset: gp.Dataset) -> None:
    n, g = 20_000, 5_000
    df = pl.DataFrame({"g": [i % g for i in range(n)], "x": [i % 7 for i in range(n)]})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 10))})
    admin.reset_stats()
    got = enc.lazy().group_by("g").agg(pl.col("x").ghost.sum()).ghost.collect(admin).sort("g")
    want = df.group_by("g").agg(pl.col("x").sum()).sort("g")
    assert got["x"].to_list() == want["x"].to_list()
    # every group in ONE sums descriptor (one audit entry), not one descriptor per group
    assert admin.stats() == {**admin.stats(), "answer_key_requests": 1, "descriptors": 1}
    (entry,) = admin.audit(dataset).filter(pl.col("operation") == "sums").rows(named=True)
    assert json.loads(entry["params"])["groups"] == g and entry["rid_count"] == n
