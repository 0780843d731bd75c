"""CompleteGroups: rows come out whole groups at a time, in order, none lost or repeated."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallyio.grouping import CompleteGroups
from tallyio.record import TX_DTYPE


def make(blocks, txs):
    r = np.zeros(len(blocks), dtype=TX_DTYPE)
    r["block"] = blocks
    r["tx_index"] = txs
    r["id"] = np.arange(len(blocks))
    return r


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=60).map(sorted),
       st.lists(st.integers(1, 9), max_size=20))
@settings(max_examples=200, deadline=None)
def test_groups_are_released_whole_and_in_order(keys, cuts):
    rows = make([k[0] for k in keys], [k[1] for k in keys])
    g = CompleteGroups(("block", "tx_index"))
    out, i = [], 0
    for c in cuts + [len(rows)]:
        part = rows[i:i + c]
        i += len(part)
        ready = g.add(part)
        if len(ready):  # a released group never continues in what is still held
            out.append(ready)
    out.append(g.flush())
    got = np.concatenate(out) if out else rows[:0]
    assert got["id"].tolist() == list(range(len(rows)))
    for chunk in out[:-1]:
        last = (chunk["block"][-1], chunk["tx_index"][-1])
        later = rows[rows["id"] > chunk["id"][-1]]
        assert not any((b, t) == last for b, t in zip(later["block"], later["tx_index"]))


def test_groups_bounds_and_bad_fields():
    r = make([1, 1, 2, 2, 2, 5], [0, 1, 0, 0, 1, 0])
    assert CompleteGroups.groups(r, ("block",)) == [(0, 2), (2, 5), (5, 6)]
    assert CompleteGroups.groups(r, ("block", "tx_index")) == [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6)]
    assert CompleteGroups.groups(r[:0], ("block",)) == []
    with pytest.raises(ValueError, match="fields must name at least one column"):
        CompleteGroups(())
    g = CompleteGroups(("block",))
    assert len(g.add(r[:3])) == 2 and g.rows_held == 1
    assert len(g.flush()) == 1 and len(g.flush()) == 0
