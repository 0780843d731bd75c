"""Balancer V1 pool (BPool) swaps.

Selectors (called on the pool itself):

* ``swapExactAmountIn(address tokenIn, uint256 tokenAmountIn, address tokenOut, uint256
  minAmountOut, uint256 maxPrice)`` ``0x8201aa3f``
* ``swapExactAmountOut(address tokenIn, uint256 maxAmountIn, address tokenOut, uint256
  tokenAmountOut, uint256 maxPrice)`` ``0x7c5e9ea4``

A BPool pulls ``tokenIn`` from the caller (``transferFrom(caller, pool, amount)``) and pushes
``tokenOut`` to the caller (``transfer(caller, amount)``), both inside the swap call. The amounts
are those two transfers (exactly what moved on chain); the tokens are the call's ``tokenIn`` and
``tokenOut``; payer and recipient are the caller. One row per call.
"""
from __future__ import annotations

from tallyio.record import PROTOCOL_BALANCER_V1
from tallyio_mainnet.traces import Leg, Transfer, call_args, inside, only, word_address

SELECTORS = {
    "0x8201aa3f": "swapExactAmountIn",
    "0x7c5e9ea4": "swapExactAmountOut",
}


def decode(addr: tuple[int, ...], trace: dict, transfers: list[Transfer]) -> list[Leg]:
    action = trace["action"]
    data = call_args(action, 5)
    pool, caller = action["to"].lower(), action["from"].lower()
    token_in, token_out = word_address(data, 0), word_address(data, 2)
    moves = inside(transfers, addr)
    pay = only([t for t in moves if t.token == token_in and t.to == pool and t.sender == caller],
               "no_payment", "several_payments")
    out = only([t for t in moves if t.token == token_out and t.sender == pool and t.to == caller],
               "no_single_output", "several_outputs")
    return [Leg(PROTOCOL_BALANCER_V1, pool, caller, caller, token_in, token_out, pay.amount,
                out.amount)]
