"""Balancer V2 Vault swaps (one Vault, ``0xba12222222228d8ba445958a75a0704d566bf2c8``, holds every
pool's tokens; a row's ``pool`` is the pool contract, the first 20 bytes of the ``poolId``).

Selectors (called on the Vault):

* ``swap((bytes32 poolId, uint8 kind, address assetIn, address assetOut, uint256 amount, bytes
  userData), (address sender, bool fromInternalBalance, address recipient, bool
  toInternalBalance), uint256 limit, uint256 deadline)`` ``0x52bbbe29``, returns
  ``amountCalculated`` (the amount out for ``kind`` 0 GIVEN_IN, the amount in for 1 GIVEN_OUT).
* ``batchSwap(uint8 kind, (bytes32 poolId, uint256 assetInIndex, uint256 assetOutIndex, uint256
  amount, bytes userData)[] swaps, address[] assets, (address,bool,address,bool) funds, int256[]
  limits, uint256 deadline)`` ``0x945bcec9``, returns ``int256[] assetDeltas`` (positive: the
  Vault received).

Amounts: for ``swap``, the Vault's ``transferFrom(sender, vault, amount)`` of ``assetIn`` and its
``transfer(recipient, amount)`` of ``assetOut`` inside the call; where a side uses internal
balance (no token moves) that side's amount is the Vault's own (the call's ``amount`` or the
returned ``amountCalculated``). For ``batchSwap`` the Vault settles net per asset, so the trace
gives each step's amounts only when no asset is shared between steps (each step's in and out are
then its assets' deltas); a batch whose steps chain through an asset (a multi-hop route, whose
intermediate amounts the trace does not carry) is skipped as ``batch_chained``. An asset given as
the zero address is ETH, whose movement is no ERC20 transfer: skipped as ``eth_leg``.
"""
from __future__ import annotations

from tallyio.record import PROTOCOL_BALANCER_V2
from tallyio_mainnet.traces import (ETH_ADDRESSES, Leg, Skip, Transfer, address_array, call_args,
                                    inside, output_words, signed, word, word_address)

SELECTORS = {
    "0x52bbbe29": "swap",
    "0x945bcec9": "batchSwap",
}


def _funds(data: str, first: int) -> tuple[str, bool, str, bool]:
    return (word_address(data, first), bool(word(data, first + 1)),
            word_address(data, first + 2), bool(word(data, first + 3)))


def decode(addr: tuple[int, ...], trace: dict, transfers: list[Transfer]) -> list[Leg]:
    action = trace["action"]
    vault = action["to"].lower()
    selector = action["input"][:10].lower()
    return (_swap if selector == "0x52bbbe29" else _batch)(addr, trace, transfers, vault)


def _pay_and_out(moves, vault, token_in, token_out, funds, in_fallback, out_fallback):
    sender, from_internal, recipient, to_internal = funds
    if from_internal:
        amount_in = in_fallback
    else:
        pays = [t for t in moves if t.token == token_in and t.sender == sender and t.to == vault]
        if len(pays) != 1:
            raise Skip("several_payments" if pays else "no_payment")
        amount_in = pays[0].amount
    if to_internal:
        amount_out = out_fallback
    else:
        outs = [t for t in moves
                if t.token == token_out and t.sender == vault and t.to == recipient]
        if len(outs) != 1:
            raise Skip("several_outputs" if outs else "no_single_output")
        amount_out = outs[0].amount
    return amount_in, amount_out


def _swap(addr, trace, transfers, vault):
    data = call_args(trace["action"], 7)
    funds = _funds(data, 1)
    s = word(data, 0) // 32
    if len(data) < 64 * (s + 6):
        raise Skip("malformed_swap")
    pool = "0x" + data[64 * s:64 * s + 40]
    kind, token_in, token_out, amount = (word(data, s + 1), word_address(data, s + 2),
                                         word_address(data, s + 3), word(data, s + 4))
    if token_in in ETH_ADDRESSES or token_out in ETH_ADDRESSES:
        raise Skip("eth_leg")
    out = output_words(trace, 1)
    calculated = word(out, 0) if out is not None else None
    given_in = kind == 0
    in_fallback = amount if given_in else calculated
    out_fallback = calculated if given_in else amount
    if (funds[1] and in_fallback is None) or (funds[3] and out_fallback is None):
        raise Skip("malformed_swap")
    amount_in, amount_out = _pay_and_out(inside(transfers, addr), vault, token_in, token_out,
                                         funds, in_fallback, out_fallback)
    return [Leg(PROTOCOL_BALANCER_V2, pool, funds[0], funds[2], token_in, token_out, amount_in,
                amount_out)]


def _batch(addr, trace, transfers, vault):
    data = call_args(trace["action"], 9)
    funds = _funds(data, 3)
    assets = address_array(data, 2)
    out = output_words(trace, 2)
    if out is None:
        raise Skip("malformed_swap")
    deltas = [signed(word(out, 2 + k)) for k in range(min(word(out, 1), len(out) // 64 - 2))]
    if len(deltas) != len(assets):
        raise Skip("malformed_swap")
    try:
        start = word(data, 1) // 32
        n = word(data, start)
        heads = [start + 1 + word(data, start + 1 + k) // 32 for k in range(n)]
        steps = [("0x" + data[64 * h:64 * h + 40], word(data, h + 1), word(data, h + 2))
                 for h in heads]
    except ValueError:
        raise Skip("malformed_swap") from None
    used = [i for _, a, b in steps for i in (a, b)]
    if any(i >= len(assets) for i in used):
        raise Skip("malformed_swap")
    if len({assets[i] for i in used}) != len(used):
        raise Skip("batch_chained")
    moves = inside(transfers, addr)
    legs = []
    for pool, i, j in steps:
        if assets[i] in ETH_ADDRESSES or assets[j] in ETH_ADDRESSES:
            raise Skip("eth_leg")
        amount_in, amount_out = _pay_and_out(moves, vault, assets[i], assets[j], funds,
                                             deltas[i], -deltas[j])
        legs.append(Leg(PROTOCOL_BALANCER_V2, pool, funds[0], funds[2], assets[i], assets[j],
                        amount_in, amount_out))
    return legs
