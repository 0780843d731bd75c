"""tallyio.amm's compiled u256 kernels against the pure-Python reference (tallyio.amm_reference),
the arithmetic the strategies ran before, on the same seeded inputs.

Cases (realistic: 18- and 6-decimal reserves below 2**112): one swap quote, a batch of quotes
over u256 columns, the optimal two-pool arbitrage searched by input and by output unit, and the
optimal sandwich against a 1% (slippage-bound) and a 50% (interior peak) victim.
"""
from tallyio import amm
from tallyio import amm_reference as ref

from .common import rng

IMPLS = ["tallyio", "reference"]
ETH, USDC = 10**18, 10**6
POOL = (5_000 * ETH, 15_000_000 * USDC)
CROSS = {
    "by_input": (3_000 * ETH, 9_000_000 * ETH, 2_000 * ETH, 5_952_000 * ETH),
    "by_output": (15_000_000 * USDC, 5_000 * ETH, 10_160_640 * USDC, 3_360 * ETH),
}
SLIPPAGE = {"1%": 990, "50%": 500}  # per mille of the quote the victim accepts


def _impl(impl):
    return amm if impl == "tallyio" else ref


class GetAmountOut:
    """One getAmountOut quote from Python."""

    params = [IMPLS]
    param_names = ["impl"]

    def setup(self, impl):
        self.f = _impl(impl).get_amount_out

    def time_get_amount_out(self, impl):
        self.f(ETH, *POOL)


class GetAmountOutMany:
    """Quotes for a batch of u256 rows: the compiled batch kernel (GIL released) against a Python
    loop over the compiled scalar and over the reference."""

    params = (["tallyio", "tallyio_scalar", "reference"], [1_000, 65_536])
    param_names = ["impl", "rows"]

    def setup(self, impl, rows):
        g = rng(41)
        self.ints = [[int(v) * 10**9 for v in g.integers(1, 10**12, rows)],
                     [int(v) * 10**12 for v in g.integers(1, 10**12, rows)],
                     [int(v) * 10**12 for v in g.integers(1, 10**12, rows)]]
        self.cols = [amm.to_u256_column(c) for c in self.ints]

    def time_quotes(self, impl, rows):
        if impl == "tallyio":
            amm.get_amount_out_many(*self.cols)
        else:
            f = amm.get_amount_out if impl == "tallyio_scalar" else ref.get_amount_out
            for a, ri, ro in zip(*self.ints):
                f(a, ri, ro)


class BestCrossPool:
    """The optimal input of a two-pool arbitrage (a window scan around the closed form)."""

    params = (IMPLS, list(CROSS))
    param_names = ["impl", "search"]

    def setup(self, impl, search):
        self.f = _impl(impl).best_cross_pool
        self.args = CROSS[search]

    def time_best_cross_pool(self, impl, search):
        self.f(*self.args)


class BestSandwich:
    """The optimal front-run against a 20 ETH victim."""

    params = (IMPLS, list(SLIPPAGE))
    param_names = ["impl", "slippage"]

    def setup(self, impl, slippage):
        self.f = _impl(impl).best_sandwich
        v = 20 * ETH
        self.args = (v, ref.get_amount_out(v, *POOL) * SLIPPAGE[slippage] // 1000, *POOL)

    def time_best_sandwich(self, impl, slippage):
        self.f(*self.args)
