"""The engine's compiled duplicate filter against a plain-Python model."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tallyio._core.dedup import Dedup
from tallyio.record import TX_DTYPE


def batch(hashes, swaps):
    r = np.zeros(len(hashes), dtype=TX_DTYPE)
    r["id"] = np.arange(len(hashes))
    for i, (h, s) in enumerate(zip(hashes, swaps)):
        if h:
            r["tx_hash"][i, 0] = h & 0xFF
            r["tx_hash"][i, 31] = h >> 8
        r["swap_index"][i] = s
    return r


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=30),
                max_size=6))
def test_matches_a_set_model(batches):
    d, seen, dup = Dedup(1 << 12), set(), 0
    for b in batches:
        rows = batch([h for h, _ in b], [s for _, s in b])
        ids = rows["id"].copy()
        want = []
        for i, (h, s) in enumerate(b):
            if h == 0:
                want.append(ids[i])
            elif (h, s) not in seen:
                seen.add((h, s))
                want.append(ids[i])
            else:
                dup += 1
        kept = d.compact(rows)
        assert list(rows["id"][:kept]) == want  # kept rows first, in order
    assert d.duplicates == dup


def test_fresh_is_the_mask_form_and_leaves_the_batch():
    d = Dedup(64)
    rows = batch([1, 1, 0, 0, 2], [0, 0, 0, 0, 0])
    before = rows.copy()
    assert d.fresh(rows).tolist() == [True, False, True, True, True]
    assert (rows == before).all()
    assert d.fresh(rows).tolist() == [False, False, True, True, False]


def test_bad_input_and_uninitialised_object():
    with pytest.raises(ValueError, match="capacity must be an int >= 1, got 0"):
        Dedup(0)
    with pytest.raises(TypeError, match="TX_DTYPE"):
        Dedup(8).compact(np.zeros(3))
    ro = batch([1], [0])
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        Dedup(8).compact(ro)
    with pytest.raises(Exception, match="not initialised"):
        Dedup.__new__(Dedup).compact(batch([1], [0]))
