"""The reference's sandwich arithmetic (``tallyio.amm_reference``: what the compiled screen is held
to): the front-run room against brute force, the profit, the slope rule."""
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from tallyio import synthetic
from tallyio.amm_reference import best_sandwich, max_frontrun, sandwich_gross, victim_survives
from tallyio.amm import get_amount_out


def test_sandwich_gross_hand_computed():
    # pool 10_000 / 10_000; front-run 1_000 buys 906 (see getAmountOut's hand example)
    # pool 11_000 / 9_094; victim 500 buys 500*997*9094 // (11_000_000 + 498_500) = 394
    # pool 11_500 / 8_700; back-run sells 906: 906*997*11500 // (8_700_000 + 903_282) = 1_081
    assert get_amount_out(500, 11_000, 9_094) == 394
    assert get_amount_out(906, 8_700, 11_500) == 1_081
    assert sandwich_gross(1_000, 500, 10_000, 10_000) == (906, 1_081, 81)


def linear_room(v, m, x, y):
    if not victim_survives(0, v, m, x, y):
        return None
    f = 0
    while victim_survives(f + 1, v, m, x, y):
        f += 1
    return f


@settings(max_examples=200, deadline=None)
@given(x=st.integers(100, 20_000), y=st.integers(100, 20_000), v=st.integers(1, 3_000),
       slip=st.integers(0, 300))
def test_max_frontrun_against_linear_scan(x, y, v, slip):
    expect = get_amount_out(v, x, y)
    m = expect * (1000 - slip) // 1000
    assert max_frontrun(v, m, x, y) == linear_room(v, m, x, y)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(10**18, 10**26), y=st.integers(10**18, 10**26), frac=st.floats(1e-5, 0.2),
       slip=st.integers(0, 200), extra=st.integers(0, 1000))
def test_max_frontrun_against_bisection_reference(x, y, frac, slip, extra):
    v = int(x * frac)
    m = get_amount_out(v, x, y) * (1000 - slip) // 1000 + extra
    assert max_frontrun(v, m, x, y) == synthetic.frontrun_room(v, m, x, y)


def test_victim_that_fails_unaided_has_no_room():
    assert max_frontrun(100, get_amount_out(100, 10**6, 10**6) + 1, 10**6, 10**6) is None
    assert max_frontrun(0, 0, 10**6, 10**6) is None


G = Fraction(997, 1000)


def floorless_gross(f, v, x, y):
    got = G * f * y / (x + G * f)
    x1, y1 = x + f, y - got
    ov = G * v * y1 / (x1 + G * v)
    return G * got * (x1 + v) / (y1 - ov + G * got) - f


@settings(max_examples=60, deadline=None)
@given(x=st.integers(10**6, 10**24), ratio=st.floats(1e-3, 1e3), frac=st.floats(1e-5, 3.0))
def test_floorless_profit_is_unimodal_and_the_slope_rule_holds(x, ratio, frac):
    # The two facts best_sandwich relies on, with exact fractions on a log grid of front-runs.
    y, v = max(1, int(x * ratio)), max(1, int(x * frac))
    vals = [floorless_gross(max(1, int(x * 10 ** (k / 6))), v, x, y) for k in range(-36, 19)]
    falling = False
    for a, b in zip(vals, vals[1:]):
        falling = falling or b < a
        assert not (falling and b > a)
    slope = G * G * (x + v) * (x + G * v) / (x * x) - 1
    if slope <= 0:
        assert max(vals) <= 0


def test_best_sandwich_uses_the_largest_front_run_when_slippage_binds():
    x = y = 10**22
    v = x // 100
    m = get_amount_out(v, x, y) * 95 // 100
    s = best_sandwich(v, m, x, y)
    f = synthetic.frontrun_room(v, m, x, y)
    assert s.bound == "slippage" and s.front_in == f
    assert (s.front_out, s.back_out, s.gross_profit) == sandwich_gross(f, v, x, y)
    assert s.victim_out >= m > get_amount_out(v, x + f + 1, y - get_amount_out(f + 1, x, y))


def test_best_sandwich_finds_the_peak_when_slippage_is_unbounded():
    x = y = 10**9
    v = x // 20
    s = best_sandwich(v, 0, x, y)  # amount_out_min 0: only the profit limits the front-run
    assert s.bound == "profit"
    grid = max(sandwich_gross(f, v, x, y)[2] for f in range(1, 5 * x, x // 1000))
    assert s.gross_profit >= grid


def test_small_victims_are_dismissed():
    # 0.1% of the pool moves its price less than the two legs' fees: never worth sandwiching
    assert best_sandwich(10**18, 0, 10**21, 10**21) is None
