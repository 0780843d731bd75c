"""Exact sandwich arithmetic on a Uniswap V2 pool: the room a victim's slippage leaves, and the
profit of front-running into it. Pool state and pricing come from ``tallyio_arbitrage.amm``.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

from tallyio_arbitrage.amm import FEE_DEN, FEE_NUM, WINDOW, _out


def victim_survives(front: int, victim_in: int, victim_min_out: int, reserve_in: int,
                    reserve_out: int) -> bool:
    """Whether the victim's swap still pays at least ``max(victim_min_out, 1)`` after a front-run."""
    got = _out(front, reserve_in, reserve_out)
    out = _out(victim_in, reserve_in + front, reserve_out - got)
    return out > 0 and out >= victim_min_out


def max_frontrun(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int) -> int | None:
    """The largest front-run (same direction as the victim) its swap survives; None if it fails
    without one.

    The victim's output only falls as the front-run grows, so the answer is a threshold. The
    floorless condition ``g v y x D >= m (D x + g f)(D x + D f + g v)`` is a quadratic in ``f``
    whose root starts an exact gallop-and-bisect, a few steps instead of ~2 log2(reserve).
    """
    v, m, x, y = victim_in, max(victim_min_out, 1), reserve_in, reserve_out
    if v <= 0 or not victim_survives(0, v, m, x, y):
        return None
    g, D = FEE_NUM, FEE_DEN
    qa = m * D * g
    qb = m * (g * (D * x + g * v) + D * D * x)
    qc = m * D * x * (D * x + g * v) - g * v * y * x * D
    disc = qb * qb - 4 * qa * qc
    guess = max(0, (-qb + isqrt(disc)) // (2 * qa)) if disc >= 0 else 0
    if victim_survives(guess, v, m, x, y):
        lo, step = guess, 1
        while victim_survives(lo + step, v, m, x, y):
            lo, step = lo + step, step * 2
        hi = lo + step
    else:
        hi, step = guess, 1
        while not victim_survives(max(0, hi - step), v, m, x, y):
            hi, step = max(0, hi - step), step * 2
        lo = max(0, hi - step)
    while hi - lo > 1:  # lo survives, hi does not
        mid = (lo + hi) // 2
        if victim_survives(mid, v, m, x, y):
            lo = mid
        else:
            hi = mid
    return lo


def sandwich_gross(front: int, victim_in: int, reserve_in: int, reserve_out: int) -> tuple[int, int, int]:
    """``(front_out, back_out, gross_profit)``: buy with ``front``, let the victim swap, sell all."""
    got = _out(front, reserve_in, reserve_out)
    x, y = reserve_in + front, reserve_out - got
    v_out = _out(victim_in, x, y)
    back = _out(got, y - v_out, x + victim_in)
    return got, back, back - front


@dataclass(frozen=True)
class Sandwich:
    front_in: int
    front_out: int
    victim_out: int
    back_out: int
    gross_profit: int
    bound: str  # "slippage": the largest front-run the victim allows; "profit": an interior peak


def best_sandwich(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int) -> Sandwich | None:
    """The front-run to use against a victim, and what it earns before gas.

    Without rounding, the gross profit is unimodal in the front-run ``f``, and it rises from
    zero only if its slope there, ``g^2 (x + v)(x + g v) / x^2 - 1``, is positive: the victim must
    move the price by more than the two legs' fees (a property the tests check with exact
    fractions). A victim that small is dismissed at once: the common case, and O(1). Otherwise
    the profit is typically still rising where the victim's slippage stops the front-run: then the
    answer is that largest front-run; a gain at ``f + f/10 + 1`` (computed as if the victim had
    no bound) shows the rise reaches ``f``. With a slippage bound so loose that the peak comes
    first, an exact integer ternary search over ``[1, f]`` and a scan of ``WINDOW`` inputs either
    side of it find the peak (within rounding).
    """
    g_, D = FEE_NUM, FEE_DEN
    x, v = reserve_in, victim_in
    if g_ * g_ * (x + v) * (D * x + g_ * v) <= D * D * D * x * x:
        return None
    f = max_frontrun(victim_in, victim_min_out, reserve_in, reserve_out)
    if not f:
        return None

    def gross(a):
        return sandwich_gross(a, victim_in, reserve_in, reserve_out)[2]

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
    got, back, gp = sandwich_gross(best, victim_in, reserve_in, reserve_out)
    v_out = _out(victim_in, reserve_in + best, reserve_out - got)
    return Sandwich(best, got, v_out, back, gp, bound)
