"""Bancor network conversions, one row per conversion hop (the converter is the pool).

Selectors (called on the BancorNetwork contract, such as
``0x2f9ec37d6ccfff1cab21733bdadede11c823ccb0``):

* ``convertByPath(address[] path, uint256 amount, uint256 minReturn, address beneficiary,
  address affiliateAccount, uint256 affiliateFee)`` ``0xb77d239b``
* ``convertByPath2(address[] path, uint256 amount, uint256 minReturn, address beneficiary)``
  ``0xf8394fb7``
* ``convert(address[] path, uint256 amount, uint256 minReturn)`` ``0xf3898a97``
* ``convert2(address[] path, uint256 amount, uint256 minReturn, address affiliateAccount,
  uint256 affiliateFee)`` ``0x569706eb``

``path`` is ``[token0, anchor1, token1, anchor2, token2, ...]``: hop ``k`` converts
``path[2k]`` into ``path[2k+2]`` in the converter of anchor ``path[2k+1]``. The network pulls
``token0`` from the caller straight into the first converter, and each converter sends its output
to the next converter or, after the last hop, to the beneficiary. So the trace gives every hop
from the transfers inside the call: hop ``k``'s input is the transfer of ``path[2k]`` into converter
``C``, its output the next transfer of ``path[2k+2]`` out of ``C``. A hop in ETH
(``0xeeee...``) moves no ERC20 token and makes the call skipped as ``eth_leg``; a hop whose
transfers are not found, as ``bancor_hop_unmatched``.
"""
from __future__ import annotations

from tallyio.record import PROTOCOL_BANCOR
from tallyio_mainnet.traces import (ETH_ADDRESSES, Leg, Skip, Transfer, address_array, call_args,
                                    inside)

SELECTORS = {
    "0xb77d239b": ("convertByPath", 6),
    "0xf8394fb7": ("convertByPath2", 4),
    "0xf3898a97": ("convert", 3),
    "0x569706eb": ("convert2", 5),
}


def decode(addr: tuple[int, ...], trace: dict, transfers: list[Transfer]) -> list[Leg]:
    action = trace["action"]
    _, nwords = SELECTORS[action["input"][:10].lower()]
    data = call_args(action, nwords)
    path = address_array(data, 0)
    if len(path) < 3 or len(path) % 2 == 0:
        raise Skip("malformed_swap")
    tokens = path[0::2]
    if any(t in ETH_ADDRESSES for t in tokens):
        raise Skip("eth_leg")
    moves = inside(transfers, addr)
    caller = action["from"].lower()
    first = [t for t in moves if t.token == tokens[0] and t.sender == caller]
    if not first:
        raise Skip("no_payment")
    cur, k0 = first[0], moves.index(first[0])
    legs = []
    for token_out in tokens[1:]:
        converter = cur.to
        nxt = next((i for i in range(k0 + 1, len(moves))
                    if moves[i].token == token_out and moves[i].sender == converter), None)
        if nxt is None:
            raise Skip("bancor_hop_unmatched")
        out = moves[nxt]
        legs.append(Leg(PROTOCOL_BANCOR, converter, cur.sender, out.to, cur.token, out.token,
                        cur.amount, out.amount))
        cur, k0 = out, nxt
    return legs
