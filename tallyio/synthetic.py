"""A seeded synthetic market and pending-swap feed with planted MEV, plus brute-force references.

``Market(seed)`` builds tokens and constant-product (Uniswap V2) pools, several per token
pair, priced inside each pair's no-arbitrage band. ``generate_feed(seed, n, market, ...)`` turns it
into ``n`` pending swaps (``TX_DTYPE`` rows with ``FLAG_PENDING``) and returns, with them, the
ground truth: every opportunity the feed holds by construction.

Planting:

* an **arbitrage** is a large swap that pushes one pool's price far outside the band around its
  sibling pools (same token pair); the cross-pool arbitrage that follows it is recorded.
* a **sandwich** is a large victim swap with loose slippage (``amount_out_min`` well below the
  output it expects) on a deep pool; the front-run/back-run it allows is recorded. A victim that
  size also moves its pool's price outside the band, so the arbitrage it leaves behind is
  recorded as well (``cause="victim"``).

Each push or victim is followed at once by a *closing* swap (another sender's arbitrage, in
effect) that brings the pool back to its pair's reference price, so an opportunity is reported
once. Every other swap is small, keeps every pool inside the band (no arbitrage even at zero gas)
and has tight slippage; the generator checks each of them against the sandwich reference, so an
unplanted feed holds no opportunity at all.

Pool state follows the feed in arrival order: a swap whose output would fall below its
``amount_out_min`` (or be zero) reverts and leaves its pool unchanged, as on chain.

The references (``reference_arbitrage``, ``reference_sandwich``) are written independently of the
strategy plugins' closed forms: plain exhaustive scans where the search space is small enough, an
exact integer ternary search plus a neighbourhood scan otherwise. Profit token and gas rules (the
definitions the strategies follow):

* profit token of a pair: the WETH-like token 0 of the market when in the pair, else the pair's
  token0 (lower address) when priced, else token1; a pair with no priced token is skipped.
* gas cost in the profit token: ``ceil(gas_units * gas_price_wei / price)``, ``price`` the exact
  WETH-wei per unit of the token (a ``Fraction``; 1 for WETH).
* arbitrage: one transaction of ``arb_gas_units`` at the triggering swap's gas price (a back-run).
* sandwich: two transactions of ``sandwich_gas_units`` each; the front-run pays the victim's gas
  price + 1 wei, the back-run the victim's gas price.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

import numpy as np

from tallyio.record import (FLAG_PENDING, PROTOCOL_UNISWAP_V2, TX_DTYPE, address_bytes, address_hex,
                            int_to_u256, u256_column_to_ints, u256_to_int)

FEE_NUM = 997  # Uniswap V2: 0.3% of the input stays in the pool
FEE_DEN = 1000
ARB_GAS_UNITS = 200_000
SANDWICH_GAS_UNITS = 120_000

# Above this many candidate inputs the references stop scanning exhaustively.
EXHAUSTIVE_LIMIT = 1 << 21
NEIGHBOURHOOD = 64


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut with the 0.3% fee; 0 for a zero input."""
    a = amount_in * FEE_NUM
    return a * reserve_out // (reserve_in * FEE_DEN + a)


@dataclass
class Pool:
    """One constant-product pool; reserves are exact ints in the tokens' smallest units."""

    address: bytes
    token0: bytes
    token1: bytes
    reserve0: int
    reserve1: int

    def reserves(self, token_in: bytes) -> tuple[int, int]:
        """``(reserve_in, reserve_out)`` for a swap selling ``token_in``."""
        if token_in == self.token0:
            return self.reserve0, self.reserve1
        if token_in == self.token1:
            return self.reserve1, self.reserve0
        raise ValueError(f"token_in {address_hex(token_in)} is not in pool {address_hex(self.address)}")

    def swap(self, token_in: bytes, amount_in: int, amount_out_min: int = 0) -> int | None:
        """Apply a swap; its output, or None (and no change) when it would revert."""
        rin, rout = self.reserves(token_in)
        out = amount_out(amount_in, rin, rout)
        if amount_in <= 0 or out <= 0 or out < amount_out_min:
            return None
        if token_in == self.token0:
            self.reserve0, self.reserve1 = rin + amount_in, rout - out
        else:
            self.reserve1, self.reserve0 = rin + amount_in, rout - out
        return out


