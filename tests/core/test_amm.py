"""The compiled u256 AMM kernels (tallyio.amm) against the pure-Python reference
(tallyio.amm_reference) over the full u256 range and realistic reserves, their errors, and
get_amount_out against the chain's own outputs in real mainnet blocks."""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st

from tallyio import amm
from tallyio import amm_reference as ref
from tallyio._core.amm import _primitive
from tallyio.errors import AmmOverflowError, TallyIOError

U256 = 1 << 256
MAX = U256 - 1
REPO = Path(__file__).resolve().parents[2]

# Values spread over every width a u256 takes, with the edges (1, 2**64, 2**256 - 1) favoured:
# hypothesis' plain integers(1, MAX) rarely lands on a small or a near-maximal value.
wide = st.one_of(
    st.integers(1, MAX),
    st.integers(1, 1 << 64),
    st.integers(1, 1 << 128),
    st.integers(MAX - (1 << 64), MAX),
    st.sampled_from([1, 2, 3, (1 << 64) - 1, 1 << 64, (1 << 128) - 1, 1 << 255, MAX - 1, MAX]),
)
u256 = st.one_of(st.just(0), wide)
# Uniswap V2 stores reserves as uint112
reserve112 = st.integers(1, (1 << 112) - 1)
fees = st.one_of(
    st.sampled_from([(997, 1000), (9975, 10000), (998, 1000), (1, 2), (1, (1 << 32) - 1),
                     ((1 << 32) - 2, (1 << 32) - 1)]),
    st.integers(2, (1 << 32) - 1).flatmap(lambda d: st.tuples(st.integers(1, d - 1), st.just(d))),
)
# the fees of real Uniswap V2 forks (as the pool keeps them: 0.3%, 0.25%, 0.2%, 0.5%, 0.1%)
dex_fees = st.sampled_from([(997, 1000), (9975, 10000), (998, 1000), (995, 1000), (999, 1000)])

# Each property test: enough examples to reach every branch of the kernels (see the counted
# branch tests below), no deadline (the reference's scans take milliseconds on wide inputs).
SETTINGS = settings(max_examples=300, deadline=None)


def fits(result) -> bool:
    """Whether every amount of a reference result is representable as a u256."""
    if result is None:
        return True
    if isinstance(result, int):  # an amount, or price_cmp's sign
        return result < U256
    if isinstance(result, ref.Sandwich):  # gross_profit derives from front_in and back_out
        values = (result.front_in, result.front_out, result.victim_out, result.back_out)
    else:
        values = (result.amount_in, result.amount_mid, result.amount_out, result.gross_profit)
    return all(0 <= v < U256 for v in values)


def record(reference, outcome):
    """Tell hypothesis which outcome an example reached (``--hypothesis-show-statistics``)."""
    try:
        event(f"{reference.__name__}: {outcome}")
    except InvalidArgument:  # called outside a property test
        pass


def agree(compiled, reference, *args, **kw):
    """Run both; the compiled result must equal the reference's, raise ValueError where it does,
    and raise AmmOverflowError exactly where the reference's answer needs more than 256 bits.
    Returns the reference's result (or the string 'error')."""
    try:
        want = reference(*args, **kw)
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            compiled(*args, **kw)
        assert type(got.value) is type(e)
        record(reference, "error")
        return "error"
    record(reference, "none" if want is None else "result" if fits(want) else "overflow")
    if fits(want):
        got = compiled(*args, **kw)
        assert got == want, (args, kw)
        assert type(got) is type(want)
    else:
        with pytest.raises(AmmOverflowError):
            compiled(*args, **kw)
    return want


# ---------------------------------------------------------------- u256.h primitives


@SETTINGS
@given(u256, u256)
def test_u256_add_sub_mul_flag_overflow(a, b):
    assert _primitive("add", a, b) == ((a + b) % U256, int(a + b >= U256))
    assert _primitive("sub", a, b) == ((a - b) % U256, int(b > a))
    assert _primitive("mul", a, b) == ((a * b) % U256, int(a * b >= U256))


