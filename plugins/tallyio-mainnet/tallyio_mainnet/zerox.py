"""0x Exchange Proxy (``0xdef1c0ded9bec7f1a1670819833240f027b25eff``) native order fills: one row
per filled RFQ, limit or OTC order, with the order's maker as the pool.

Selectors (called on the proxy; the proxy's own ``delegatecall`` into the feature that implements
them repeats the input and is not a second fill; the underscore variants are the proxy calling
itself from a batch, multiplex or meta-transaction):

* ``fillRfqOrder`` ``0xaa77476c``, ``fillOrKillRfqOrder`` ``0x438cdfc5``, ``_fillRfqOrder``
  ``0xaa6b21cd``: the order is ``(makerToken, takerToken, makerAmount, takerAmount, maker,
  taker, txOrigin, pool, expiry, salt)``
* ``fillLimitOrder`` ``0xf6274f66``, ``fillOrKillLimitOrder`` ``0x9240529c``,
  ``_fillLimitOrder`` ``0x414e4ccf``: ``(makerToken, takerToken, makerAmount, takerAmount,
  takerTokenFeeAmount, maker, taker, sender, feeRecipient, pool, expiry, salt)``
* ``fillOtcOrder`` ``0xdac748d4``: ``(makerToken, takerToken, makerAmount, takerAmount, maker,
  taker, txOrigin, expiryAndNonce)``

The order's fields are static, so it sits in the first words of the arguments. Amounts: the
``transferFrom`` of ``takerToken`` into the maker (the taker's payment; a limit order's fee to
its fee recipient is not part of the swap) and the ``transferFrom`` of ``makerToken`` out of the
maker, both inside the call. The payer is who paid the maker, the recipient who received the
maker's tokens.

The proxy's routing features (``transformERC20`` ``0x415565b0``, ``sellToUniswap``
``0xd9627aa4``, ``sellTokenForTokenToUniswapV3`` ``0x6af479b2``, ``sellToLiquidityProvider``
``0xf7fcd384``) are not swaps of their own: the pools they route through (Uniswap, Balancer,
Curve...) are decoded where they are called, so a route gives one row per pool and none for the
router.
"""
from __future__ import annotations

from tallyio.record import PROTOCOL_ZEROX
from tallyio_mainnet.traces import Leg, Transfer, call_args, inside, only, word_address

# selector -> (name, word of the maker in the order)
SELECTORS = {
    "0xaa77476c": ("fillRfqOrder", 4),
    "0x438cdfc5": ("fillOrKillRfqOrder", 4),
    "0xaa6b21cd": ("_fillRfqOrder", 4),
    "0xf6274f66": ("fillLimitOrder", 5),
    "0x9240529c": ("fillOrKillLimitOrder", 5),
    "0x414e4ccf": ("_fillLimitOrder", 5),
    "0xdac748d4": ("fillOtcOrder", 4),
}


def decode(addr: tuple[int, ...], trace: dict, transfers: list[Transfer]) -> list[Leg]:
    action = trace["action"]
    _, maker_word = SELECTORS[action["input"][:10].lower()]
    data = call_args(action, maker_word + 1)
    maker_token, taker_token = word_address(data, 0), word_address(data, 1)
    maker = word_address(data, maker_word)
    moves = inside(transfers, addr)
    pay = only([t for t in moves if t.token == taker_token and t.to == maker],
               "no_payment", "several_payments")
    out = only([t for t in moves if t.token == maker_token and t.sender == maker],
               "no_single_output", "several_outputs")
    return [Leg(PROTOCOL_ZEROX, maker, pay.sender, out.to, taker_token, maker_token, pay.amount,
                out.amount)]
