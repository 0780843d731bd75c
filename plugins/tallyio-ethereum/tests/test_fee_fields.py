"""Record version 2: the transaction type and EIP-1559 fee caps, decoded from pending
transactions; version-1 rows and feed files load with the new fields zero."""
from __future__ import annotations

import numpy as np
import pytest
from abi import call
from test_calldata import USDC, USER, V2_ROUTER, WETH, tx

from tallyio.feeds import FeedError, read_feed, write_feed
from tallyio.record import (RECORD_FIELDS_ADDED, RECORD_VERSION, TX_DTYPE, effective_gas_price,
                            upgrade_records)
from tallyio_ethereum.calldata import decode_transactions

# TX_DTYPE as record version 1 had it: version 2 without the fields it added
V1 = np.dtype([(n, TX_DTYPE.fields[n][0]) for n in TX_DTYPE.names
               if n not in RECORD_FIELDS_ADDED[2]], align=True)


def _swap(**fees):
    data = call("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                10**18, 1, ("addresses", [WETH, USDC]), USER, 1_700_000_000)
    return dict(tx(V2_ROUTER, data), **fees)


def test_version_2_keeps_every_version_1_offset():
    assert RECORD_VERSION == 2 and V1.itemsize == 336 and TX_DTYPE.itemsize == 352
    assert all(TX_DTYPE.fields[n][1] == V1.fields[n][1] for n in V1.names)


def test_decoder_fills_the_type_and_fee_caps_and_the_effective_price_follows_the_base_fee():
    d = decode_transactions([
        _swap(type="0x2", maxFeePerGas=hex(50 * 10**9), maxPriorityFeePerGas=hex(2 * 10**9),
              gasPrice=hex(50 * 10**9)),
        _swap(gasPrice=hex(30 * 10**9)),                    # legacy: no type, no caps
        _swap(type="0x2", maxFeePerGas=hex(1 << 70), maxPriorityFeePerGas=hex(1 << 65)),
    ])
    r = d.rows
    assert r["tx_type"].tolist() == [2, 0, 2]
    assert r["max_fee_per_gas"].tolist() == [50 * 10**9, 0, (1 << 64) - 1]  # capped, not wrapped
    assert r["max_priority_fee_per_gas"].tolist() == [2 * 10**9, 0, (1 << 64) - 1]
    assert effective_gas_price(r, 10 * 10**9).tolist() == [12 * 10**9, 30 * 10**9, (1 << 64) - 1]
    assert effective_gas_price(r, 49 * 10**9).tolist()[:2] == [50 * 10**9, 30 * 10**9]
    with pytest.raises(ValueError, match="base_fee"):
        effective_gas_price(r, -1)


def test_version_1_rows_and_feed_files_load_with_the_new_fields_zero(tmp_path):
    new = decode_transactions([_swap(type="0x2", maxFeePerGas="0x5", maxPriorityFeePerGas="0x1")]).rows
    old = np.zeros(len(new), V1)
    for n in V1.names:
        old[n] = new[n]
    up = upgrade_records(old)
    assert up.dtype == TX_DTYPE
    assert all(np.array_equal(up[n], new[n]) for n in V1.names)
    assert not up["tx_type"].any() and not up["max_fee_per_gas"].any()
    np.savez(tmp_path / "old.npz", records=old)
    np.save(tmp_path / "old.npy", old)
    for name in ("old.npz", "old.npy"):
        got, _ = read_feed(tmp_path / name)
        assert got.dtype == TX_DTYPE and np.array_equal(got["tx_hash"], new["tx_hash"])
        assert not got["max_priority_fee_per_gas"].any()
    # a columnar feed written by version 1 has no column for the new fields: zero too
    write_feed(tmp_path / "new.npz", new)
    got, _ = read_feed(tmp_path / "new.npz")
    assert got["tx_type"].tolist() == [2] and got["max_fee_per_gas"].tolist() == [5]


def test_an_array_of_no_record_version_is_a_clear_error(tmp_path):
    bad = np.zeros(2, [("id", np.uint64), ("colour", np.uint8)])
    with pytest.raises(ValueError, match="'colour'"):
        upgrade_records(bad)
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(FeedError, match="must have dtype TX_DTYPE.*'colour'"):
        read_feed(tmp_path / "bad.npy")
    wrong = np.zeros(2, [(n, np.uint32 if n == "nonce" else TX_DTYPE.fields[n][0])
                         for n in V1.names])
    with pytest.raises(ValueError, match="'nonce'"):
        upgrade_records(wrong)
