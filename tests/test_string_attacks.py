"""Attack suite, strings (issue 19): frequency attacks on the ``search`` and ``fuzzy`` facets.
Each test runs against a real keyhost process and fails if the attack it reproduces works
again; the last one shows the residual leakage docs/threat-model.md states (it fails if the
documented leakage disappears, so the docs have to change with the code)."""

from __future__ import annotations

import random
import string
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal, linkage

DATA = Path(__file__).parent / "data" / "large_names_5k.csv"


def _names() -> pl.DataFrame:
    return pl.read_csv(DATA).rename(lambda c: c.strip())


def test_prefix_and_qgram_frequencies_are_not_countable_at_rest(admin: gp.Session, dataset: gp.Dataset) -> None:
    """Counting equal bytes per slot (first letters, frequent q-grams) finds nothing: every slot
    of every row holds a distinct tag, although one first letter starts hundreds of names."""
    df = _names()
    enc = gp.encrypt(df, dataset, {"first": gp.text(prefix=(1, 2), substring=3)})
    top_letter = Counter(s[0] for s in df["first"]).most_common(1)[0][1]
    assert top_letter > 300
    cells = enc["first"].ext.storage().struct.field("search").to_list()
    slots = len(cells[0]) // 8
    for k in range(slots):
        per_slot = Counter(bytes(c[8 * k : 8 * k + 8]) for c in cells)
        assert per_slot.most_common(1)[0][1] == 1, k
    # a value repeating a q-gram stores it as unrelated tags (position-bound): no row shows
    # repeated tags, not even the repeated "ana" of a constructed "anana"
    extra = gp.encrypt(pl.DataFrame({"first": ["anana", "aaaaaa"]}), dataset, {"first": gp.text(substring=3)})
    for row in cells + extra["first"].ext.storage().struct.field("search").to_list():
        tags = [bytes(row[i : i + 8]) for i in range(0, len(row), 8)]
        assert len(set(tags)) == len(tags)


def test_enumerating_prefixes_for_a_histogram_stops_at_max_constants(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """An analyst asks for all 26 one-letter prefixes to rebuild the first-letter histogram;
    the grant's max_constants refuses the sixth distinct constant (audited)."""
    enc = gp.encrypt(_names(), dataset, {"first": gp.text(prefix=(1,))})
    token = admin.grant(f"hist{random.randrange(10**9)}", dataset, [gp.allow.search("first", max_constants=5)])
    assert token is not None
    an = gp.connect(keyhost.url, token)
    counts = {}
    with pytest.raises(gp.PermissionDenied) as e:
        for letter in string.ascii_uppercase:
            q = enc.lazy().select(pl.col("first").ghost.starts_with(letter).sum())
            counts[letter] = q.ghost.collect(an).item()
    assert e.value.reason == "max_constants" and len(counts) == 5
    refused = admin.audit(dataset).filter((pl.col("operation") == "search") & (pl.col("decision") == "refused"))
    assert refused.height >= 1


def test_fuzzy_encodings_of_equal_values_are_never_identical(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    """Counting exact duplicates among unsealed encodings (a link-grant holder's view) gives no
    frequencies: salt bits make every encoding of a frequent name different."""
    tag = random.randrange(10**9)
    admin.create_join_domain(f"freq{tag}")
    ds = admin.create_dataset(f"freq{tag}")
    df = _names().head(2000)
    enc = gp.encrypt(df, ds, {"first": gp.text(fuzzy=True, join_domain=f"freq{tag}")})
    _, _, seeds, _ = linkage._unsealing_seeds(enc, enc, ["first"], admin)
    cells = _internal.fuzzy_encodings(enc["first"], seeds[0])
    top_name, top_count = Counter(df["first"]).most_common(1)[0]
    assert top_count >= 5
    assert Counter(cells).most_common(1)[0][1] == 1
    # residual leakage (documented): near-duplicate clusters. Encodings of the most frequent
    # name are within Dice 0.95 of each other, so cluster sizes follow name frequencies.
    bits = np.unpackbits(np.stack([np.frombuffer(c, np.uint8) for c in cells]), axis=1).astype(np.int64)
    idx = [i for i, s in enumerate(df["first"]) if s == top_name]
    inter = bits[idx] @ bits[idx].T
    w = bits[idx].sum(1)
    dice = 2 * inter / (w[:, None] + w[None, :])
    assert dice.min() > 0.9
    sims = gp.similarity(enc, enc, on=["first"], session=admin, threshold=0.95)
    cluster = sims.filter(pl.col("left_index") == idx[0]).height
    assert cluster >= top_count  # the frequency of the top name shows as a cluster size


def test_fuzzy_encodings_of_a_field_with_few_values_cluster_into_its_histogram(
    keyhost: KeyhostProcess, admin: gp.Session
) -> None:
    """A field with few values (a state) encoded with ``fuzzy=True``: salt bits make every
    encoding distinct (no exact-duplicate count), but to a link-grant holder the encodings of
    one value stay within Dice 0.85 of each other and those of different values far apart, so
    clustering them recovers the value histogram exactly; matched to a public distribution of
    states, that names every row's state. This is the residual leakage docs/threat-model.md
    states for such fields (use ``match``/``group`` facets for them, or leave them out of
    linkage); the test fails if the leakage disappears, so the docs have to change with it."""
    rng = random.Random(19)
    states = {"nsw": 900, "vic": 700, "qld": 500, "wa": 300, "sa": 250, "tas": 100, "act": 50, "nt": 30}
    values = [s for s, n in states.items() for _ in range(n)]
    rng.shuffle(values)
    tag = random.randrange(10**9)
    admin.create_join_domain(f"few{tag}")
    ds = admin.create_dataset(f"few{tag}")
    enc = gp.encrypt(pl.DataFrame({"state": values}), ds, {"state": gp.text(fuzzy=True, join_domain=f"few{tag}")})
    _, _, seeds, _ = linkage._unsealing_seeds(enc, enc, ["state"], admin)
    cells = _internal.fuzzy_encodings(enc["state"], seeds[0])
    # what the hardening does: no two rows have the same encoding, although 900 share "nsw"
    assert len(set(cells)) == len(cells)
    # what remains: clusters at Dice >= 0.85 around a first row are the values, sizes their
    # counts (one value's encodings share its 20-40 bits and differ in at most 6 salt bits)
    bits = np.unpackbits(np.stack([np.frombuffer(c, np.uint8) for c in cells]), axis=1).astype(np.float32)
    w = bits.sum(1)
    dice = 2 * (bits @ bits.T) / (w[:, None] + w[None, :])
    label = np.full(len(cells), -1)
    for i in range(len(cells)):
        if label[i] < 0:
            label[(dice[i] >= 0.85) & (label < 0)] = i
    sizes = sorted(Counter(label.tolist()).values(), reverse=True)
    assert sizes == sorted(states.values(), reverse=True), sizes
    by_cluster = {lab: Counter(v for v, lb in zip(values, label, strict=True) if lb == lab) for lab in set(label)}
    assert all(len(c) == 1 for c in by_cluster.values())  # every cluster is one state
