"""``m.predict(encrypted_frame, session=an)``: fitted models score encrypted rows under a ``score``
grant (per row only ``x·coef_`` is revealed), equal to predicting on the plaintext."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_models import GROUP, SCHEMA, insurance

import ghostpii as gp
from conftest import KeyhostProcess

FEATURES = ["age", "bmi", "children"]


def _fit(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, score: bool) -> tuple[pl.DataFrame, gp.Session]:
    enc = gp.encrypt(insurance(), ds, SCHEMA, products=[GROUP])
    allows: list[gp.allow.Allow | gp.allow.Allows] = [gp.allow.moments(list(GROUP), min_rows=20)]
    if score:
        allows.append(gp.allow.score(FEATURES))
    token = admin.grant(f"pred_{ds.name}_{int(score)}", ds, allows)
    return enc, gp.connect(keyhost.url, token)


def test_linear_and_logistic_predict_on_encrypted_rows(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc, an = _fit(keyhost, admin, dataset, score=True)
    m = gp.ml.LinearRegression().fit(enc.lazy(), features=FEATURES, target="charges", session=an)
    plain = insurance().select(FEATURES)
    want = m.predict(plain).to_numpy()
    an.reset_stats()
    got = m.predict(enc.lazy(), session=an)
    assert an.stats()["answer_key_requests"] == 1
    assert got.len() == plain.height and got.dtype == pl.Float64
    assert np.allclose(got.to_numpy(), want, rtol=1e-9, atol=1e-6), (got.head(), want[:5])

    c = gp.ml.LogisticRegression(alpha=1.0).fit(
        enc.with_columns(insurance()["smoker_flag"]).lazy(), features=FEATURES, target="smoker_flag", session=an
    )
    p_plain = c.predict_proba(plain)["1"].to_numpy()
    p_enc = c.predict_proba(enc, session=an)["1"].to_numpy()
    assert np.allclose(p_enc, p_plain, atol=1e-9)
    assert (c.predict(enc, session=an) == c.predict(plain)).all()


def test_predict_on_encrypted_rows_needs_a_session_and_a_score_grant(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc, an = _fit(keyhost, admin, dataset, score=False)
    m = gp.ml.LinearRegression().fit(enc.lazy(), features=FEATURES, target="charges", session=an)
    with pytest.raises(gp.GhostError, match="session"):
        m.predict(enc)
    with pytest.raises(gp.PermissionDenied, match="score"):
        m.predict(enc, session=an)
