"""Pure-Python Uniswap V2 arithmetic: the reference the compiled kernels (``tallyio.amm``) are
tested against.

These are the example strategies' original functions (``tallyio_arbitrage.amm``,
``tallyio_sandwich.amm``), copied step for step and generalised to a per-pool fee
``(fee_num, fee_den)``, 997/1000 (Uniswap V2) by default; with that default they return exactly
what the originals return. Python ints are unbounded, so these never overflow: where a result is
2**256 or more, the compiled kernel reports ``AmmOverflowError`` instead. Each public function
validates its input the way the compiled one does (a zero reserve, a bad fee: ``ValueError``),
so the two raise alike. ``tests/core/test_amm.py`` holds the compiled kernels to these, over the
full u256 range and on real mainnet swaps.

Slow (a Python bigint operation per step), clear, and kept for that: read these to understand a
kernel; call ``tallyio.amm`` to use one.
"""
from __future__ import annotations

import operator
from math import isqrt
from typing import NamedTuple

FEE_NUM = 997  # Uniswap V2 keeps 0.3% of every input
FEE_DEN = 1000
FEE = (FEE_NUM, FEE_DEN)
# Scan width either side of the closed-form optimum when the proof interval is too wide to scan.
WINDOW = 16
U256_MAX = (1 << 256) - 1


class CrossPool(NamedTuple):
    """The best trade X -> Y on pool A, Y -> X on pool B: input, the Y in between, X back."""

    amount_in: int
    amount_mid: int
    amount_out: int
    gross_profit: int
    optimal: bool  # True: proven the maximum over every integer input


class Sandwich(NamedTuple):
    """A front-run against a victim's swap: what goes in, what each leg gets, the gross profit.

    ``gross_profit`` is ``back_out - front_in`` and may be negative (a tiny victim near the
    break-even). ``bound``: ``"slippage"`` when the front-run is the largest the victim allows,
    ``"profit"`` when it is an interior peak of the profit.
    """

    front_in: int
    front_out: int
    victim_out: int
    back_out: int
    gross_profit: int
    bound: str


def check_fee(fee, name: str = "fee") -> tuple[int, int]:
    """``fee`` as ``(num, den)`` with ``0 < num < den < 2**32``; ValueError or TypeError naming
    ``name`` otherwise."""
    try:
        num, den = fee
        if isinstance(num, bool) or isinstance(den, bool):
            raise TypeError
        num, den = operator.index(num), operator.index(den)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (fee_num, fee_den) pair of ints, got {fee!r}") from None
    if not 0 < num < den < 1 << 32:
        raise ValueError(f"{name} must satisfy 0 < fee_num < fee_den < 2**32, got {fee!r}")
    return num, den


def _check_reserves(**reserves: int) -> None:
    for name, r in reserves.items():
        if r <= 0:
            raise ValueError(f"{name} must be positive, got {r}")


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee=FEE) -> int:
    """``UniswapV2Library.getAmountOut``: ``in*g*R_out // (R_in*D + in*g)`` for fee ``g/D``.

    Raises ``ValueError`` where the library reverts (a non-positive input or reserve).
    """
    g, D = check_fee(fee)
    if amount_in <= 0:
        raise ValueError(f"amount_in must be positive, got {amount_in}")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError(f"reserves must be positive, got {reserve_in}, {reserve_out}")
    a = amount_in * g
    return a * reserve_out // (reserve_in * D + a)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee=FEE) -> int:
    """``UniswapV2Library.getAmountIn``: ``R_in*out*D // ((R_out - out)*g) + 1``, the smallest
    input that buys ``amount_out``.

    Raises ``ValueError`` where the library reverts: a non-positive amount or reserve, or
    ``amount_out >= reserve_out``.
    """
    g, D = check_fee(fee)
    if amount_out <= 0:
        raise ValueError(f"amount_out must be positive, got {amount_out}")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError(f"reserves must be positive, got {reserve_in}, {reserve_out}")
    if amount_out >= reserve_out:
        raise ValueError(f"amount_out must be below reserve_out, got {amount_out} >= {reserve_out}")
    return reserve_in * amount_out * D // ((reserve_out - amount_out) * g) + 1