class Market:
    """Tokens (token 0 is WETH-like), their prices in WETH-wei per unit, and pools.

    ``Market(seed, ...)`` generates one (see ``__init__``); ``Market.from_parts(tokens, prices,
    pools)`` wraps given ones. ``pairs`` maps ``(token0, token1)`` to the indices of that pair's
    pools in ``pools``.
    """

    tokens: list[bytes]
    prices: dict[bytes, Fraction]
    pools: list[Pool]
    pairs: dict[tuple[bytes, bytes], list[int]]

    def __init__(self, seed: int = 0, *, n_tokens: int = 6, pools_per_pair: int = 3,
                 extra_pairs: int = 2, liquidity: tuple[int, int] = (10**21, 10**23),
                 price_decades: float = 4.0):
        """A seeded market.

        ``n_tokens`` tokens (token 0 WETH-like); a WETH pair for every other token plus
        ``extra_pairs`` pairs between non-WETH tokens; ``pools_per_pair`` pools per pair whose WETH
        value on each side is drawn log-uniformly from ``liquidity`` (WETH-wei), priced within
        0.1% of the pair's reference price (inside the 0.6% no-arbitrage band). Token prices
        (WETH-wei per unit) are log-uniform over ``price_decades`` decades around 1.
        """
        if not isinstance(n_tokens, int) or n_tokens < 2:
            raise ValueError(f"n_tokens must be an int >= 2, got {n_tokens!r}")
        if not isinstance(pools_per_pair, int) or pools_per_pair < 1:
            raise ValueError(f"pools_per_pair must be an int >= 1, got {pools_per_pair!r}")
        n_other = (n_tokens - 1) * (n_tokens - 2) // 2
        if not isinstance(extra_pairs, int) or not 0 <= extra_pairs <= n_other:
            raise ValueError(f"extra_pairs must be an int in [0, {n_other}], got {extra_pairs!r}")
        lo, hi = liquidity
        if not 10**3 <= lo <= hi:
            raise ValueError(f"liquidity must be (lo, hi) with 1000 <= lo <= hi, got {liquidity!r}")
        if not 0 <= price_decades <= 12:
            raise ValueError(f"price_decades must be in [0, 12], got {price_decades!r}")
        rng = np.random.default_rng(seed)
        tokens = [rng.bytes(20) for _ in range(n_tokens)]
        # WETH-wei per unit as a short exact fraction
        prices = {tokens[0]: Fraction(1)}
        for t in tokens[1:]:
            prices[t] = Fraction(int(10 ** (6 + rng.uniform(-price_decades / 2, price_decades / 2))), 10**6)
        pairs = [(tokens[0], t) for t in tokens[1:]]
        others = [(a, b) for i, a in enumerate(tokens[1:], 1) for b in tokens[i + 1:]]
        for k in rng.choice(len(others), extra_pairs, replace=False):
            pairs.append(others[int(k)])
        pools = []
        for a, b in pairs:
            t0, t1 = sorted((a, b))
            for _ in range(pools_per_pair):
                value = int(10 ** rng.uniform(math.log10(lo), math.log10(hi)))  # WETH-wei per side
                jitter = Fraction(int(rng.integers(-1000, 1001)), 10**6)  # within +-0.1%
                r0 = max(1, int(value / prices[t0]))
                r1 = max(1, int(value * (1 + jitter) / prices[t1]))
                pools.append(Pool(rng.bytes(20), t0, t1, r0, r1))
        self._set(tokens, prices, pools)
        bad = [i for i in range(len(pools)) if not _in_band(self, i)]
        if bad:  # reserves so small that rounding them moved prices out of the band
            raise ValueError(f"liquidity {liquidity!r} too small: pools {bad} start with an arbitrage")

    @classmethod
    def from_parts(cls, tokens: list[bytes], prices: Mapping[bytes, Fraction], pools: list[Pool]) -> "Market":
        """A market of the given tokens (``tokens[0]`` WETH-like), prices and pools."""
        m = cls.__new__(cls)
        m._set(list(tokens), dict(prices), list(pools))
        return m

    def _set(self, tokens, prices, pools):
        self.tokens, self.prices, self.pools = tokens, prices, pools
        self.pairs = {}
        for i, p in enumerate(pools):
            if p.token0 >= p.token1:
                raise ValueError(f"pool {address_hex(p.address)} must have token0 < token1")
            self.pairs.setdefault((p.token0, p.token1), []).append(i)
        self._index = {p.address: i for i, p in enumerate(pools)}

    @property
    def weth(self) -> bytes:
        return self.tokens[0]

    def pool_index(self, address) -> int:
        return self._index[bytes(address)]

    def siblings(self, i: int) -> list[int]:
        p = self.pools[i]
        return [j for j in self.pairs[(p.token0, p.token1)] if j != i]

    def copy(self) -> "Market":
        return copy.deepcopy(self)

    # -- pools table ------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The market as arrays for an ``.npz`` next to a feed (keys ``pool_*``, ``token_*``)."""
        def addrs(xs):
            return np.frombuffer(b"".join(xs), dtype=np.uint8).reshape(len(xs), 20).copy()

        def words(xs):
            return np.array([int_to_u256(x) for x in xs], dtype=np.uint64).reshape(len(xs), 4)

        return {
            "pool_address": addrs([p.address for p in self.pools]),
            "pool_token0": addrs([p.token0 for p in self.pools]),
            "pool_token1": addrs([p.token1 for p in self.pools]),
            "pool_reserve0": words([p.reserve0 for p in self.pools]),
            "pool_reserve1": words([p.reserve1 for p in self.pools]),
            "token_address": addrs(self.tokens),  # token_address[0] is the WETH-like profit token
            "token_price_num": words([self.prices[t].numerator for t in self.tokens]),
            "token_price_den": words([self.prices[t].denominator for t in self.tokens]),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "Market":
        """The inverse of ``to_arrays`` (accepts the mapping ``numpy.load`` returns)."""
        missing = [k for k in ("pool_address", "pool_token0", "pool_token1", "pool_reserve0",
                               "pool_reserve1", "token_address", "token_price_num",
                               "token_price_den") if k not in arrays]
        if missing:
            raise ValueError(f"pools table lacks {', '.join(missing)}")

        def addrs(a):
            a = np.asarray(a, dtype=np.uint8)
            return [bytes(row) for row in a.reshape(-1, 20)]

        tokens = addrs(arrays["token_address"])
        nums = u256_column_to_ints(arrays["token_price_num"])
        dens = u256_column_to_ints(arrays["token_price_den"])
        prices = {t: Fraction(n, d) for t, n, d in zip(tokens, nums, dens)}
        pools = [Pool(a, t0, t1, r0, r1) for a, t0, t1, r0, r1 in zip(
            addrs(arrays["pool_address"]), addrs(arrays["pool_token0"]), addrs(arrays["pool_token1"]),
            u256_column_to_ints(arrays["pool_reserve0"]), u256_column_to_ints(arrays["pool_reserve1"]))]
        return cls.from_parts(tokens, prices, pools)


# -- references ----------------------------------------------------------------------------------
def _cross_profit(d: int, xa: int, ya: int, xb: int, yb: int) -> int:
    return amount_out(amount_out(d, xa, ya), yb, xb) - d


def _exhaustive_cross(xa, ya, xb, yb, hi):
    """The exact best input in [1, hi] (smallest on ties), vectorized when int64 suffices."""
    d = np.arange(1, hi + 1, dtype=np.int64)
    fits = (FEE_NUM * hi * ya < 2**62 and FEE_NUM * ya * xb < 2**62
            and FEE_DEN * (xa + yb) + FEE_NUM * (hi + ya) < 2**62)
    if not fits:  # exact Python ints, elementwise
        d = d.astype(object)
    y = (d * FEE_NUM * ya) // (xa * FEE_DEN + d * FEE_NUM)
    p = (y * FEE_NUM * xb) // (yb * FEE_DEN + y * FEE_NUM) - d
    k = int(np.argmax(p))
    return int(d[k]), int(p[k])


def best_cross_input(xa: int, ya: int, xb: int, yb: int, *, limit: int = EXHAUSTIVE_LIMIT
                     ) -> tuple[int, int, bool]:
    """Best input of token X for: sell X on pool A (reserves ``xa, ya``), sell the Y on pool B.

    Returns ``(amount_in, gross_profit, exhaustive)``; ``amount_in`` 0 when no input gains.
    Exhaustive over every input that could gain when there are at most ``limit`` of them; else an
    exact integer ternary search over the amount of Y bought, then a scan of the least inputs for
    ``NEIGHBOURHOOD`` amounts either side and of ``NEIGHBOURHOOD`` inputs either side of its input
    (``exhaustive`` False: the result may trail the true maximum by a few units).
    """
    if xa <= 0 or ya <= 0 or xb <= 0 or yb <= 0:
        raise ValueError(f"reserves must be positive, got {(xa, ya, xb, yb)}")
    # Bound the inputs that can gain: B pays back less than xb, and the floors only lower the
    # fee-adjusted constant-product round trip A*d/(B + C*d), which exceeds d only below (A-B)/C.
    g, g2, d2 = FEE_NUM * FEE_DEN, FEE_NUM * FEE_NUM, FEE_DEN * FEE_DEN
    a_, b_, c_ = g2 * ya * xb, d2 * xa * yb, g * yb + g2 * ya
    if a_ <= b_:
        return 0, 0, True
    hi = min(xb, (a_ - b_) // c_ + 1)
    if hi <= limit:
        d, p = _exhaustive_cross(xa, ya, xb, yb, hi)
        return (d, p, True) if p > 0 else (0, 0, True)
    # Search over the amount y of Y bought, each at its least input: that profit,
    # out(y on B) - d_min(y), is within 2 units of its floorless (concave) value, so an exact
    # integer ternary search on it lands within the top of the curve; then scan around it.
    def d_min(y):
        return -(-FEE_DEN * xa * y // (FEE_NUM * (ya - y)))

    def q(y):
        return amount_out(y, yb, xb) - d_min(y)

    lo_, hi_ = 1, amount_out(hi, xa, ya)
    while hi_ - lo_ > 2:
        m1 = lo_ + (hi_ - lo_) // 3
        m2 = hi_ - (hi_ - lo_) // 3
        if q(m1) < q(m2):
            lo_ = m1 + 1
        else:
            hi_ = m2 - 1
    d0 = d_min(lo_)
    cands = set(range(max(1, d0 - NEIGHBOURHOOD), d0 + NEIGHBOURHOOD + 1))
    for y in range(max(1, lo_ - NEIGHBOURHOOD), min(ya - 1, hi_ + NEIGHBOURHOOD) + 1):
        cands.add(d_min(y))
    best_d, best_p = 0, 0
    for d in sorted(cands):
        p = _cross_profit(d, xa, ya, xb, yb)
        if p > best_p:
            best_d, best_p = d, p
    return best_d, best_p, False


def frontrun_room(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int) -> int | None:
    """Largest front-run (same direction) the victim's swap survives; None if it fails unaided.

    Bisection over the exact outputs (the victim's output only falls as the front-run grows).
    """
    def ok(f):
        o = amount_out(victim_in, reserve_in + f, reserve_out - amount_out(f, reserve_in, reserve_out))
        return o > 0 and o >= victim_min_out

    if victim_in <= 0 or not ok(0):
        return None
    lo, hi = 0, 1
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def sandwich_gross(front: int, victim_in: int, reserve_in: int, reserve_out: int) -> tuple[int, int]:
    """``(back_run_out, gross_profit)`` of front-running with ``front`` and selling it all back."""
    got = amount_out(front, reserve_in, reserve_out)
    x, y = reserve_in + front, reserve_out - got
    v_out = amount_out(victim_in, x, y)
    x, y = x + victim_in, y - v_out
    back = amount_out(got, y, x)
    return back, back - front


def profit_token(market: Market, pool: Pool) -> bytes | None:
    if market.weth in (pool.token0, pool.token1):
        return market.weth
    for t in (pool.token0, pool.token1):
        if t in market.prices:
            return t
    return None


def gas_in_token(market: Market, token: bytes, gas_wei: int) -> int:
    price = market.prices[token]
    return -(-(gas_wei * price.denominator) // price.numerator)


@dataclass(frozen=True)
class Planted:
    """One opportunity the feed holds by construction (ground truth).

    ``tx_ids``: for an arbitrage, the swap after which it appears; for a sandwich opportunity, the
    victim. ``pools``: ``(buy_pool, sell_pool)`` (sell X for Y on the first, Y back for X on the
    second) or ``(pool,)``. ``amount_in``: the arbitrage input or the front-run. ``profit`` exact,
    net of gas, in ``profit_token``. ``exhaustive``: whether the reference proved it the maximum.
    ``cause``: ``"arbitrage"`` (a planted push), ``"sandwich"`` (a planted victim) or
    ``"victim"`` (the arbitrage a planted victim leaves behind).
    """

    kind: str
    tx_ids: tuple[int, ...]
    pools: tuple[str, ...]
    profit: int
    profit_token: str
    amount_in: int
    gas_cost: int
    exhaustive: bool
    cause: str


def reference_arbitrage(market: Market, pool_index: int, gas_price: int, *,
                        gas_units: int = ARB_GAS_UNITS, min_profit: int = 0,
                        limit: int = EXHAUSTIVE_LIMIT, tx_id: int = 0, cause: str = "") -> Planted | None:
    """The best cross-pool arbitrage between ``pool_index`` and its siblings, in ``market``'s state.

    Net profit must exceed ``min_profit``; the best over siblings wins (the first on ties).
    """
    p = market.pools[pool_index]
    token = profit_token(market, p)
    if token is None:
        return None
    gas = gas_in_token(market, token, gas_units * gas_price)
    best = None
    for j in market.siblings(pool_index):
        q = market.pools[j]
        for a, b in ((p, q), (q, p)):
            xa, ya = a.reserves(token)
            xb, yb = b.reserves(token)
            d, gross, exhaustive = best_cross_input(xa, ya, xb, yb, limit=limit)
            if d and gross - gas > min_profit and (best is None or gross - gas > best.profit):
                best = Planted("arbitrage", (tx_id,), (address_hex(a.address), address_hex(b.address)),
                               gross - gas, address_hex(token), d, gas, exhaustive, cause)
    return best


def reference_sandwich(market: Market, pool_index: int, token_in: bytes, amount_in: int,
                       amount_out_min: int, gas_price: int, *, gas_units: int = SANDWICH_GAS_UNITS,
                       min_profit: int = 0, tx_id: int = 0, cause: str = "") -> Planted | None:
    """The sandwich of a pending swap with the largest front-run its slippage allows.

    Only the slippage-bound case is covered (profit still rising at that front-run): the
    generator plants only such victims; None when the net profit does not exceed ``min_profit``.
    """
    pool = market.pools[pool_index]
    rin, rout = pool.reserves(token_in)
    if token_in not in market.prices:
        return None
    f = frontrun_room(amount_in, amount_out_min, rin, rout)
    if not f:
        return None
    _, gross = sandwich_gross(f, amount_in, rin, rout)
    gas = gas_in_token(market, token_in, gas_units * (2 * gas_price + 1))
    if gross - gas <= min_profit:
        return None
    return Planted("sandwich_opportunity", (tx_id,), (address_hex(pool.address),), gross - gas,
                   address_hex(token_in), f, gas, True, cause)


# -- feed ----------------------------------------------------------------------------------------
def _in_band(market: Market, i: int) -> bool:
    """Exact: no sibling of pool i offers an arbitrage even at zero gas."""
    p = market.pools[i]
    for j in market.siblings(i):
        q = market.pools[j]
        g2 = FEE_NUM * FEE_NUM
        d2 = FEE_DEN * FEE_DEN
        if g2 * p.reserve1 * q.reserve0 > d2 * p.reserve0 * q.reserve1:
            return False
        if g2 * q.reserve1 * p.reserve0 > d2 * q.reserve0 * p.reserve1:
            return False
    return True


def _close_target(market: Market, i: int) -> Fraction:
    """Price (token1 per token0) a closing swap restores pool ``i`` to: the mean of its siblings',
    which lies inside the band of each of them; the pair's reference price if it has none."""
    sib = [market.pools[j] for j in market.siblings(i)]
    if not sib:
        p = market.pools[i]
        return market.prices[p.token0] / market.prices[p.token1]
    return sum(Fraction(q.reserve1, q.reserve0) for q in sib) / len(sib)


def _restoring_swap(pool: Pool, target: Fraction) -> tuple[bytes, int]:
    """(token_in, amount) that moves ``pool``'s price (token1 per token0) to just past ``target``."""
    # price = reserve1/reserve0; too high means token0 is scarce: sell token0 into it, and back.
    high = pool.reserve1 * target.denominator > target.numerator * pool.reserve0
    token_in = pool.token0 if high else pool.token1

    def past(a):
        t = copy.copy(pool)
        if t.swap(token_in, a) is None:
            return False
        above = t.reserve1 * target.denominator > target.numerator * t.reserve0
        return above != high

    lo, hi = 0, 1
    while not past(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if past(mid):
            hi = mid
        else:
            lo = mid
    return token_in, hi


def generate_feed(seed: int, n: int, market: Market, *, plant_arbitrage: int = 0,
                  plant_sandwich: int = 0, rate: float | None = None, arrival: str = "poisson",
                  gas_price: tuple[int, int] = (10 * 10**9, 100 * 10**9),
                  arb_gas_units: int = ARB_GAS_UNITS, sandwich_gas_units: int = SANDWICH_GAS_UNITS,
                  n_senders: int = 64, start_id: int = 0) -> tuple[np.ndarray, list[Planted]]:
    """``n`` pending swaps over ``market`` (left unchanged) and the ground truth they hold.

    ``plant_arbitrage`` pushes and ``plant_sandwich`` victims are planted at seeded positions;
    each takes two rows (itself and its closing swap). ``rate`` (tx/s) sets ``arrival_ns`` offsets,
    ``arrival="poisson"`` (exponential gaps) or ``"even"``; ``rate=None`` leaves them 0 (replay as
    fast as possible). Gas prices are drawn uniformly from ``gas_price`` (wei); the gas units are
    the ones the ground truth's net profits assume (the strategies' defaults).

    Returns ``(records, planted)``: ``records`` of ``TX_DTYPE`` with ids ``start_id ...``,
    ``planted`` sorted by the triggering row.
    """
    for name, v in (("n", n), ("plant_arbitrage", plant_arbitrage), ("plant_sandwich", plant_sandwich),
                    ("n_senders", n_senders), ("start_id", start_id)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    m = plant_arbitrage + plant_sandwich
    if 2 * m > n:
        raise ValueError(f"n must be at least 2 * (plant_arbitrage + plant_sandwich) = {2 * m}, got {n}")
    if rate is not None and not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of tx/s or None, got {rate!r}")
    if arrival not in ("poisson", "even"):
        raise ValueError(f"arrival must be 'poisson' or 'even', got {arrival!r}")
    glo, ghi = gas_price
    if not 0 <= glo <= ghi:
        raise ValueError(f"gas_price must be (lo, hi) with 0 <= lo <= hi, got {gas_price!r}")
    arb_pairs = [i for i in range(len(market.pools)) if market.siblings(i)]
    if plant_arbitrage and not arb_pairs:
        raise ValueError("plant_arbitrage needs a market with pools_per_pair >= 2")

    rng = np.random.default_rng(seed)
    st = market.copy()
    senders = [rng.bytes(20) for _ in range(n_senders or 1)]
    nonces = [0] * len(senders)
    out = np.zeros(n, dtype=TX_DTYPE)
    planted: list[Planted] = []

    kinds = ["arbitrage"] * plant_arbitrage + ["sandwich"] * plant_sandwich
    rng.shuffle(kinds)
    # m sorted distinct slots in [0, n - m), shifted by their rank: 2-row plants that never overlap
    starts = np.sort(rng.choice(n - m, m, replace=False)) + np.arange(m) if m else np.array([], int)
    plan = {int(s): k for s, k in zip(starts, kinds)}

    cols: dict[str, list] = {k: [] for k in ("gas_price", "nonce", "sender", "pool", "token_in",
                                              "token_out", "amount_in", "amount_out_min")}

    def write(row, pool, token_in, amount_in, min_out, gp):
        # rows are written in order; columns are filled in bulk at the end
        s = int(rng.integers(len(senders)))
        c = cols
        c["gas_price"].append(gp)
        c["nonce"].append(nonces[s])
        nonces[s] += 1
        c["sender"].append(senders[s])
        c["pool"].append(pool.address)
        c["token_in"].append(token_in)
        c["token_out"].append(pool.token1 if token_in == pool.token0 else pool.token0)
        c["amount_in"].append(amount_in)
        c["amount_out_min"].append(min_out)

    def draw_gas():
        return int(rng.integers(glo, ghi + 1))

    def sandwich_safe(i, token_in, a, min_out, gp):
        # Fast path for deep pools: the gross profit is concave in the front-run and 0 at 0, so a
        # loss at a front-run of a millionth of the reserve (large enough that rounding is noise)
        # means every front-run loses. Small victims move the price less than the fees: the rule.
        rin, rout = st.pools[i].reserves(token_in)
        if rin >= 10**12 and sandwich_gross(rin // 10**6, a, rin, rout)[1] < 0:
            return True
        return reference_sandwich(st, i, token_in, a, min_out, gp, gas_units=sandwich_gas_units) is None

    def close(row, i):
        pool = st.pools[i]
        token_in, a = _restoring_swap(pool, _close_target(st, i))
        expect = amount_out(a, *pool.reserves(token_in))
        gp = draw_gas()
        if not sandwich_safe(i, token_in, a, expect, gp):
            raise RuntimeError(f"closing swap at row {row} is sandwichable; use a deeper market")
        write(row, pool, token_in, a, expect, gp)
        pool.swap(token_in, a, expect)
        if not _in_band(st, i):
            raise RuntimeError(f"closing swap at row {row} left pool {i} outside its band")

    row = 0
    while row < n:
        kind = plan.get(row)
        if kind == "arbitrage":
            i = int(arb_pairs[int(rng.integers(len(arb_pairs)))])
            pool = st.pools[i]
            token_in = (pool.token0, pool.token1)[int(rng.integers(2))]
            gp = draw_gas()
            for frac in (0.05, 0.1, 0.2, 0.4):
                a = max(1, int(pool.reserves(token_in)[0] * frac * rng.uniform(1, 1.5)))
                trial = st.copy()
                expect = amount_out(a, *pool.reserves(token_in))
                trial.pools[i].swap(token_in, a, expect)
                found = reference_arbitrage(trial, i, gp, gas_units=arb_gas_units,
                                            tx_id=start_id + row, cause="arbitrage")
                if found is not None and sandwich_safe(i, token_in, a, expect, gp):
                    break
            else:
                raise ValueError("market too shallow to plant a profitable arbitrage at these gas prices")
            write(row, pool, token_in, a, expect, gp)
            pool.swap(token_in, a, expect)
            planted.append(found)
            close(row + 1, i)
            row += 2
        elif kind == "sandwich":
            for _ in range(64):
                i = int(rng.integers(len(st.pools)))
                pool = st.pools[i]
                token_in = (pool.token0, pool.token1)[int(rng.integers(2))]
                if token_in not in st.prices:
                    continue
                a = max(1, int(pool.reserves(token_in)[0] * rng.uniform(0.005, 0.02)))
                expect = amount_out(a, *pool.reserves(token_in))
                min_out = expect * int(rng.integers(920, 980)) // 1000  # 2-8% slippage
                gp = draw_gas()
                found = reference_sandwich(st, i, token_in, a, min_out, gp, gas_units=sandwich_gas_units,
                                           tx_id=start_id + row, cause="sandwich")
                if found is not None and _profit_rising(a, min_out, *pool.reserves(token_in), found.amount_in):
                    break
            else:
                raise ValueError("market too shallow to plant a profitable sandwich at these gas prices")
            write(row, pool, token_in, a, min_out, gp)
            planted.append(found)
            pool.swap(token_in, a, min_out)
            if not _in_band(st, i):
                arb = reference_arbitrage(st, i, gp, gas_units=arb_gas_units, tx_id=start_id + row,
                                          cause="victim")
                if arb is not None:
                    planted.append(arb)
            close(row + 1, i)
            row += 2
        else:
            i = int(rng.integers(len(st.pools)))
            pool = st.pools[i]
            first = int(rng.integers(2))
            gp = draw_gas()
            for token_in in ((pool.token0, pool.token1)[first], (pool.token0, pool.token1)[1 - first]):
                rin, rout = pool.reserves(token_in)
                # at least the smallest input that buys one unit
                a = max(FEE_DEN * rin // (FEE_NUM * (rout - 1)) + 1, int(rin * 10 ** rng.uniform(-5, -3.3)))
                expect = amount_out(a, rin, rout)
                min_out = expect * (10**6 - int(rng.integers(0, 2000))) // 10**6  # <= 0.2% slippage
                trial = copy.copy(pool)
                if expect <= 0 or trial.swap(token_in, a, min_out) is None:
                    continue
                st.pools[i] = trial
                ok = _in_band(st, i)
                st.pools[i] = pool
                if ok and not sandwich_safe(i, token_in, a, min_out, gp):
                    min_out = expect
                    ok = sandwich_safe(i, token_in, a, min_out, gp)
                if ok:
                    break
            else:
                raise RuntimeError(f"no safe ordinary swap on pool {i} at row {row}; market too shallow")
            write(row, pool, token_in, a, min_out, gp)
            pool.swap(token_in, a, min_out)
            row += 1

    out["id"] = np.arange(start_id, start_id + n, dtype=np.uint64)
    out["gas_price"] = np.array(cols["gas_price"], dtype=np.uint64)
    out["nonce"] = np.array(cols["nonce"], dtype=np.uint64)
    out["protocol"] = PROTOCOL_UNISWAP_V2
    out["flags"] = FLAG_PENDING
    for f, src in (("sender", "sender"), ("recipient", "sender"), ("pool", "pool"),
                   ("token_in", "token_in"), ("token_out", "token_out")):
        out[f] = _addresses(cols[src])
    for f in ("sender", "pool", "token_in", "token_out"):
        out[f + "_key"] = _keys(out[f])
    for f in ("amount_in", "amount_out_min"):
        out[f] = _words(cols[f])
    out["tx_hash"] = np.frombuffer(rng.bytes(32 * n), dtype=np.uint8).reshape(n, 32)
    if rate is not None and n:
        if arrival == "poisson":
            gaps = rng.exponential(1e9 / rate, n)
            gaps[0] = 0.0
            out["arrival_ns"] = np.cumsum(gaps).astype(np.int64)
        else:
            out["arrival_ns"] = (np.arange(n) * (1e9 / rate)).astype(np.int64)
    planted.sort(key=lambda p: (p.tx_ids[0], p.kind))
    return out, planted


def _addresses(xs: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(xs), dtype=np.uint8).reshape(len(xs), 20)


def _keys(addresses: np.ndarray) -> np.ndarray:
    """``address_key`` of each row: the last 8 bytes, big-endian."""
    return np.ascontiguousarray(addresses[:, 12:]).view(">u8").reshape(-1).astype(np.uint64)


def _words(values: list[int]) -> np.ndarray:
    m = (1 << 64) - 1
    return np.array([[v & m, (v >> 64) & m, (v >> 128) & m, v >> 192] for v in values],
                    dtype=np.uint64).reshape(len(values), 4)


def _profit_rising(victim_in, min_out, rin, rout, f) -> bool:
    """Whether the gross profit still rises past the front-run ``f`` (so the slippage binds).

    It is concave in the front-run (up to rounding), so a gain at ``f + f/10``, computed as if
    the victim had no bound, means it rises all the way up to ``f``.
    """
    return sandwich_gross(f + f // 10 + 1, victim_in, rin, rout)[1] > sandwich_gross(f, victim_in, rin, rout)[1]


def ground_truth(records: np.ndarray, market: Market, *, arb_gas_units: int = ARB_GAS_UNITS,
                 sandwich_gas_units: int = SANDWICH_GAS_UNITS) -> list[Planted]:
    """Every opportunity a pending-swap feed over ``market`` holds, found by the references alone
    (not by any strategy): the rows replayed in order on a copy of ``market``; before each swap,
    ``reference_sandwich`` with it as the victim; after it, ``reference_arbitrage`` on its pool
    when the swap left the pool outside its fee band. What a feed made by ``generate_feed`` holds
    by construction, recovered from the feed itself (a feed file keeps no list of its plants)."""
    st = market.copy()
    index = {bytes(p.address): k for k, p in enumerate(st.pools)}
    found: list[Planted] = []
    for row in records:
        i = index.get(bytes(row["pool"]))
        if i is None:
            continue
        pool = st.pools[i]
        token_in = bytes(row["token_in"])
        a, min_out = u256_to_int(row["amount_in"]), u256_to_int(row["amount_out_min"])
        gp, tx = int(row["gas_price"]), int(row["id"])
        sw = reference_sandwich(st, i, token_in, a, min_out, gp, gas_units=sandwich_gas_units,
                                tx_id=tx, cause="sandwich")
        if sw is not None:
            found.append(sw)
        if pool.swap(token_in, a, min_out) is not None and not _in_band(st, i):
            arb = reference_arbitrage(st, i, gp, gas_units=arb_gas_units, tx_id=tx,
                                      cause="victim" if sw is not None else "arbitrage")
            if arb is not None:
                found.append(arb)
    return found


# -- ground truth carried in a feed file -----------------------------------------------------------
TRUTH_KINDS = ("arbitrage", "sandwich_opportunity")


def truth_arrays(planted: list[Planted]) -> dict[str, np.ndarray]:
    """``planted`` as the ``truth_*`` metadata arrays of a feed file (see ``TruthTally``)."""
    n = len(planted)
    pools = np.zeros((n, 2, 20), dtype=np.uint8)
    for k, p in enumerate(planted):
        for j, a in enumerate(p.pools):
            pools[k, j] = np.frombuffer(address_bytes(a), dtype=np.uint8)
    return {"truth_kind": np.array([TRUTH_KINDS.index(p.kind) for p in planted], dtype=np.uint8),
            "truth_tx": np.array([p.tx_ids[0] for p in planted], dtype=np.uint64),
            "truth_pools": pools,
            "truth_npools": np.array([len(p.pools) for p in planted], dtype=np.uint8),
            "truth_profit": _words([p.profit for p in planted]).reshape(n, 4),
            "truth_token": _addresses([address_bytes(p.profit_token) for p in planted]),
            "truth_exhaustive": np.array([p.exhaustive for p in planted], dtype=bool)}


class TruthTally:
    """Which of a feed's planted opportunities a run found.

    ``TruthTally.from_metadata(meta)`` reads the ``truth_*`` arrays of a feed's metadata (None when
    it has none); ``see(opportunities)`` matches what the strategies report; ``summary()``.
    A planted opportunity is found by one of the same kind, triggering transaction (the row's
    position in the feed: the engine numbers rows in feed order), pools and profit token, whose
    profit equals the reference's where the reference's search was exhaustive and is at least it
    where it was not (a search that beats the reference's integer ternary search by a few wei is
    still the same opportunity)."""

    def __init__(self, planted: list[tuple]):
        # (kind, tx, pools, token) -> (profit, exhaustive)
        self.planted = {p[:4]: p[4:] for p in planted}
        self.found: dict[tuple, int] = {}  # key -> the strategy's profit
        self.short: list[tuple] = []       # same opportunity, less profit than the reference's

    @classmethod
    def from_metadata(cls, meta) -> "TruthTally | None":
        if not meta or "truth_kind" not in meta:
            return None
        kinds, npools = meta["truth_kind"], meta["truth_npools"]
        rows = []
        for k in range(len(kinds)):
            pools = tuple(address_hex(meta["truth_pools"][k, j]) for j in range(int(npools[k])))
            rows.append((TRUTH_KINDS[int(kinds[k])], int(meta["truth_tx"][k]), pools,
                         address_hex(meta["truth_token"][k]),
                         u256_to_int(meta["truth_profit"][k]), bool(meta["truth_exhaustive"][k])))
        return cls(rows)

    def see(self, opportunities) -> None:
        for o in opportunities:
            if not o.tx_ids:
                continue
            key = (o.kind, int(o.tx_ids[0]), tuple(o.pools), o.profit_token)
            want = self.planted.get(key)
            if want is None:
                continue
            profit, exhaustive = want
            if o.profit == profit or (not exhaustive and o.profit > profit):
                self.found[key] = o.profit
            else:
                self.short.append((*key, o.profit, profit))

    def summary(self) -> dict:
        by_kind: dict[str, list[int]] = {}
        for key in self.planted:
            planted_found = by_kind.setdefault(key[0], [0, 0])
            planted_found[0] += 1
            planted_found[1] += key in self.found
        missed = sorted((k for k in self.planted if k not in self.found), key=lambda k: k[1])
        return {"planted": len(self.planted), "found": len(self.found),
                "missed": [f"{k[0]} tx {k[1]} pools {','.join(k[2])}" for k in missed],
                "by_kind": {k: {"planted": v[0], "found": v[1]} for k, v in sorted(by_kind.items())},
                "short_of_reference": len(self.short)}


def _main(argv=None) -> int:
    """``python -m tallyio.synthetic truth FEED.npz``: (re)write the feed's ``truth_*`` arrays from
    ``ground_truth`` over its own rows and pool table."""
    import argparse

    from tallyio.feeds import read_feed

    p = argparse.ArgumentParser(prog="python -m tallyio.synthetic")
    p.add_argument("command", choices=["truth"])
    p.add_argument("feed", help="a .npz feed with its pool table")
    args = p.parse_args(argv)
    records, meta = read_feed(args.feed)
    planted = ground_truth(records, Market.from_arrays(meta))
    with np.load(args.feed) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("truth_")}
    np.savez_compressed(args.feed, **arrays, **truth_arrays(planted))
    kinds = {k: sum(p.kind == k for p in planted) for k in TRUTH_KINDS}
    print(f"{args.feed}: {len(planted)} planted opportunities ({kinds}) written as truth_* arrays")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
