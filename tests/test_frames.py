"""The binary frames: requests with raw rid sets and answers with raw byte fields get the same
answers as JSON, and broken frames are refused."""

from __future__ import annotations

import base64
import json
import random

import polars as pl
import pytest
import requests

import ghostpii as gp
from ghostpii import _internal, frames
from ghostpii.keyed import pads_descriptor


def _pads_request(admin: gp.Session) -> dict[str, object]:
    admin.create_join_domain("frames")
    ds = admin.create_dataset(f"frames_{random.randrange(10**9)}")
    enc = gp.encrypt(
        pl.DataFrame({"n": ["ann", "bob", None, "ann"]}), ds, {"n": gp.text(fuzzy=True, join_domain="frames")}
    )
    meta, rids = _internal.fuzzy_rids(enc["n"])
    return pads_descriptor({**json.loads(meta), "facet": "fuzzy"}, rids)


def test_frames_carry_the_bytes_that_json_carries_as_base64(admin: gp.Session) -> None:
    desc = _pads_request(admin)
    assert isinstance(desc["rids"], bytes)
    # the session sends the rid set raw in a request frame and reads the pads raw from the answer frame
    body = frames.write([desc])
    assert body.startswith(b"GPAK\x01") and body.endswith(desc["rids"])
    (framed,) = admin.answer_keys([desc])
    assert isinstance(framed["pads"], bytes) and len(framed["pads"]) == 3 * 16  # 3 non-null rows
    # the same descriptor as plain JSON (rids in base64, no Accept header): base64 of the same pads
    as_json = {**desc, "rids": base64.b64encode(desc["rids"]).decode()}
    r = requests.post(
        admin.url + "/v1/answer-keys",
        json={"requests": [as_json]},
        headers={"Authorization": f"Bearer {admin._token}"},
        timeout=30,
    )
    assert r.headers["content-type"].startswith("application/json")
    assert base64.b64decode(r.json()["results"][0]["pads"]) == framed["pads"]


def test_broken_frames_are_refused() -> None:
    head = json.dumps({"results": [{"ok": True, "pads": {"$blob": 0, "len": 4}}]}).encode()
    good = b"GPAK\x01" + len(head).to_bytes(4, "little") + head + b"abcd"
    assert frames.read(good)[0]["pads"] == b"abcd"
    no_len = json.dumps({"results": [{"ok": True, "pads": {"$blob": 0, "len": "4"}}]}).encode()
    broken = [
        good[:-1],
        good + b"x",
        b"GPAK\x02" + good[5:],
        b"{}",
        b"GPAK\x01\xff\xff\xff\xff{}",  # JSON length past the end
        b'GPAK\x01\x05\x00\x00\x00{"res',  # JSON cut short
        b"GPAK\x01\x02\x00\x00\x00[]",  # not an object of results
        b"GPAK\x01" + len(no_len).to_bytes(4, "little") + no_len + b"abcd",  # a length that is not a number
    ]
    for bad in broken:
        with pytest.raises(gp.KeyhostError):
            frames.read(bad)


def test_reveal_sends_large_rid_sets_raw_and_reads_the_answer_frame(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"x": list(range(6000)), "g": [i % 2 for i in range(6000)]})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 10_000))})
    # every third row: thousands of short runs, a rid set of kilobytes
    every_third = enc.filter(pl.Series([i % 3 == 0 for i in range(6000)]))
    sealed = every_third.select(pl.col("x").ghost.sum())
    plan = _internal.RevealPlan(admin.keyhost_id)
    plan.add_sealed(sealed["x"])
    body, content_type = plan.body()
    assert content_type == frames.MEDIA_TYPE and body.startswith(b"GPAK\x01")
    assert gp.reveal(sealed, admin)["x"][0] == sum(range(0, 6000, 3))
    # grouped: one sums descriptor whose large groups are blobs; rows to decrypt: one more blob
    grouped = every_third.group_by("g").agg(pl.col("x").ghost.sum()).sort("g")
    got = gp.reveal(grouped, admin)
    assert got["x"].to_list() == [sum(i for i in range(0, 6000, 3) if i % 2 == g) for g in (0, 1)]
    opened = gp.reveal(every_third.select(pl.col("x").ghost.decrypt()), admin)
    assert opened["x"].to_list() == list(range(0, 6000, 3))
    # a contiguous set is a few bytes: plain JSON
    small = _internal.RevealPlan(admin.keyhost_id)
    small.add_sealed(enc.select(pl.col("x").ghost.sum())["x"])
    body, content_type = small.body()
    assert content_type == "application/json" and json.loads(body)["requests"][0]["op"] == "sum"
