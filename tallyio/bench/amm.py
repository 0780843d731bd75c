"""The compiled u256 AMM kernels (tallyio.amm) against the pure-Python reference they are tested
against (tallyio.amm_reference: what the strategies computed before), in the same run.

Inputs are seeded and realistic: 18-decimal and 6-decimal reserves below 2**112, candidate pool
pairs a few tenths of a percent apart, victims with a 1% and a 50% slippage bound.
"""
from __future__ import annotations

import numpy as np

from tallyio import amm
from tallyio import amm_reference as ref
from tallyio.bench._harness import Comparison, ns_per_op

UNROLL = 10
BATCH = 10_000


def _calls(fn, *args):
    """A function that calls ``fn(*args)`` UNROLL times in straight-line code, so a per-call
    figure carries neither a loop's nor a wrapper's overhead (what timeit measures)."""
    names = [f"a{i}" for i in range(len(args))]
    src = (f"def op(f=f, {', '.join(f'{n}={n}' for n in names)}):\n"
           + f"    f({', '.join(names)})\n" * UNROLL)
    ns = {"f": fn, **dict(zip(names, args))}
    exec(src, ns)
    return ns["op"]


def _pair(operation, compiled, reference, args, repeat) -> Comparison:
    """One call of each, checked equal first (a fast wrong answer is no answer)."""
    want = reference(*args)
    if compiled(*args) != want:
        raise AssertionError(f"{operation}: compiled result differs from the reference on {args}")
    return Comparison(operation,
                      ("tallyio.amm (compiled)", ns_per_op(_calls(compiled, *args), UNROLL,
                                                           repeat=repeat)),
                      [("tallyio.amm_reference (Python)",
                        ns_per_op(_calls(reference, *args), UNROLL, repeat=repeat))])


def cases() -> dict[str, tuple]:
    """The seeded inputs, by name."""
    eth, usdc = 10**18, 10**6
    return {
        # 1 ETH into a 5,000 ETH / 15M USDC pool
        "swap": (1 * eth, 5_000 * eth, 15_000_000 * usdc),
        # X = ETH, Y = an 18-decimal token at 3,000 per ETH on A, 0.8% cheaper on B: the search
        # runs over inputs (a unit of Y is worth less than a unit of X)
        "cross_by_input": (3_000 * eth, 9_000_000 * eth, 2_000 * eth, 5_952_000 * eth),
        # X = USDC, Y = ETH, which B buys back 0.8% dearer: the search runs over the ETH bought
        "cross_by_output": (15_000_000 * usdc, 5_000 * eth, 10_160_640 * usdc, 3_360 * eth),
        # a 20 ETH victim with 1% slippage: the largest front-run it allows
        "sandwich_slippage": (20 * eth, _min_out(20 * eth, 5_000 * eth, 15_000_000 * usdc, 990),
                              5_000 * eth, 15_000_000 * usdc),
        # a loose 50% bound: the profit peaks before it (ternary search)
        "sandwich_peak": (20 * eth, _min_out(20 * eth, 5_000 * eth, 15_000_000 * usdc, 500),
                          5_000 * eth, 15_000_000 * usdc),
    }


def _min_out(v, x, y, per_mille):
    return ref.get_amount_out(v, x, y) * per_mille // 1000


def run(quick: bool = False) -> list[Comparison]:
    repeat = 3 if quick else 7
    c = cases()
    out = [_pair("get_amount_out, one call", amm.get_amount_out, ref.get_amount_out, c["swap"],
                 repeat)]

    # a batch of u256 columns: the compiled loop without the GIL against the reference per row
    rng = np.random.default_rng(20240601)
    a = [int(v) * 10**9 for v in rng.integers(1, 10**12, BATCH)]
    ri = [int(v) * 10**12 for v in rng.integers(1, 10**12, BATCH)]
    ro = [int(v) * 10**12 for v in rng.integers(1, 10**12, BATCH)]
    ca, cri, cro = amm.to_u256_column(a), amm.to_u256_column(ri), amm.to_u256_column(ro)
    got, status = amm.get_amount_out_many(ca, cri, cro)
    if not (status == amm.OK).all() or amm.from_u256_column(got) != [
            ref.get_amount_out(*r) for r in zip(a, ri, ro)]:
        raise AssertionError("get_amount_out_many differs from the reference")
    out.append(Comparison(
        f"get_amount_out_many, {BATCH:,} u256 rows",
        ("tallyio.amm (compiled, nogil)",
         ns_per_op(lambda: amm.get_amount_out_many(ca, cri, cro), BATCH, repeat=repeat)),
        [("tallyio.amm.get_amount_out per row",
          ns_per_op(lambda: [amm.get_amount_out(*r) for r in zip(a, ri, ro)], BATCH,
                    repeat=repeat)),
         ("tallyio.amm_reference per row",
          ns_per_op(lambda: [ref.get_amount_out(*r) for r in zip(a, ri, ro)], BATCH,
                    repeat=repeat))],
        unit="row"))

    out.append(_pair("best_cross_pool, by input (window scan)", amm.best_cross_pool,
                     ref.best_cross_pool, c["cross_by_input"], repeat))
    out.append(_pair("best_cross_pool, by output unit", amm.best_cross_pool,
                     ref.best_cross_pool, c["cross_by_output"], repeat))
    out.append(_pair("best_sandwich, slippage-bound", amm.best_sandwich, ref.best_sandwich,
                     c["sandwich_slippage"], repeat))
    out.append(_pair("best_sandwich, interior peak", amm.best_sandwich, ref.best_sandwich,
                     c["sandwich_peak"], repeat))
    return out


if __name__ == "__main__":  # python -m tallyio.bench.amm
    import sys

    from tallyio.bench._harness import format_table

    print("== amm: ns per operation, best of repeats; ratio = peer / tallyio ==")
    print(format_table(run(quick="--quick" in sys.argv)))