@SETTINGS
@given(u256, st.one_of(u256, st.integers(1 << 64, (1 << 128) - 1)))  # 2-word divisors: own path
@example((0x8000000000000000 << 128) | 3, (0x8000000000000000 << 64) | 1)
@example(MAX, (1 << 127) | 1)
@example(MAX, (1 << 64) + 1)
def test_u256_divmod(a, b):
    if b == 0:
        assert _primitive("divmod", a, b)[0] == 1
    else:
        assert _primitive("divmod", a, b) == (0, a // b, a % b)


@SETTINGS
@given(u256, st.integers(0, 255))
def test_u256_shifts(a, s):
    assert _primitive("shl", a, s) == ((a << s) % U256, int(a << s >= U256))
    assert _primitive("shr", a, s) == (a >> s, 0)


@SETTINGS
@given(st.one_of(st.integers(0, (1 << 512) - 1), st.builds(lambda a, b: a * b, u256, u256)),
       wide)
def test_u512_divmod(a, b):
    q, r = divmod(a, b)
    flag, got_q, got_r = _primitive("divmod512", a, b)
    assert got_r == r
    if q < U256:
        assert (flag, got_q) == (0, q)
    else:  # a quotient past 256 bits is reported, never truncated
        assert flag == 2


def big(bits):
    """Ints of up to ``bits`` bits with the top words dense in ones and zeros: the
    quotient-digit corrections of algorithm D fire on such (rare) operands."""
    return st.one_of(
        st.integers(0, (1 << bits) - 1),
        st.builds(lambda k, lo: ((1 << k) - 1) << (k // 2) | lo, st.integers(1, bits // 2),
                  st.integers(0, 1 << 32)),
        st.builds(lambda k: 1 << k, st.integers(0, bits - 1)),
    )


@settings(max_examples=600, deadline=None)
@given(big(1280), big(1280))
def test_wide_divmod_and_mul(a, b):
    if b == 0:
        assert _primitive("big_divmod", a, b)[0] == 1
    else:
        assert _primitive("big_divmod", a, b) == (0, a // b, a % b)
    if a * b < 1 << 1280:
        assert _primitive("big_mul", a, b) == (0, a * b)
    else:
        assert _primitive("big_mul", a, b)[0] == 1


@settings(max_examples=600, deadline=None)
@given(big(1280))
@example((1 << 1280) - 1)
@example((1 << 64) - 1)
@example((1 << 128) - 1)
def test_wide_isqrt(a):
    assert _primitive("isqrt", a) == (math.isqrt(a),)


def test_divmod_corrections_hit():
    # Algorithm D's rare paths, on operands found by replaying its quotient-digit estimates with
    # 64-bit digits in Python: the "add back" step (probability ~2/2^64 on random operands; this
    # is Hacker's Delight's divmnu test case with 64-bit digits) ...
    u = (0x7FFFFFFFFFFFFFFF << 192) | (0x8000000000000000 << 128)
    v = (0x8000000000000000 << 128) | 1
    assert _primitive("big_divmod", u, v) == (0, u // v, u % v)
    # ... and a top remainder word equal to the divisor's (estimate 2^64 - 1), then refined
    u = (0x8000000000000000 << 128) | 3
    v = (0x8000000000000000 << 64) | 1
    assert _primitive("big_divmod", u, v) == (0, u // v, u % v)
    assert _primitive("divmod", u, v) == (0, u // v, u % v)


# ---------------------------------------------------------------- amounts and prices


@SETTINGS
@given(u256, u256, u256, fees)
@example(MAX, MAX, MAX, ((1 << 32) - 2, (1 << 32) - 1))  # the 544-bit product
@example(MAX, 1, MAX, (997, 1000))
def test_get_amount_out_full_range(a, rin, rout, fee):
    agree(amm.get_amount_out, ref.get_amount_out, a, rin, rout, fee)


@SETTINGS
@given(st.integers(1, 1 << 112), reserve112, reserve112)
def test_get_amount_out_uint112_default_fee(a, rin, rout):
    agree(amm.get_amount_out, ref.get_amount_out, a, rin, rout)


@SETTINGS
@given(u256, u256, u256, fees)
@example(MAX - 1, MAX, MAX, (997, 1000))  # an input past 2**256
def test_get_amount_in_full_range(o, rin, rout, fee):
    agree(amm.get_amount_in, ref.get_amount_in, o, rin, rout, fee)


@SETTINGS
@given(reserve112, st.integers(2, (1 << 112) - 1), st.integers(1, 1 << 112))
def test_get_amount_in_buys_the_amount(rin, rout, o):
    # the smallest input that buys o, plus the library's unconditional +1 when the division is
    # exact
    o = o % rout or 1
    d = amm.get_amount_in(o, rin, rout)
    assert d == ref.get_amount_in(o, rin, rout)
    need, rest = divmod(o * rin * 1000, (rout - o) * 997)
    smallest = need + (rest > 0)
    assert d == smallest + (rest == 0)
    assert amm.get_amount_out(smallest, rin, rout) >= o
    assert smallest == 1 or amm.get_amount_out(smallest - 1, rin, rout) < o


@SETTINGS
@given(u256, u256, u256, u256)
@example(MAX, MAX, MAX, MAX)
@example(MAX, MAX - 1, MAX - 1, MAX - 2)
def test_price_cmp(r0a, r1a, r0b, r1b):
    agree(amm.price_cmp, ref.price_cmp, r0a, r1a, r0b, r1b)


def test_price_cmp_equal_prices_and_order():
    assert amm.price_cmp(2, 6, 3, 9) == 0
    assert amm.price_cmp(3, 10, 1, 3) == 1  # 10/3 > 3
    assert amm.price_cmp(1, 3, 3, 10) == -1
    # the prices differ by one part in 2**256: no float could tell
    assert amm.price_cmp(MAX, MAX - 1, MAX - 1, MAX - 2) == 1  # (M-1)^2 > M(M-2)
    assert amm.price_cmp(MAX - 1, MAX - 2, MAX, MAX - 1) == -1


# ---------------------------------------------------------------- best cross-pool trade


@st.composite
def near_pools(draw, reserves=st.integers(10**6, (1 << 112) - 1)):
    """Two pools of one pair at nearby prices (the only ones worth trading), in either unit."""
    xa, ya = draw(reserves), draw(reserves)
    k = draw(st.integers(100, 10_000))  # pool B up to 10 times deeper or shallower
    # price gap in units of 1e-4: below about -60 (the two fees) pool B sells Y cheaply enough
    # for a trade; a few gaps that leave none
    drift = draw(st.one_of(st.integers(-500, -61), st.integers(-500, 100)))
    xb = max(1, xa * k // 1000)
    yb = max(1, ya * k * (10000 + drift) // 10_000_000)
    return xa, ya, xb, yb


threshold = st.one_of(st.just(0), st.integers(0, 1 << 64), u256)
small_threshold = st.one_of(st.just(0), st.integers(0, 1 << 32))
# (a max_scan near 2**64 makes both sides scan the whole interval, ~sqrt(reserves) inputs: see
# test_best_cross_pool_unbounded_scan for it on small pools)
max_scan = st.one_of(st.just(1024), st.integers(0, 4096), st.sampled_from([0, 1]))


@SETTINGS
@given(near_pools(), small_threshold, max_scan)
def test_best_cross_pool_realistic(pools, t, scan):
    agree(amm.best_cross_pool, ref.best_cross_pool, *pools, t, scan)


@SETTINGS
@given(near_pools(st.integers(1000, 1 << 40)), st.integers(0, 1 << 20), max_scan, dex_fees,
       dex_fees)
def test_best_cross_pool_shallow_fees(pools, t, scan, fa, fb):
    # shallow pools: the proven interval is narrow enough to scan (optimal) more often
    agree(amm.best_cross_pool, ref.best_cross_pool, *pools, t, scan, fa, fb)


@SETTINGS
@given(wide, wide, wide, wide, threshold, st.integers(0, 64), fees, fees)
@example(MAX, MAX, MAX, MAX, 0, 64, (997, 1000), (997, 1000))
@example(1, MAX, MAX, 1, 0, 64, (997, 1000), (997, 1000))
@example(MAX, 1, 1, MAX, 0, 64, ((1 << 32) - 2, (1 << 32) - 1), ((1 << 32) - 2, (1 << 32) - 1))
def test_best_cross_pool_full_range(xa, ya, xb, yb, t, scan, fa, fb):
    agree(amm.best_cross_pool, ref.best_cross_pool, xa, ya, xb, yb, t, scan, fa, fb)


@settings(max_examples=100, deadline=None)
@given(near_pools(st.integers(1 << 16, 1 << 24)), st.integers(0, 1 << 8), dex_fees, dex_fees)
def test_best_cross_pool_unbounded_scan(pools, t, fa, fb):
    want = agree(amm.best_cross_pool, ref.best_cross_pool, *pools, t, (1 << 64) - 1, fa, fb)
    assert want is None or want.optimal


def test_best_cross_pool_reaches_every_branch():
    """Both search units with both ``optimal`` outcomes, each at least once, on seeded realistic
    pools (so the property tests above cannot pass by never reaching one)."""
    rng = np.random.default_rng(7)
    seen = Counter()
    for _ in range(400):
        bits = int(rng.integers(8, 72))  # shallow pools make the proven interval scannable
        xa, ya = ((int(v) << 10) >> (72 - bits) | 1 for v in rng.integers(1, 1 << 62, 2))
        k, drift = int(rng.integers(1, 4000)), int(rng.integers(-300, 300))
        xb, yb = max(1, xa * k // 1000), max(1, ya * k * (10000 + drift) // 10_000_000)
        t = int(rng.integers(0, 1 << 40)) if rng.random() < 0.3 else 0
        want = agree(amm.best_cross_pool, ref.best_cross_pool, xa, ya, xb, yb, t)
        if want is not None:
            seen["by_input" if ya >= xa else "by_output", want.optimal] += 1
    assert seen["by_input", True] and seen["by_input", False], seen
    assert seen["by_output", True] and seen["by_output", False], seen


def test_best_cross_pool_known_trade():
    # pool B pays 3% more X per Y: a trade exists, and none beats its profit by brute force
    xa, ya, xb, yb = 10**6, 3 * 10**6, 1_030_000, 3 * 10**6
    got = amm.best_cross_pool(xa, ya, xb, yb)
    assert got == ref.best_cross_pool(xa, ya, xb, yb)
    assert got.optimal
    best = max(range(1, 60_000), key=lambda d: (ref.cross_profit(d, xa, ya, xb, yb), -d))
    assert (got.amount_in, got.gross_profit) == (best, ref.cross_profit(best, xa, ya, xb, yb))
    # no trade above a threshold of its own profit; none at all between equal pools
    assert amm.best_cross_pool(xa, ya, xb, yb, got.gross_profit) is None
    assert amm.best_cross_pool(xa, ya, xa, ya) is None


# ---------------------------------------------------------------- sandwich


@st.composite
def victims(draw, reserves=reserve112):
    """A victim's swap into a pool with a slippage bound from none to exact."""
    x, y = draw(reserves), draw(reserves)
    v = draw(st.integers(1, x * 2))
    out = ref._out(v, x, y)
    slack = draw(st.integers(0, 1000))  # per mille of the quoted output the victim accepts
    return v, out * slack // 1000, x, y


@SETTINGS
@given(victims())
def test_max_frontrun_and_best_sandwich_realistic(vic):
    agree(amm.max_frontrun, ref.max_frontrun, *vic)
    agree(amm.best_sandwich, ref.best_sandwich, *vic)


@SETTINGS
@given(victims(st.integers(1, 1 << 48)), fees)
def test_sandwich_fees(vic, fee):
    agree(amm.max_frontrun, ref.max_frontrun, *vic, fee)
    agree(amm.best_sandwich, ref.best_sandwich, *vic, fee)


@settings(max_examples=150, deadline=None)
@given(u256, u256, wide, wide, fees)
@example(MAX, 0, MAX, MAX, (997, 1000))    # the largest front-run is ~2**384: overflow
@example(MAX, 1, 1, MAX, (997, 1000))
@example(1 << 200, 0, 1, 1 << 200, (1, 2))
def test_sandwich_full_range(v, m, x, y, fee):
    agree(amm.max_frontrun, ref.max_frontrun, v, m, x, y, fee)
    agree(amm.best_sandwich, ref.best_sandwich, v, m, x, y, fee)


def test_sandwich_reaches_every_branch():
    """Both bounds, the quick dismissal and a victim that fails without a front-run, on seeded
    realistic victims."""
    rng = np.random.default_rng(11)
    seen = Counter()
    for _ in range(300):
        x, y = (int(v) * 10**6 for v in rng.integers(1, 1 << 50, 2, dtype=np.int64))
        v = int(rng.integers(1, 1 << 50)) * 10**6 // int(rng.integers(1, 1000))
        out = ref._out(v, x, y)
        m = out * int(rng.integers(0, 1001)) // 1000
        if rng.random() < 0.05:
            m = out + 1  # cannot be met even without a front-run
        want = agree(amm.best_sandwich, ref.best_sandwich, v, m, x, y)
        agree(amm.max_frontrun, ref.max_frontrun, v, m, x, y)
        seen["none" if want is None else want.bound] += 1
    assert seen["slippage"] and seen["profit"] and seen["none"], seen
    assert amm.max_frontrun(10**18, 10**30, 10**21, 10**21) is None


def test_sandwich_negative_gross_profit():
    """A slippage-bound front-run can lose a unit to rounding: the compiled result reports the
    reference's negative gross profit, not a wrapped one."""
    rng = np.random.default_rng(3)
    for _ in range(20000):
        x, y = (int(v) for v in rng.integers(1, 2000, 2))
        v = int(rng.integers(1, 2000))
        m = ref._out(v, x, y) * int(rng.integers(900, 1001)) // 1000
        want = ref.best_sandwich(v, m, x, y)
        if want is not None and want.gross_profit < 0:
            assert amm.best_sandwich(v, m, x, y) == want
            return
    raise AssertionError("no losing sandwich in the seeded sample")


def test_overflow_results_raise():
    with pytest.raises(AmmOverflowError) as e:
        amm.get_amount_in(MAX - 1, MAX, MAX)
    assert isinstance(e.value, TallyIOError) and isinstance(e.value, OverflowError)
    assert ref.get_amount_in(MAX - 1, MAX, MAX) >= U256
    assert ref.max_frontrun(MAX, 0, MAX, MAX) >= U256
    with pytest.raises(AmmOverflowError):
        amm.max_frontrun(MAX, 0, MAX, MAX)
    assert not fits(ref.best_sandwich(MAX, 0, MAX, MAX))
    with pytest.raises(AmmOverflowError):
        amm.best_sandwich(MAX, 0, MAX, MAX)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("func, args", [
    (amm.get_amount_out, (1, 1, 1)),
    (amm.get_amount_in, (1, 2, 2)),
    (amm.price_cmp, (1, 1, 1, 1)),
    (amm.best_cross_pool, (1, 1, 1, 1)),
    (amm.max_frontrun, (1, 1, 1, 1)),
    (amm.best_sandwich, (1, 1, 1, 1)),
])
def test_values_outside_u256_name_the_parameter(func, args):
    names = func.__doc__.split("(", 1)[1].split(")", 1)[0].split(", ")
    for i in range(len(args)):
        for bad, words in ((-1, "non-negative, got -1"), (U256, f"below 2**256, got {U256}")):
            a = list(args)
            a[i] = bad
            with pytest.raises(ValueError, match=re.escape(f"{names[i]} must be {words}")):
                func(*a)
        a = list(args)
        a[i] = 1.0
        with pytest.raises(TypeError, match=names[i]):
            func(*a)


def test_numpy_integers_are_accepted():
    assert amm.get_amount_out(np.uint64(10**6), np.int64(10**9), 10**9) \
        == ref.get_amount_out(10**6, 10**9, 10**9)


@pytest.mark.parametrize("fee", [(1000, 1000), (1001, 1000), (0, 1000), (1, 1 << 32), (1, 0),
                                 (-1, 1000)])
def test_bad_fees(fee):
    for f in (amm.get_amount_out, ref.get_amount_out, amm.get_amount_in, ref.get_amount_in):
        with pytest.raises(ValueError, match=r"fee must satisfy 0 < fee_num < fee_den < 2\*\*32"):
            f(10, 100, 100, fee)
    for f in (amm.best_cross_pool, ref.best_cross_pool):
        with pytest.raises(ValueError, match="fee_b must satisfy"):
            f(10, 10, 10, 10, 0, 1024, (997, 1000), fee)
    for f in (amm.max_frontrun, amm.best_sandwich, ref.max_frontrun, ref.best_sandwich):
        with pytest.raises(ValueError, match="fee must satisfy"):
            f(10, 1, 100, 100, fee)


@pytest.mark.parametrize("fee", [997, (997,), (997, 1000, 1), ("997", "1000"), (True, 1000)])
def test_malformed_fees(fee):
    for f in (amm.get_amount_out, ref.get_amount_out):
        with pytest.raises(TypeError, match=r"fee must be a \(fee_num, fee_den\) pair of ints"):
            f(10, 100, 100, fee)


def test_zero_amounts_and_reserves_raise_as_the_reference():
    cases = [
        (amm.get_amount_out, ref.get_amount_out, (0, 5, 5), "amount_in must be positive, got 0"),
        (amm.get_amount_out, ref.get_amount_out, (5, 0, 5), "reserves must be positive, got 0, 5"),
        (amm.get_amount_out, ref.get_amount_out, (5, 5, 0), "reserves must be positive, got 5, 0"),
        (amm.get_amount_in, ref.get_amount_in, (0, 5, 5), "amount_out must be positive, got 0"),
        (amm.get_amount_in, ref.get_amount_in, (1, 0, 5), "reserves must be positive, got 0, 5"),
        (amm.get_amount_in, ref.get_amount_in, (5, 5, 5),
         "amount_out must be below reserve_out, got 5 >= 5"),
        (amm.price_cmp, ref.price_cmp, (1, 1, 0, 1), "reserve0_b must be positive, got 0"),
        (amm.best_cross_pool, ref.best_cross_pool, (1, 1, 1, 0), "yb must be positive, got 0"),
        (amm.best_cross_pool, ref.best_cross_pool, (0, 1, 1, 1), "xa must be positive, got 0"),
        (amm.max_frontrun, ref.max_frontrun, (1, 1, 0, 1), "reserve_in must be positive, got 0"),
        (amm.best_sandwich, ref.best_sandwich, (1, 1, 1, 0),
         "reserve_out must be positive, got 0"),
    ]
    for compiled, reference, args, message in cases:
        for f in (compiled, reference):
            with pytest.raises(ValueError, match=f"^{message}$"):
                f(*args)


def test_max_scan_must_be_a_u64():
    for bad in (-1, 1 << 64, 1.5, True):
        with pytest.raises(ValueError, match="max_scan must be an int in"):
            amm.best_cross_pool(10, 30, 11, 30, 0, bad)


def test_zero_victim_and_zero_threshold_edges():
    assert amm.max_frontrun(0, 0, 10**18, 10**18) is None is ref.max_frontrun(0, 0, 10**18, 10**18)
    assert amm.best_sandwich(0, 0, 10**18, 10**18) is None


# ---------------------------------------------------------------- batches and threads


@SETTINGS
@given(st.lists(st.tuples(u256, u256, u256, fees), max_size=40))
def test_get_amount_out_many(rows):
    a = amm.to_u256_column([r[0] for r in rows])
    ri = amm.to_u256_column([r[1] for r in rows])
    ro = amm.to_u256_column([r[2] for r in rows])
    fn = np.array([r[3][0] for r in rows], dtype=np.uint32)
    fd = np.array([r[3][1] for r in rows], dtype=np.uint32)
    out, status = amm.get_amount_out_many(a, ri, ro, fn, fd)
    assert out.shape == (len(rows), 4) and out.dtype == np.uint64 and status.dtype == np.uint8
    got = amm.from_u256_column(out)
    for i, (x, rin, rout, fee) in enumerate(rows):
        if x == 0:
            assert (status[i], got[i]) == (amm.ZERO_INPUT, 0)
        elif rin == 0 or rout == 0:
            assert (status[i], got[i]) == (amm.ZERO_RESERVE, 0)
        else:
            assert (status[i], got[i]) == (amm.OK, ref.get_amount_out(x, rin, rout, fee))


def test_get_amount_out_many_reads_record_fields_in_place():
    from tallyio.record import TX_DTYPE, int_to_u256
    rows = np.zeros(3, dtype=TX_DTYPE)
    for i, (x, rin, rout) in enumerate([(10**18, 10**21, 5 * 10**24), (1, 1, 1), (MAX, MAX, 7)]):
        rows["amount_in"][i] = int_to_u256(x)
        rows["amount_out_min"][i] = int_to_u256(rin)
        rows["amount_out"][i] = int_to_u256(rout)
    out, status = amm.get_amount_out_many(rows["amount_in"], rows["amount_out_min"],
                                          rows["amount_out"])  # strided views, default fee
    assert status.tolist() == [amm.OK] * 3
    assert amm.from_u256_column(out) == [ref.get_amount_out(10**18, 10**21, 5 * 10**24),
                                         ref.get_amount_out(1, 1, 1),
                                         ref.get_amount_out(MAX, MAX, 7)]
    _, status = amm.get_amount_out_many(rows["amount_in"], rows["amount_out_min"],
                                        rows["amount_out"], 1000, 1000)
    assert status.tolist() == [amm.BAD_FEE] * 3


def test_get_amount_out_many_rejects_bad_arrays():
    col = amm.to_u256_column([1, 2])
    with pytest.raises(ValueError, match=r"amount_in must be an \(n, 4\) uint64 array"):
        amm.get_amount_out_many(np.zeros((2, 3), np.uint64), col, col)
    with pytest.raises(ValueError, match=r"reserve_in must be an \(n, 4\) uint64 array"):
        amm.get_amount_out_many(col, col.astype(np.int64), col)
    with pytest.raises(ValueError, match="must have the same length, got 2, 1, 2"):
        amm.get_amount_out_many(col, col[:1], col)
    with pytest.raises(ValueError, match="fee_num must be a scalar or a 1-D array of length 2"):
        amm.get_amount_out_many(col, col, col, np.array([997], np.uint32))
    with pytest.raises(ValueError, match="fee_den must be in"):
        amm.get_amount_out_many(col, col, col, 997, 0)
    with pytest.raises(ValueError, match=r"values\[1\] must be below 2\*\*256"):
        amm.to_u256_column([1, U256])


def test_kernels_run_in_threads_without_the_gil():
    # the same answers from 4 threads at once (the searches release the GIL)
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(40):
        xa, ya = (int(v) * 10**9 for v in rng.integers(1, 1 << 50, 2, dtype=np.int64))
        cases.append((xa, ya, xa * 1003 // 1000, ya))
    want = [ref.best_cross_pool(*c) for c in cases]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(lambda c: amm.best_cross_pool(*c), cases)) == want


# ---------------------------------------------------------------- real mainnet swaps

GET_RESERVES = "0x0902f1ac"
V2_SWAP = "0x022c0d9f"
# Pair calls that change the reserves: swap, mint, burn, sync
PAIR_UPDATES = {V2_SWAP, "0x6a627842", "0x89afcb44", "0xfff6cae9"}
# UniswapV2Router02's exact-input swaps compute each hop's output with getAmountOut on the
# reserves it just read; the exact-output ones compute each hop's input with getAmountIn.
EXACT_INPUT = {"0x38ed1739", "0x7ff36ab5", "0x18cbafe5"}  # swapExactTokensFor{Tokens,ETH}, ETH->
EXACT_OUTPUT = {"0x8803dbee", "0xfb3bdb41", "0x4a25d94a"}  # swapTokensForExact{Tokens,ETH}, ...


def block_dir() -> Path:
    """The mainnet blocks beside the repository (``../shared/data/mainnet-blocks``), as the
    mainnet plugin's tests find them (``TALLYIO_MAINNET_BLOCKS`` overrides)."""
    return Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                               REPO.parent / "shared" / "data" / "mainnet-blocks"))


def revealed_swaps(block: dict):
    """Every live Uniswap V2 pair swap whose pair's reserves a getReserves call revealed earlier
    in the same transaction, with no reserve-changing call on the pair in between: dicts with
    the amounts in and out (the decoder's payment and the pair's own ``amountOut`` argument),
    the reserves in the swap's direction and the enclosing router call's selector."""
    from tallyio_mainnet.decode import decode_swaps

    swaps, _ = decode_swaps(block)
    decoded = {(s.tx_hash, s.trace_address): s for s in swaps if s.protocol == 1}
    by_tx: dict[str, list[dict]] = {}
    for t in block["traces"]:
        if t.get("transaction_position") is not None:
            by_tx.setdefault(t["transaction_hash"], []).append(t)
    for tx_hash, traces in by_tx.items():
        traces.sort(key=lambda t: t["trace_address"])
        reverted: list[tuple] = []
        reserves: dict[str, tuple[int, int]] = {}
        selectors: dict[tuple, str] = {}
        for t in traces:
            addr = tuple(t["trace_address"])
            if t.get("error") or any(addr[:len(r)] == r for r in reverted):
                if t.get("error"):
                    reverted.append(addr)
                continue
            if t.get("type") != "call":
                continue
            action = t["action"]
            pair, selector = action["to"].lower(), action.get("input", "0x")[:10].lower()
            selectors[addr] = selector
            if selector == GET_RESERVES:
                output = (t.get("result") or {}).get("output") or "0x"
                if len(output) >= 2 + 3 * 64:
                    reserves[pair] = (int(output[2:66], 16), int(output[66:130], 16))
                continue
            if selector not in PAIR_UPDATES:
                continue
            known = reserves.pop(pair, None)  # after this call the pair's reserves differ
            swap = decoded.get((tx_hash, addr))
            if selector != V2_SWAP or known is None or swap is None:
                continue
            data = action["input"][10:]
            out0, out1 = int(data[:64], 16), int(data[64:128], 16)
            if (out0 == 0) == (out1 == 0):
                continue  # both sides out: not a one-way swap
            r0, r1 = known
            rin, rout, out = (r1, r0, out0) if out0 else (r0, r1, out1)
            router = next((selectors[addr[:k]] for k in range(len(addr) - 1, -1, -1)
                           if selectors.get(addr[:k]) in EXACT_INPUT | EXACT_OUTPUT), None)
            yield {"tx": tx_hash, "amount_in": swap.amount_in, "amount_out": out,
                   "reserve_in": rin, "reserve_out": rout, "router": router}


def test_get_amount_out_equals_the_chains_output_on_mainnet_swaps():
    files = sorted(p for p in block_dir().glob("*.json") if p.stem.isdigit())
    assert files, f"no mainnet blocks in {block_dir()}"
    count = Counter()
    rows = []
    for path in files:
        with open(path) as f:
            block = json.load(f)
        for s in revealed_swaps(block):
            count["revealed"] += 1
            got = amm.get_amount_out(s["amount_in"], s["reserve_in"], s["reserve_out"])
            assert got == ref.get_amount_out(s["amount_in"], s["reserve_in"], s["reserve_out"])
            count["equal"] += got == s["amount_out"]
            if s["router"] in EXACT_INPUT:
                assert got == s["amount_out"], s
                count["exact_input"] += 1
                rows.append(s)
            elif s["router"] in EXACT_OUTPUT:
                assert amm.get_amount_in(s["amount_out"], s["reserve_in"],
                                         s["reserve_out"]) == s["amount_in"], s
                count["exact_output"] += 1
    # the batch kernel on the same rows
    out, status = amm.get_amount_out_many(amm.to_u256_column([s["amount_in"] for s in rows]),
                                          amm.to_u256_column([s["reserve_in"] for s in rows]),
                                          amm.to_u256_column([s["reserve_out"] for s in rows]))
    assert (status == amm.OK).all()
    assert amm.from_u256_column(out) == [s["amount_out"] for s in rows]
    print(f"mainnet swaps: {dict(count)} in {len(files)} blocks")
    assert count["exact_input"] >= 50, count
    assert count["exact_output"] >= 10, count
