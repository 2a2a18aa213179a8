"""A failed gp.encrypt leaves no keyhost state; errors quote values in the user's units."""

from __future__ import annotations

import math

import polars as pl
import pytest

import ghostpii as gp


def _registered(admin: gp.Session, ds: gp.Dataset) -> int:
    log = admin.audit(ds)
    return log.filter(pl.col("operation").is_in(["column.register", "rids.allocate"])).height


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e300])
def test_unencryptable_floats_register_nothing_and_a_corrected_retry_works(
    admin: gp.Session, dataset: gp.Dataset, bad: float
) -> None:
    df = pl.DataFrame({"income": [1.5, bad, 3.0]})
    with pytest.raises(gp.EncryptionError, match=r"column 'income': value .* at row 1 cannot be encrypted") as e:
        gp.encrypt(df, dataset, {"income": gp.number(decimals=2)})
    assert "nothing was registered" in str(e.value)
    assert _registered(admin, dataset) == 0, "nothing registered, no rids allocated"
    # corrected data AND other settings: still fine, since nothing was registered
    fixed = df.with_columns(pl.col("income").fill_nan(None).clip(0, 10))
    enc = gp.encrypt(fixed, dataset, {"income": gp.number(decimals=3, bounds=(0, 10))})
    assert enc.select(pl.col("income").ghost.sum()).ghost.reveal(admin)["income"][0] == pytest.approx(
        fixed["income"].sum()
    )


def test_out_of_bounds_registers_nothing(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"x": [1, 2, 300]})
    with pytest.raises(gp.EncryptionError, match=r"value 300 at row 2 is outside the declared bounds \[0, 100\]"):
        gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 100))})
    assert _registered(admin, dataset) == 0
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 1000))})
    assert enc.select(pl.col("x").ghost.sum()).ghost.reveal(admin)["x"][0] == 303


def test_other_settings_on_a_registered_column_quote_user_units(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"income": [1.25, 2.5]})
    gp.encrypt(df, dataset, {"income": gp.number(decimals=2, bounds=(0, 100))})
    with pytest.raises(gp.EncryptionError) as e:
        gp.encrypt(df, dataset, {"income": gp.number(decimals=2, bounds=(0, 50))})
    msg = str(e.value)
    assert "[0.00, 100.00] on the keyhost" in msg and "[0.00, 50.00]" in msg, msg
    assert "10000" not in msg, "no scaled fixed-point integers"
    assert "into a new dataset" in msg
    assert isinstance(e.value.__cause__, gp.KeyhostError)