def price_cmp(reserve0_a: int, reserve1_a: int, reserve0_b: int, reserve1_b: int) -> int:
    """-1, 0 or 1 as pool a's price ``reserve1_a / reserve0_a`` is below, equal to or above
    pool b's, compared exactly (cross products). ValueError for a non-positive reserve."""
    _check_reserves(reserve0_a=reserve0_a, reserve1_a=reserve1_a, reserve0_b=reserve0_b,
                    reserve1_b=reserve1_b)
    lhs, rhs = reserve1_a * reserve0_b, reserve1_b * reserve0_a
    return (lhs > rhs) - (lhs < rhs)


def _out(a: int, rin: int, rout: int, g: int = FEE_NUM, D: int = FEE_DEN) -> int:
    # get_amount_out without the checks, for inner loops whose inputs are known good (0 -> 0)
    a *= g
    return a * rout // (rin * D + a)


def cross_profit(d: int, xa: int, ya: int, xb: int, yb: int, fee_a=FEE, fee_b=FEE) -> int:
    """Exact gross profit of selling ``d`` X on A and the Y it buys on B."""
    return _out(_out(d, xa, ya, *fee_a), yb, xb, *fee_b) - d


def best_cross_pool(xa: int, ya: int, xb: int, yb: int, threshold: int = 0,
                    max_scan: int = 1024, fee_a=FEE, fee_b=FEE) -> CrossPool | None:
    """The input that maximizes the exact profit of X -> Y on A (``xa, ya``), Y -> X on B.

    None unless some input's gross profit exceeds ``threshold`` (gas plus minimum profit).
    ``fee_a`` and ``fee_b`` are each pool's ``(g, D)``.

    Without floors the round trip is ``f(d) = A d / (B + C d)`` with ``A = ga gb ya xb``,
    ``B = Da Db xa yb``, ``C = ga Db yb + ga gb ya``, so ``P(d) = f(d) - d`` peaks at
    ``d* = (sqrt(AB) - B) / C`` and is positive only if ``A > B``. The floors only lower the
    profit, so every input that beats the best seen so far, ``t``, lies where the floorless
    profit exceeds ``t``: an interval between the roots of a quadratic.

    The search runs over the unit that is worth more (finer steps of the other cannot help):
    inputs ``d`` when a unit of Y is worth at most a unit of X (``ya >= xa``), else the amounts
    ``y`` of Y bought, each at its smallest input ``d_min(y) = ceil(Da xa y / (ga (ya - y)))``, with
    profit ``Q(y) = gb y xb / (Db yb + gb y) - Da xa y / (ga (ya - y))`` before floors. When the
    interval holds at most ``max_scan`` integers it is scanned whole and the result is the exact
    maximum (``optimal``); otherwise (deep pools: the width grows like the square root of the
    reserves) ``WINDOW`` points either side of the optimum are scanned, within 2 units of the
    maximum (one floor or ceiling per leg, each worth less than one unit). Ties go to the smallest
    input. ValueError for a non-positive reserve or a bad fee.
    """
    ga, Da = check_fee(fee_a, "fee_a")
    gb, Db = check_fee(fee_b, "fee_b")
    _check_reserves(xa=xa, ya=ya, xb=xb, yb=yb)
    fa, fb = (ga, Da), (gb, Db)
    A = ga * gb * ya * xb
    B = Da * Db * xa * yb
    if A <= B:
        return None
    C = ga * Db * yb + ga * gb * ya
    c = max(1, (isqrt(A * B) - B) // C)
    best_d, t = 0, threshold
    for d in (c, c + 1):  # seed t with the closed-form optimum: it narrows the interval
        p = cross_profit(d, xa, ya, xb, yb, fa, fb)
        if p > t:
            best_d, t = d, p
    if ya >= xa:
        # P(d) > t  <=>  C d^2 + (B + C t - A) d + t B < 0
        qa, qb, qc = C, B + C * t - A, t * B
        centre = c
    else:
        # Q(y) > t  <=>  a2 y^2 - b2 y + c2 < 0 (both sides times (Db yb + gb y) ga (ya - y) > 0)
        qa = ga * gb * xb + Da * gb * xa - t * ga * gb
        qb = -(ga * gb * xb * ya - Da * Db * xa * yb + t * ga * Db * yb - t * ga * gb * ya)
        qc = t * ga * Db * yb * ya
        centre = _out(c, xa, ya, ga, Da)
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc <= 0:  # the floorless profit never exceeds t: the seed (if any) is best
        return _result(best_d, xa, ya, xb, yb, True, fa, fb) if best_d else None
    r = isqrt(disc)
    lo = max(1, (-qb - r - 1) // (2 * qa))  # widened by one on each side: isqrt floors
    hi = (-qb + r + 1) // (2 * qa) + 1
    optimal = hi - lo + 1 <= max_scan
    if not optimal:
        lo, hi = max(lo, centre - WINDOW), min(hi, centre + 1 + WINDOW)
    best_d, best_p = 0, threshold
    if ya >= xa:
        for d in range(lo, hi + 1):
            p = _out(_out(d, xa, ya, ga, Da), yb, xb, gb, Db) - d
            if p > best_p:
                best_d, best_p = d, p
    else:
        hi = min(hi, ya - 1)
        num, den = Da * xa, ga
        for y in range(lo, hi + 1):
            d = -(-num * y // (den * (ya - y)))  # d_min(y), exact
            p = _out(_out(d, xa, ya, ga, Da), yb, xb, gb, Db) - d
            if p > best_p:
                best_d, best_p = d, p
    return _result(best_d, xa, ya, xb, yb, optimal, fa, fb) if best_d else None


def _result(d, xa, ya, xb, yb, optimal, fee_a=FEE, fee_b=FEE):
    mid = _out(d, xa, ya, *fee_a)
    back = _out(mid, yb, xb, *fee_b)
    return CrossPool(d, mid, back, back - d, optimal)


def victim_survives(front: int, victim_in: int, victim_min_out: int, reserve_in: int,
                    reserve_out: int, fee=FEE) -> bool:
    """Whether the victim's swap still pays at least ``max(victim_min_out, 1)`` after a
    front-run."""
    g, D = fee
    got = _out(front, reserve_in, reserve_out, g, D)
    out = _out(victim_in, reserve_in + front, reserve_out - got, g, D)
    return out > 0 and out >= victim_min_out


def max_frontrun(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int,
                 fee=FEE) -> int | None:
    """The largest front-run (same direction as the victim) its swap survives; None if it fails
    without one (or ``victim_in`` is 0).

    The victim's output only falls as the front-run grows, so the answer is a threshold. The
    floorless condition ``g v y x D >= m (D x + g f)(D x + D f + g v)`` is a quadratic in ``f``
    whose root starts an exact gallop-and-bisect, a few steps instead of ~2 log2(reserve).
    ValueError for a non-positive reserve or a bad fee.
    """
    g, D = check_fee(fee)
    _check_reserves(reserve_in=reserve_in, reserve_out=reserve_out)
    fee = (g, D)
    v, m, x, y = victim_in, max(victim_min_out, 1), reserve_in, reserve_out
    if v <= 0 or not victim_survives(0, v, m, x, y, fee):
        return None
    qa = m * D * g
    qb = m * (g * (D * x + g * v) + D * D * x)
    qc = m * D * x * (D * x + g * v) - g * v * y * x * D
    disc = qb * qb - 4 * qa * qc
    guess = max(0, (-qb + isqrt(disc)) // (2 * qa)) if disc >= 0 else 0
    if victim_survives(guess, v, m, x, y, fee):
        lo, step = guess, 1
        while victim_survives(lo + step, v, m, x, y, fee):
            lo, step = lo + step, step * 2
        hi = lo + step
    else:
        hi, step = guess, 1
        while not victim_survives(max(0, hi - step), v, m, x, y, fee):
            hi, step = max(0, hi - step), step * 2
        lo = max(0, hi - step)
    while hi - lo > 1:  # lo survives, hi does not
        mid = (lo + hi) // 2
        if victim_survives(mid, v, m, x, y, fee):
            lo = mid
        else:
            hi = mid
    return lo


def sandwich_gross(front: int, victim_in: int, reserve_in: int, reserve_out: int,
                   fee=FEE) -> tuple[int, int, int]:
    """``(front_out, back_out, gross_profit)``: buy with ``front``, let the victim swap, sell
    all."""
    g, D = fee
    got = _out(front, reserve_in, reserve_out, g, D)
    x, y = reserve_in + front, reserve_out - got
    v_out = _out(victim_in, x, y, g, D)
    back = _out(got, y - v_out, x + victim_in, g, D)
    return got, back, back - front


def best_sandwich(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int,
                  fee=FEE) -> Sandwich | None:
    """The front-run to use against a victim, and what it earns before gas.

    Without rounding, the gross profit is unimodal in the front-run ``f``, and it rises from
    zero only if its slope there, ``g^2 (x + v)(D x + g v) / (D^3 x^2) - 1``, is positive: the
    victim must move the price by more than the two legs' fees. A victim that small is dismissed
    at once: the common case, and O(1). Otherwise the profit is typically still rising where the
    victim's slippage stops the front-run: then the answer is that largest front-run; a gain at
    ``f + f/10 + 1`` (computed as if the victim had no bound) shows the rise reaches ``f``. With a
    slippage bound so loose that the peak comes first, an exact integer ternary search over
    ``[1, f]`` and a scan of ``WINDOW`` inputs either side of it find the peak (within rounding).
    ValueError for a non-positive reserve or a bad fee.
    """
    g_, D = check_fee(fee)
    _check_reserves(reserve_in=reserve_in, reserve_out=reserve_out)
    fee = (g_, D)
    x, v = reserve_in, victim_in
    if g_ * g_ * (x + v) * (D * x + g_ * v) <= D * D * D * x * x:
        return None
    f = max_frontrun(victim_in, victim_min_out, reserve_in, reserve_out, fee)
    if not f:
        return None

    def gross(a):
        return sandwich_gross(a, victim_in, reserve_in, reserve_out, fee)[2]

    if gross(f + f // 10 + 1) > gross(f):
        best, bound = f, "slippage"
    else:
        lo, hi = 1, f
        while hi - lo > 2:
            m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
            if gross(m1) < gross(m2):
                lo = m1 + 1
            else:
                hi = m2 - 1
        best, bound, p = 0, "profit", None
        for a in range(max(1, lo - WINDOW), min(f, hi + WINDOW) + 1):
            g = gross(a)
            if p is None or g > p:
                best, p = a, g
    got, back, gp = sandwich_gross(best, victim_in, reserve_in, reserve_out, fee)
    v_out = _out(victim_in, reserve_in + best, reserve_out - got, g_, D)
    return Sandwich(best, got, v_out, back, gp, bound)


# ---- Balancer V1 (BNum.sol / BMath.sol of balancer-labs/balancer-core) --------------------------

BONE = 10**18
BPOW_PRECISION = BONE // 10**10
MAX_IN_RATIO = BONE // 2  # swapExactAmountIn: an input at most half the balance in
_BPOW_MAX_TERMS = 10000  # the kernel's cap on bpowApprox's series (valid pools need dozens)


class BalancerRevert(ValueError):
    """Where the BPool's own arithmetic reverts (an overflow, a power base out of range)."""


def _bcheck(v: int) -> int:
    if not 0 <= v <= U256_MAX:
        raise BalancerRevert(v)
    return v


def bmul(a: int, b: int) -> int:
    return _bcheck(_bcheck(a * b) + BONE // 2) // BONE


def bdiv(a: int, b: int) -> int:
    if b == 0:
        raise BalancerRevert("division by zero")
    return _bcheck(_bcheck(a * BONE) + b // 2) // b


def _bpowi(a: int, n: int) -> int:
    z = a if n % 2 else BONE
    n //= 2
    while n:
        a = bmul(a, a)
        if n % 2:
            z = bmul(z, a)
        n //= 2
    return z


def _bpow_approx(base: int, exp: int) -> int:
    x, xneg = abs(base - BONE), base < BONE
    term, total, negative, i = BONE, BONE, False, 1
    while term >= BPOW_PRECISION:
        if i > _BPOW_MAX_TERMS:
            raise BalancerRevert("bpowApprox does not converge")
        big_k = i * BONE
        c, cneg = abs(exp - (big_k - BONE)), exp < big_k - BONE
        term = bdiv(bmul(term, bmul(c, x)), big_k)
        if term == 0:
            break
        negative ^= xneg
        negative ^= cneg
        total = _bcheck(total - term if negative else total + term)
        i += 1
    return total


def bpow(base: int, exp: int) -> int:
    if not 1 <= base <= 2 * BONE - 1:
        raise BalancerRevert("bpow base out of range")
    whole = _bpowi(base, exp // BONE)
    remain = exp % BONE
    return whole if remain == 0 else bmul(whole, _bpow_approx(base, remain))


def balancer_v1_out_given_in(balance_in: int, weight_in: int, balance_out: int, weight_out: int,
                             amount_in: int, swap_fee: int) -> int:
    """``BMath.calcOutGivenIn``; raises ``BalancerRevert`` where the pool reverts."""
    y = bdiv(balance_in, _bcheck(balance_in + bmul(amount_in, _bcheck(BONE - swap_fee))))
    return bmul(balance_out, _bcheck(BONE - bpow(y, bdiv(weight_in, weight_out))))


def balancer_v1_in_given_out(balance_in: int, weight_in: int, balance_out: int, weight_out: int,
                             amount_out: int, swap_fee: int) -> int:
    """``BMath.calcInGivenOut``; raises ``BalancerRevert`` where the pool reverts."""
    y = bdiv(balance_out, _bcheck(balance_out - amount_out))
    return bdiv(bmul(balance_in, _bcheck(bpow(y, bdiv(weight_out, weight_in)) - BONE)),
                _bcheck(BONE - swap_fee))


def balancer_v1_swap(amount_in: int, balance_in: int, weight_in: int, balance_out: int,
                     weight_out: int, swap_fee: int) -> int | None:
    """What ``swapExactAmountIn`` pays out, or None where it reverts (MAX_IN_RATIO, BMath, a zero
    output); ``maxPrice`` and ``minAmountOut`` left out."""
    if amount_in == 0 or amount_in > bmul(balance_in, MAX_IN_RATIO):
        return None
    try:
        out = balancer_v1_out_given_in(balance_in, weight_in, balance_out, weight_out, amount_in,
                                       swap_fee)
    except BalancerRevert:
        return None
    return out if 0 < out < balance_out else None


def brute_cross_v2_balancer(v2: tuple[int, int], bal: tuple[int, int, int, int, int],
                            v2_first: bool, limit: int, fee=FEE) -> CrossPool | None:
    """The best route over every input 1..limit, by exhaustion: X -> Y on the V2 pool
    (``v2 = (reserve_x, reserve_y)``) then Y -> X on the Balancer pool (``bal = (balance_y,
    weight_y, balance_x, weight_x, swap_fee)``) when ``v2_first``, else X -> Y on the Balancer
    pool (``bal = (balance_x, weight_x, balance_y, weight_y, swap_fee)``) then Y -> X on the V2
    pool (``v2 = (reserve_y, reserve_x)``). The first maximum of ``out - in`` > 0, or None.
    A reverting leg ends the route (no gain)."""
    g, D = check_fee(fee)
    best = None
    for x in range(1, limit + 1):
        if v2_first:
            mid = _out(x, v2[0], v2[1], g, D)
            out = balancer_v1_swap(mid, *bal) if mid else None
        else:
            mid = balancer_v1_swap(x, *bal)
            out = _out(mid, v2[0], v2[1], g, D) if mid else None
        if out is not None and out > x and (best is None or out - x > best.gross_profit):
            best = CrossPool(x, mid, out, out - x, True)
    return best
