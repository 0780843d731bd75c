"""Balancer V1 weighted math in the compiled kernels (tallyio.amm.balancer_v1_*) against the chain:
the pools' own calcOutGivenIn answers and swap outputs in the fixture blocks, and a plain-Python
port of BNum.sol / BMath.sol."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mainnet_data import BLOCK_FILES, BLOCKS_DIR, FULL_BLOCKS
from tallyio.amm import balancer_v1_in_given_out, balancer_v1_out_given_in
# the plain-Python port of BNum.sol / BMath.sol
from tallyio.amm_reference import BONE, BalancerRevert as Revert
from tallyio.amm_reference import balancer_v1_in_given_out as calc_in_given_out
from tallyio.amm_reference import balancer_v1_out_given_in as calc_out_given_in
from tallyio.record import PROTOCOL_BALANCER_V1
from tallyio_mainnet.decode import decode_swaps

SELECTOR_CALC_OUT_GIVEN_IN = "0xba9530a6"  # calcOutGivenIn(uint256 x6) on a BPool


# (balance_in, weight_in, balance_out, weight_out, amount_in, swap_fee) -> amount out, read off
# the traces: the BPools' own calcOutGivenIn staticcalls just before the swaps
CHAIN = [
    ((12644835129571039132542, 10 * BONE, 3818451949, 40 * BONE, 217463297279753112061,
      3 * 10**15), 16194807),  # block 10921991 tx 75, pool 0xc8782bd1...
    ((1116816375638211557137505, 10 * BONE, 849380083631541391953, 20 * BONE,
      9416943130618869082731, 3 * 10**15), 3547869861992962562),  # 11930296 tx 153
    ((1117021186919311373614680, 8 * 10**17, 27681585731037265422024, 2 * 10**17,
      599416992187500000000, 10**15), 59279191496614148431),  # 13179291 tx 145
]


@pytest.mark.parametrize("args,out", CHAIN)
def test_chain_answers(args, out):
    assert balancer_v1_out_given_in(*args) == calc_out_given_in(*args) == out


def _calc_calls(raw):
    """(pool, tx, inputs, output) of every live calcOutGivenIn call in a block."""
    for t in raw["traces"]:
        inp = t["action"].get("input", "0x")
        if t.get("type") == "call" and inp[:10] == SELECTOR_CALC_OUT_GIVEN_IN and t.get("result"):
            args = tuple(int(inp[10 + 64 * k:74 + 64 * k], 16) for k in range(6))
            yield (t["action"]["to"].lower(), t["transaction_position"], args,
                   int(t["result"]["output"][2:66], 16))


def test_every_calc_out_given_in_and_swap_in_the_blocks():
    calls = swaps = 0
    for path in BLOCK_FILES:
        raw = json.loads(path.read_text())
        found = list(_calc_calls(raw))
        for _, _, args, out in found:
            assert balancer_v1_out_given_in(*args) == out
        calls += len(found)
        # a swap priced by such a call just before it in its transaction pays out that amount
        for s in decode_swaps(raw)[0]:
            priced = [args for pool, tx, args, _ in found
                      if (pool, tx) == (s.pool, s.tx_index) and args[4] == s.amount_in]
            if s.protocol == PROTOCOL_BALANCER_V1 and priced:
                assert balancer_v1_out_given_in(*priced[-1]) == s.amount_out
                swaps += 1
    # 25 answers of the pools' own math (ten probes each in 13179291 and 13302365; block 10921991
    # is in the set twice) and 5 swaps they priced
    full = BLOCKS_DIR == FULL_BLOCKS
    assert (calls, swaps) == ((25, 5) if full else (0, 0))


# what a BPool accepts: MIN_BALANCE = 10**6, weights MIN_WEIGHT = BONE .. MAX_WEIGHT = 50 BONE,
# fees MIN_FEE = 10**12 .. MAX_FEE = 10**17, an input at most half the balance in (MAX_IN_RATIO) and
# an output at most a third of the balance out (MAX_OUT_RATIO); per mille of the balance here
_balance = st.integers(10**6, 10**30)
_weight = st.integers(BONE, 50 * BONE)
_fee = st.integers(10**12, 10**17)


@settings(max_examples=300, deadline=None)
@given(_balance, _weight, _balance, _weight, st.integers(0, 500), _fee)
def test_out_given_in_equals_the_solidity_port(bi, wi, bo, wo, per_mille, fee):
    a = bi * per_mille // 1000
    try:
        want = calc_out_given_in(bi, wi, bo, wo, a, fee)
    except Revert:
        with pytest.raises(ValueError, match="calcOutGivenIn reverts"):
            balancer_v1_out_given_in(bi, wi, bo, wo, a, fee)
        return
    assert balancer_v1_out_given_in(bi, wi, bo, wo, a, fee) == want


@settings(max_examples=300, deadline=None)
@given(_balance, _weight, _balance, _weight, st.integers(0, 333), _fee)
def test_in_given_out_equals_the_solidity_port(bi, wi, bo, wo, per_mille, fee):
    a = bo * per_mille // 1000
    try:
        want = calc_in_given_out(bi, wi, bo, wo, a, fee)
    except Revert:
        with pytest.raises(ValueError, match="calcInGivenOut reverts"):
            balancer_v1_in_given_out(bi, wi, bo, wo, a, fee)
        return
    assert balancer_v1_in_given_out(bi, wi, bo, wo, a, fee) == want


def test_bad_arguments():
    with pytest.raises(ValueError, match="calcOutGivenIn reverts"):  # a fee above 100%
        balancer_v1_out_given_in(10**20, BONE, 10**20, BONE, 10**18, 2 * BONE)
    with pytest.raises(ValueError, match="calcInGivenOut reverts"):  # more out than the balance
        balancer_v1_in_given_out(10**20, BONE, 10**20, BONE, 10**21, 10**15)
    with pytest.raises(ValueError, match="swap_fee must be non-negative, got -1"):
        balancer_v1_out_given_in(10**20, BONE, 10**20, BONE, 10**18, -1)
    with pytest.raises(ValueError, match="balance_in must be below 2\\*\\*256"):
        balancer_v1_out_given_in(1 << 256, BONE, 10**20, BONE, 10**18, 0)
    with pytest.raises(TypeError, match="amount_out must be an int"):
        balancer_v1_in_given_out(10**20, BONE, 10**20, BONE, 1.5, 0)
