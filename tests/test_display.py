"""What users read: encrypted cells and sealed values print readably, never their storage."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import ghostpii as gp


@pytest.fixture()
def enc(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"g": ["a", "a", "b"], "income": [1.5, None, 3.25], "dob": [dt.date(2000, 1, 1)] * 3})
    return gp.encrypt(df, dataset, {"income": gp.number(decimals=2, bounds=(0, 10)), "dob": gp.date()})


def _storage_leaks(text: str, enc: pl.DataFrame) -> bool:
    rids = [str(r) for r in enc["income"].ext.storage().struct.field("rid").to_list() if r is not None]
    return any(f"{{{r}," in text for r in rids) or "num_hi" in text


def test_encrypted_cells_print_as_their_type(enc: pl.DataFrame) -> None:
    text = repr(enc)
    assert "<enc float64>" in text and "<enc date>" in text, text
    assert "null" in text, "null positions are public and shown"
    assert not _storage_leaks(text, enc)
    assert "df.ghost.reveal(session)" in text, "a hint to reveal"
    assert str(enc) == text
    assert "<enc float64>" in repr(enc["income"])
    html = enc._repr_html_()
    assert "&lt;enc float64&gt;" in html and "ghost.reveal" in html
    glimpse = enc.glimpse(return_type="string")
    assert glimpse is not None and "<enc float64>" in glimpse and not _storage_leaks(glimpse, enc)
    assert enc.glimpse(return_type="self") is enc


def test_sealed_values_print_their_label_alone(enc: pl.DataFrame) -> None:
    out = enc.group_by("g", maintain_order=True).agg(pl.col("income").ghost.sum())
    text = repr(out)
    assert "<sealed sum(income) over 1 row>" in text, text
    assert "<sealed sum(income) over 2 rows>" not in text, "null rows are not counted"
    assert "masked" not in text and "payload" not in text
    both = enc.select(pl.col("dob").ghost.mean())
    assert "<sealed mean(dob) over 3 rows>" in repr(both)


def test_plain_frames_print_as_before(enc: pl.DataFrame) -> None:
    plain = enc.select("g")
    with pl.Config(fmt_str_lengths=5):
        assert "ghostpii" not in repr(plain)
        assert repr(plain) == plain._df.as_str()
