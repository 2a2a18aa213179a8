"""Dataset, column and identity names with reserved URL characters or unicode work end to end
(the client percent-encodes path segments); names HTTP would rewrite are refused at creation."""

from __future__ import annotations

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess

ODD = ["a/b", "what?", "x#y", "100%", "ünïcødé 数据", "..x", "sp ace"]


@pytest.mark.parametrize("name", ODD)
def test_odd_dataset_names_work_end_to_end(admin: gp.Session, name: str) -> None:
    ds = admin.create_dataset(f"{name}-{id(name)}")
    assert admin.dataset(ds.name).id == ds.id
    df = pl.DataFrame({name: [1, 2, 3]})
    enc = gp.encrypt(df, ds, {name: gp.integer(bounds=(0, 10))})
    assert enc.select(pl.col(name).ghost.sum()).ghost.reveal(admin)[name][0] == 6
    assert admin.rotate_column_key(ds, name)["epoch"] == 2
    assert admin.audit(ds).height > 0


def test_odd_identity_names_work(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    who = "anä/lyst?#%"
    token = admin.grant(who, dataset, [gp.allow.aggregate("x")])
    assert gp.connect(keyhost.url, token).whoami()["identity"] == who
    assert [t["identity"] for t in admin.tokens(who)] == [who]
    assert len(admin.grants(dataset, who)) == 1
    assert admin.revoke(who, dataset) == 1


@pytest.mark.parametrize("name", [".", "..", "", "  ", "tab\there"])
def test_names_http_would_rewrite_are_refused(admin: gp.Session, name: str) -> None:
    with pytest.raises(gp.KeyhostError, match="name must be"):
        admin.create_dataset(name)
    with pytest.raises(gp.KeyhostError, match="name must be"):
        admin.create_identity(name)
