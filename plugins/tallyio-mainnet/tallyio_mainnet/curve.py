"""Curve StableSwap / CryptoSwap pool swaps.

Selectors (called on the pool, or on a proxy that delegates to it: the proxy is the pool):

* ``exchange(int128 i, int128 j, uint256 dx, uint256 min_dy)`` ``0x3df02124``
* ``exchange_underlying(int128, int128, uint256, uint256)`` ``0xa6417ed6``
* ``exchange(uint256, uint256, uint256, uint256)`` ``0x5b41b908`` (crypto pools)
* ``exchange_underlying(uint256, uint256, uint256, uint256)`` ``0x65b2489b``
* ``exchange(uint256, uint256, uint256, uint256, bool use_eth)`` ``0x394747c5`` (tricrypto)
* with a ``receiver`` last argument: ``exchange(int128,int128,uint256,uint256,address)``
  ``0xddc1f59d``, ``exchange_underlying(int128,int128,uint256,uint256,address)`` ``0x44ee1986``,
  ``exchange(uint256,uint256,uint256,uint256,bool,address)`` ``0xce7d6503``

The blocks carry no state, so the coin addresses behind the indices ``i`` and ``j`` come from the
trace: the pool pulls coin ``i`` from the caller (``transferFrom(caller, pool, dx)``) and sends coin
``j`` to the receiver (the caller unless the call names one) inside the call. Those two transfers
give the tokens and the exact amounts (for ``exchange_underlying`` on a lending pool they are the
underlying coins; the pool's own wrapping moves other tokens, which are not between these two
accounts). A coin paid in ETH (``msg.value``) makes no ERC20 transfer: such a call is skipped as
``eth_leg``. One row per call.
"""
from __future__ import annotations

from tallyio.record import PROTOCOL_CURVE
from tallyio_mainnet.traces import Leg, Skip, Transfer, call_args, inside, only, word_address

# selector -> (name, words of arguments, word holding the receiver or None)
SELECTORS = {
    "0x3df02124": ("exchange(int128,int128,uint256,uint256)", 4, None),
    "0xa6417ed6": ("exchange_underlying(int128,int128,uint256,uint256)", 4, None),
    "0x5b41b908": ("exchange(uint256,uint256,uint256,uint256)", 4, None),
    "0x65b2489b": ("exchange_underlying(uint256,uint256,uint256,uint256)", 4, None),
    "0x394747c5": ("exchange(uint256,uint256,uint256,uint256,bool)", 5, None),
    "0xddc1f59d": ("exchange(int128,int128,uint256,uint256,address)", 5, 4),
    "0x44ee1986": ("exchange_underlying(int128,int128,uint256,uint256,address)", 5, 4),
    "0xce7d6503": ("exchange(uint256,uint256,uint256,uint256,bool,address)", 6, 5),
}


def decode(addr: tuple[int, ...], trace: dict, transfers: list[Transfer]) -> list[Leg]:
    action = trace["action"]
    _, nwords, receiver_word = SELECTORS[action["input"][:10].lower()]
    data = call_args(action, nwords)
    pool, caller = action["to"].lower(), action["from"].lower()
    receiver = caller if receiver_word is None else word_address(data, receiver_word)
    moves = inside(transfers, addr)
    pays = [t for t in moves if t.to == pool and t.sender == caller]
    outs = [t for t in moves if t.sender == pool and t.to == receiver]
    if int(action.get("value") or "0x0", 16) and (not pays or not outs):
        raise Skip("eth_leg")
    pay = only(pays, "no_payment", "several_payments")
    out = only(outs, "no_single_output", "several_outputs")
    if pay.token == out.token:
        raise Skip("same_token")
    return [Leg(PROTOCOL_CURVE, pool, caller, receiver, pay.token, out.token, pay.amount,
                out.amount)]
