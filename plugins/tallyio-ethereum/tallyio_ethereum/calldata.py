"""Decode the calldata of pending Uniswap router transactions into ``TX_DTYPE`` swap rows.

A pending transaction is what a node's mempool hands a bot: ``from``, ``to``, ``input``, ``value``
(and a hash, a nonce, fee fields). ``decode_transactions`` turns the ones sent to a known router
into one row per pool hop, in transaction order, with the hop's position in ``swap_index``:

* **Uniswap V2 Router02** (and SushiSwap's fork of it): every ``swapExact*`` / ``swap*ForExact*``
  function, the ``SupportingFeeOnTransferTokens`` ones too. The pair of each hop is computed with
  CREATE2 from the router's factory and init code hash, so rows carry the pool address and key.
* **Uniswap V3 SwapRouter** (``exactInputSingle``, ``exactInput`` with its packed path,
  ``exactOutputSingle``, ``exactOutput``, ``multicall(bytes[])`` wrapping them) and
  **SwapRouter02** (the same four without a deadline in the struct, its V2 ``swapExactTokensForTokens``
  / ``swapTokensForExactTokens``, and ``multicall`` with or without a deadline or block hash).
  V3 pool addresses are computed with CREATE2 from the V3 factory, the two tokens and the fee.
* **Universal Router** ``execute(bytes,bytes[])`` and ``execute(bytes,bytes[],uint256)``: its
  ``V2_SWAP_EXACT_IN/OUT`` and ``V3_SWAP_EXACT_IN/OUT`` commands (other commands are counted).

Row fields: ``protocol`` (V2 or V3), ``flags`` = ``FLAG_PENDING``, ``sender``, ``pool`` (and
``pool_key``), ``token_in``/``token_out`` (and keys), ``recipient`` (the next pair for an inner V2
hop, the router for an inner V3 hop, the caller's recipient on the last), ``tx_hash``, ``nonce``,
``gas_price``, ``tx_type``, ``max_fee_per_gas``, ``max_priority_fee_per_gas`` (from ``type``,
``maxFeePerGas``, ``maxPriorityFeePerGas``; 0 where absent, fee caps past 2**64 - 1 capped),
``tx_index`` (the transaction's position in the stream) and ``swap_index``.
Amounts: an exact-input swap has ``amount_in`` on its first hop and ``amount_out_min`` on its last
(inner hops 0: their amounts follow from the pools); an exact-output swap has ``amount_out`` on its
last hop and ``amount_in`` 0. ``TX_DTYPE`` has no field for the deadline, the input bound of an
exact-output swap, the V3 fee tier or the calling function, so they go in a side array aligned with
the rows (``SIDE_DTYPE``): ``deadline`` (0 when the call has none), ``amount_in_max``, ``fee``
(V3 fee tier in hundredths of a bip; V2: 3000), ``exact_output``, ``fee_on_transfer``, ``hops``
and ``selector`` (of the router function, the inner one for a multicall or Universal Router
command).

Nothing is raised out of the decoder for bad input: a transaction to another contract, an unknown
selector, calldata that is short, has an offset or a length out of range, an address word with
dirty high bytes, a path of the wrong shape, or a multicall without a swap is skipped and counted in
``stats["skipped"]`` by reason. Only the caller's own mistakes (a transaction that is not a mapping,
an ``input`` that is not hex) raise, naming the field.

Cost: pure Python, one pass over the calldata. Measured on the 360 router transactions of the
25-block set: 52 us per swap transaction with the CREATE2 cache warm, 63 us cold (one Keccak per new
pool), most of it the per-field numpy row writes; 4 us per transaction over all 5309 (the others
are dismissed by their ``to``). A pending transaction is decoded once, off the engine's per-row
path, so this stays Python until a profile says otherwise.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any, Iterable, Mapping

import numpy as np
from Crypto.Hash import keccak

from tallyio.record import (
    FLAG_PENDING,
    PROTOCOL_UNISWAP_V2,
    PROTOCOL_UNISWAP_V3,
    TX_DTYPE,
)

__all__ = [
    "SIDE_DTYPE", "ROUTERS", "SELECTORS", "Decoded", "decode_transactions", "keccak256",
    "v2_pair_address", "v3_pool_address", "selector",
]

U256 = (np.uint64, 4)
SIDE_DTYPE = np.dtype([
    ("deadline", np.uint64),       # unix seconds; 0: the call carries none
    ("amount_in_max", U256),       # exact-output swaps: the caller's input bound (first hop)
    ("fee", np.uint32),            # V3 fee tier (hundredths of a bip); V2 pairs: 3000
    ("selector", np.uint32),       # the router function (inner call of a multicall / command)
    ("exact_output", np.uint8),    # 1: swap*ForExact* / exactOutput*
    ("fee_on_transfer", np.uint8),  # 1: a ...SupportingFeeOnTransferTokens function
    ("hops", np.uint8),            # hops of the swap this row belongs to
])

_MASK64 = (1 << 64) - 1
_ROUTER_SENTINEL_BALANCE = 1 << 255  # Universal Router: "use the contract's balance"


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``."""
    return keccak.new(digest_bits=256, data=data).digest()


def selector(signature: str) -> int:
    """The 4-byte function selector of a canonical ABI signature, as an int."""
    return int.from_bytes(keccak256(signature.encode()), "big") >> 224


def _addr(h: str) -> bytes:
    return bytes.fromhex(h[2:])


UNISWAP_V2_FACTORY = _addr("0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f")
UNISWAP_V2_INIT_HASH = bytes.fromhex(
    "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f")
SUSHI_FACTORY = _addr("0xc0aee478e3658e2610c5f7a4a2e1777ce9e4f2ac")
SUSHI_INIT_HASH = bytes.fromhex(
    "e18a34eb0e04b04f7a0ac29a6e80748dca96319b42c54d679cb821dca90c6303")
UNISWAP_V3_FACTORY = _addr("0x1f98431c8ad98523631ae4a59f267346ea31f984")
UNISWAP_V3_INIT_HASH = bytes.fromhex(
    "e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")
WETH = _addr("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")

# router address -> (kind, V2 factory, V2 init code hash)
ROUTERS: dict[bytes, tuple[str, bytes, bytes]] = {
    _addr("0x7a250d5630b4cf539739df2c5dacb4c659f2488d"): ("v2", UNISWAP_V2_FACTORY, UNISWAP_V2_INIT_HASH),
    _addr("0xd9e1ce17f2641f24ae83637ab66a2cca9c378b9f"): ("v2", SUSHI_FACTORY, SUSHI_INIT_HASH),
    _addr("0xe592427a0aece92de3edee1f18e0157c05861564"): ("v3", UNISWAP_V2_FACTORY, UNISWAP_V2_INIT_HASH),
    _addr("0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"): ("v3", UNISWAP_V2_FACTORY, UNISWAP_V2_INIT_HASH),
    _addr("0xef1c6e67703c7bd7107eed8303fbe6ec2554bf6b"): ("ur", UNISWAP_V2_FACTORY, UNISWAP_V2_INIT_HASH),
    _addr("0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"): ("ur", UNISWAP_V2_FACTORY, UNISWAP_V2_INIT_HASH),
}

# name -> canonical signature; selectors are computed from these so a typo cannot hide
_SIGNATURES = {
    # Uniswap V2 Router02 (v2-periphery UniswapV2Router02.sol)
    "swapExactTokensForTokens": "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
    "swapTokensForExactTokens": "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)",
    "swapExactETHForTokens": "swapExactETHForTokens(uint256,address[],address,uint256)",
    "swapTokensForExactETH": "swapTokensForExactETH(uint256,uint256,address[],address,uint256)",
    "swapExactTokensForETH": "swapExactTokensForETH(uint256,uint256,address[],address,uint256)",
    "swapETHForExactTokens": "swapETHForExactTokens(uint256,address[],address,uint256)",
    "swapExactTokensForTokensSupportingFeeOnTransferTokens":
        "swapExactTokensForTokensSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)",
    "swapExactETHForTokensSupportingFeeOnTransferTokens":
        "swapExactETHForTokensSupportingFeeOnTransferTokens(uint256,address[],address,uint256)",
    "swapExactTokensForETHSupportingFeeOnTransferTokens":
        "swapExactTokensForETHSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)",
    # Uniswap V3 SwapRouter (v3-periphery SwapRouter.sol, ISwapRouter)
    "exactInputSingle": "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
    "exactInput": "exactInput((bytes,address,uint256,uint256,uint256))",
    "exactOutputSingle": "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
    "exactOutput": "exactOutput((bytes,address,uint256,uint256,uint256))",
    "multicall": "multicall(bytes[])",
    # SwapRouter02 (swap-router-contracts IV3SwapRouter, IV2SwapRouter, IMulticallExtended)
    "exactInputSingle02": "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))",
    "exactInput02": "exactInput((bytes,address,uint256,uint256))",
    "exactOutputSingle02": "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint160))",
    "exactOutput02": "exactOutput((bytes,address,uint256,uint256))",
    "swapExactTokensForTokens02": "swapExactTokensForTokens(uint256,uint256,address[],address)",
    "swapTokensForExactTokens02": "swapTokensForExactTokens(uint256,uint256,address[],address)",
    "multicallDeadline": "multicall(uint256,bytes[])",
    "multicallBlockhash": "multicall(bytes32,bytes[])",
    # Universal Router (universal-router UniversalRouter.sol)
    "execute": "execute(bytes,bytes[])",
    "executeDeadline": "execute(bytes,bytes[],uint256)",
}
SELECTORS: dict[str, int] = {name: selector(sig) for name, sig in _SIGNATURES.items()}
_S = SELECTORS

# Universal Router command bytes (Commands.sol); the top bit allows the command to revert
UR_V3_SWAP_EXACT_IN, UR_V3_SWAP_EXACT_OUT = 0x00, 0x01
UR_V2_SWAP_EXACT_IN, UR_V2_SWAP_EXACT_OUT = 0x08, 0x09
UR_COMMAND_MASK = 0x3F


class _Malformed(Exception):
    """Calldata that does not fit its ABI layout; ``args[0]`` is the reason counted."""


@lru_cache(maxsize=65536)
def v2_pair_address(factory: bytes, token_a: bytes, token_b: bytes,
                    init_hash: bytes = UNISWAP_V2_INIT_HASH) -> bytes:
    """The CREATE2 address of the V2 pair of two tokens (``UniswapV2Library.pairFor``)."""
    t0, t1 = (token_a, token_b) if token_a < token_b else (token_b, token_a)
    return keccak256(b"\xff" + factory + keccak256(t0 + t1) + init_hash)[12:]


@lru_cache(maxsize=65536)
def v3_pool_address(token_a: bytes, token_b: bytes, fee: int,
                    factory: bytes = UNISWAP_V3_FACTORY) -> bytes:
    """The CREATE2 address of the V3 pool of two tokens and a fee tier (``PoolAddress``)."""
    t0, t1 = (token_a, token_b) if token_a < token_b else (token_b, token_a)
    salt = keccak256(t0.rjust(32, b"\0") + t1.rjust(32, b"\0") + fee.to_bytes(32, "big"))
    return keccak256(b"\xff" + factory + salt + UNISWAP_V3_INIT_HASH)[12:]


class _Args:
    """ABI-encoded arguments (``data`` without the selector), read with bounds checks."""

    __slots__ = ("data", "base")

    def __init__(self, data: bytes, base: int = 0):
        self.data, self.base = data, base

    def word(self, i: int) -> int:
        at = self.base + 32 * i
        if at + 32 > len(self.data):
            raise _Malformed("short_calldata")
        return int.from_bytes(self.data[at:at + 32], "big")

    def address(self, i: int) -> bytes:
        w = self.word(i)
        if w >> 160:
            raise _Malformed("dirty_address")
        return w.to_bytes(20, "big")

    def _offset(self, i: int) -> int:
        off = self.word(i)
        if off > len(self.data) - self.base:
            raise _Malformed("offset_out_of_range")
        return self.base + off

    def tuple(self, i: int) -> "_Args":
        """The dynamic tuple whose offset is head word ``i``."""
        return _Args(self.data, self._offset(i))

    def bytes_(self, i: int) -> bytes:
        at = self._offset(i)
        n = _Args(self.data, at).word(0)
        if at + 32 + n > len(self.data):
            raise _Malformed("length_out_of_range")
        return self.data[at + 32:at + 32 + n]

    def addresses(self, i: int) -> list[bytes]:
        at = self._offset(i)
        arr = _Args(self.data, at)
        n = arr.word(0)
        if at + 32 * (n + 1) > len(self.data):
            raise _Malformed("length_out_of_range")
        arr = _Args(self.data, at + 32)
        return [arr.address(k) for k in range(n)]

    def bytes_array(self, i: int) -> list[bytes]:
        at = self._offset(i)
        n = _Args(self.data, at).word(0)
        if at + 32 * (n + 1) > len(self.data):
            raise _Malformed("length_out_of_range")
        items = _Args(self.data, at + 32)
        return [items.bytes_(k) for k in range(n)]


class _Swap:
    """One router swap before it becomes rows: its hops and bounds."""

    __slots__ = ("protocol", "tokens", "fees", "pools", "amount", "bound", "exact_output",
                 "recipient", "deadline", "selector", "fee_on_transfer")

    def __init__(self, protocol, tokens, fees, pools, amount, bound, exact_output, recipient,
                 deadline, sel, fee_on_transfer=False):
        self.protocol, self.tokens, self.fees, self.pools = protocol, tokens, fees, pools
        self.amount, self.bound, self.exact_output = amount, bound, exact_output
        self.recipient, self.deadline, self.selector = recipient, deadline, sel
        self.fee_on_transfer = fee_on_transfer


def _v2_swap(path, amount, bound, exact_output, recipient, deadline, sel, router, fot=False):
    if len(path) < 2:
        raise _Malformed("short_path")
    _, factory, init_hash = router
    pools = []
    for a, b in zip(path, path[1:]):
        if a == b:
            raise _Malformed("identical_tokens")
        pools.append(v2_pair_address(factory, a, b, init_hash))
    return _Swap(PROTOCOL_UNISWAP_V2, path, [3000] * len(pools), pools, amount, bound,
                 exact_output, recipient, deadline, sel, fot)


def _v3_path(packed: bytes, reverse: bool):
    """Tokens and fees of a packed V3 path (token, fee24, token, ...); ``reverse`` for the
    exact-output encoding, which lists the output token first."""
    if len(packed) < 43 or (len(packed) - 20) % 23:
        raise _Malformed("bad_v3_path")
    tokens = [packed[k:k + 20] for k in range(0, len(packed), 23)]
    fees = [int.from_bytes(packed[k + 20:k + 23], "big") for k in range(0, len(packed) - 20, 23)]
    if reverse:
        tokens.reverse()
        fees.reverse()
    return tokens, fees


def _v3_swap(tokens, fees, amount, bound, exact_output, recipient, deadline, sel):
    pools = []
    for a, b, fee in zip(tokens, tokens[1:], fees):
        if a == b:
            raise _Malformed("identical_tokens")
        pools.append(v3_pool_address(a, b, fee))
    return _Swap(PROTOCOL_UNISWAP_V3, tokens, fees, pools, amount, bound, exact_output,
                 recipient, deadline, sel)


def _decode_call(sel: int, a: _Args, value: int, router, deadline: int, depth: int,
                 skipped: Counter) -> list[_Swap]:
    """The swaps of one router call (recursing into multicalls)."""
    kind = router[0]
    if kind == "v2":
        return _decode_v2(sel, a, value, router)
    if kind == "v3":
        if sel in (_S["multicall"], _S["multicallDeadline"], _S["multicallBlockhash"]):
            if depth:
                raise _Malformed("nested_multicall")
            if sel == _S["multicallDeadline"]:
                deadline = a.word(0)
            calls = a.bytes_array(0 if sel == _S["multicall"] else 1)
            out = []
            for call in calls:
                if len(call) < 4:
                    raise _Malformed("short_calldata")
                inner = int.from_bytes(call[:4], "big")
                try:
                    out += _decode_call(inner, _Args(call[4:]), value, router, deadline, 1,
                                        skipped)
                except _Unknown:
                    # refundETH, unwrapWETH9, sweepToken, selfPermit...: not a swap
                    skipped["multicall_other_call"] += 1
            return out
        return _decode_v3(sel, a, router, deadline)
    if sel in (_S["execute"], _S["executeDeadline"]):
        return _decode_universal(sel, a, router, skipped)
    raise _Unknown()


class _Unknown(Exception):
    """A selector the router kind does not swap with."""


def _decode_v2(sel, a, value, router):
    s = _S
    if sel in (s["swapExactTokensForTokens"], s["swapExactTokensForETH"],
               s["swapExactTokensForTokensSupportingFeeOnTransferTokens"],
               s["swapExactTokensForETHSupportingFeeOnTransferTokens"]):
        fot = sel in (s["swapExactTokensForTokensSupportingFeeOnTransferTokens"],
                      s["swapExactTokensForETHSupportingFeeOnTransferTokens"])
        return [_v2_swap(a.addresses(2), a.word(0), a.word(1), False, a.address(3), a.word(4),
                         sel, router, fot)]
    if sel in (s["swapTokensForExactTokens"], s["swapTokensForExactETH"]):
        return [_v2_swap(a.addresses(2), a.word(0), a.word(1), True, a.address(3), a.word(4),
                         sel, router)]
    if sel in (s["swapExactETHForTokens"], s["swapExactETHForTokensSupportingFeeOnTransferTokens"]):
        fot = sel == s["swapExactETHForTokensSupportingFeeOnTransferTokens"]
        return [_v2_swap(a.addresses(1), value, a.word(0), False, a.address(2), a.word(3),
                         sel, router, fot)]
    if sel == s["swapETHForExactTokens"]:
        return [_v2_swap(a.addresses(1), a.word(0), value, True, a.address(2), a.word(3),
                         sel, router)]
    raise _Unknown()


def _decode_v3(sel, a, router, deadline):
    s = _S
    if sel in (s["exactInputSingle"], s["exactOutputSingle"]):
        # static tuple: inline in the head
        t_in, t_out, fee, rcpt = a.address(0), a.address(1), a.word(2), a.address(3)
        if fee >> 24:
            raise _Malformed("bad_fee")
        out = sel == s["exactOutputSingle"]
        return [_v3_swap([t_in, t_out], [fee], a.word(5), a.word(6), out, rcpt, a.word(4), sel)]
    if sel in (s["exactInputSingle02"], s["exactOutputSingle02"]):
        t_in, t_out, fee, rcpt = a.address(0), a.address(1), a.word(2), a.address(3)
        if fee >> 24:
            raise _Malformed("bad_fee")
        out = sel == s["exactOutputSingle02"]
        return [_v3_swap([t_in, t_out], [fee], a.word(4), a.word(5), out, rcpt, deadline, sel)]
    if sel in (s["exactInput"], s["exactOutput"], s["exactInput02"], s["exactOutput02"]):
        p = a.tuple(0)
        out = sel in (s["exactOutput"], s["exactOutput02"])
        tokens, fees = _v3_path(p.bytes_(0), out)
        if sel in (s["exactInput"], s["exactOutput"]):
            return [_v3_swap(tokens, fees, p.word(3), p.word(4), out, p.address(1), p.word(2), sel)]
        return [_v3_swap(tokens, fees, p.word(2), p.word(3), out, p.address(1), deadline, sel)]
    if sel in (s["swapExactTokensForTokens02"], s["swapTokensForExactTokens02"]):
        out = sel == s["swapTokensForExactTokens02"]
        # SwapRouter02's exact-input V2 swap prices each hop on what the pair received
        # (balance - reserve), as the SupportingFeeOnTransferTokens functions of Router02 do
        return [_v2_swap(a.addresses(2), a.word(0), a.word(1), out, a.address(3), deadline, sel,
                         router, not out)]
    raise _Unknown()


def _decode_universal(sel, a, router, skipped):
    commands = a.bytes_(0)
    inputs = a.bytes_array(1)
    if len(inputs) != len(commands):
        raise _Malformed("commands_inputs_length")
    deadline = a.word(2) if sel == _S["executeDeadline"] else 0
    out = []
    for cmd, data in zip(commands, inputs):
        c = cmd & UR_COMMAND_MASK
        if c not in (UR_V3_SWAP_EXACT_IN, UR_V3_SWAP_EXACT_OUT, UR_V2_SWAP_EXACT_IN,
                     UR_V2_SWAP_EXACT_OUT):
            skipped["universal_other_command"] += 1
            continue
        i = _Args(data)
        # (recipient, amount, bound, path, payerIsUser) for all four swap commands
        rcpt, amount, bound = i.address(0), i.word(1), i.word(2)
        if amount == _ROUTER_SENTINEL_BALANCE:
            # the amount is whatever the router holds at that point: not known from calldata
            skipped["universal_amount_from_balance"] += 1
            continue
        exact_out = c in (UR_V3_SWAP_EXACT_OUT, UR_V2_SWAP_EXACT_OUT)
        if c in (UR_V2_SWAP_EXACT_IN, UR_V2_SWAP_EXACT_OUT):
            out.append(_v2_swap(i.addresses(3), amount, bound, exact_out, rcpt, deadline,
                                sel, router))
        else:
            tokens, fees = _v3_path(i.bytes_(3), exact_out)
            out.append(_v3_swap(tokens, fees, amount, bound, exact_out, rcpt, deadline, sel))
    return out


class Decoded:
    """What ``decode_transactions`` returns: ``rows`` (``TX_DTYPE``), ``side`` (``SIDE_DTYPE``,
    aligned with rows), ``tx`` (per row, the position of its transaction in the input) and
    ``stats`` (``transactions``, ``decoded`` transactions, ``swaps``, ``rows``, ``skipped``: a
    Counter by reason)."""

    __slots__ = ("rows", "side", "tx", "stats")

    def __init__(self, rows, side, tx, stats):
        self.rows, self.side, self.tx, self.stats = rows, side, tx, stats

    def __repr__(self):
        return f"<Decoded {len(self.rows)} rows, stats={self.stats}>"


def _hex_field(tx: Mapping, key: str, default: str = "0x") -> bytes:
    v = tx.get(key, default)
    if v is None:
        v = default
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if not isinstance(v, str):
        raise TypeError(f"transaction {key!r} must be hex or bytes, got {v!r}")
    h = v[2:] if v[:2] in ("0x", "0X") else v
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise ValueError(f"transaction {key!r} must be hex, got {v[:80]!r}") from None


def _int_field(tx: Mapping, key: str) -> int:
    v = tx.get(key)
    if v is None:
        return 0
    if isinstance(v, str):
        try:
            return int(v, 16) if v[:2] in ("0x", "0X") else int(v)
        except ValueError:
            raise ValueError(f"transaction {key!r} must be an integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"transaction {key!r} must be an integer, got {v!r}")
    return int(v)


def _words(v: int) -> list[int]:
    return [(v >> (64 * k)) & _MASK64 for k in range(4)]


def decode_transactions(txs: Iterable[Mapping[str, Any]], *, routers=None) -> Decoded:
    """Decode the router swaps of ``txs`` (JSON-RPC transaction objects) into rows, in order.

    Each transaction is a mapping with ``to``, ``input`` (hex strings or bytes) and optionally
    ``from``, ``value``, ``hash``, ``nonce``, ``gasPrice`` (hex strings or ints, as a node sends
    them), and the fee fields ``type``, ``maxFeePerGas``, ``maxPriorityFeePerGas``. ``routers``:
    router address (20 bytes) -> ``(kind, v2 factory, v2 init code hash)``, kind ``"v2"``,
    ``"v3"`` or ``"ur"`` (default ``ROUTERS``).

    Returns a ``Decoded``. Raises ``TypeError``/``ValueError`` naming the field only for a
    transaction that is not a mapping or a field of the wrong type; bad calldata is counted.
    """
    routers = ROUTERS if routers is None else routers
    skipped: Counter = Counter()
    pending: list[tuple[int, Mapping, bytes, list[_Swap]]] = []
    n_tx = 0
    for pos, tx in enumerate(txs):
        n_tx += 1
        if not isinstance(tx, Mapping):
            raise TypeError(f"transaction {pos} must be a mapping, got {type(tx).__name__}")
        to = tx.get("to")
        router = routers.get(_hex_field(tx, "to")) if to else None
        if router is None:
            skipped["not_a_router"] += 1
            continue
        data = _hex_field(tx, "input")
        if len(data) < 4:
            skipped["short_calldata"] += 1
            continue
        sel = int.from_bytes(data[:4], "big")
        try:
            swaps = _decode_call(sel, _Args(data[4:]), _int_field(tx, "value"), router, 0, 0,
                                 skipped)
        except _Unknown:
            skipped["unknown_selector"] += 1
            continue
        except _Malformed as e:
            skipped[e.args[0]] += 1
            continue
        if not swaps:
            skipped["no_swap"] += 1
            continue
        pending.append((pos, tx, data, swaps))

    n_rows = sum(len(s.pools) for _, _, _, swaps in pending for s in swaps)
    rows = np.zeros(n_rows, TX_DTYPE)
    side = np.zeros(n_rows, SIDE_DTYPE)
    txpos = np.zeros(n_rows, np.int64)
    r = 0
    n_swaps = 0
    for pos, tx, data, swaps in pending:
        sender = _hex_field(tx, "from", "0x" + "00" * 20)
        tx_hash = _hex_field(tx, "hash", "0x" + "00" * 32)
        nonce, gas = _int_field(tx, "nonce"), _int_field(tx, "gasPrice")
        tx_type = _int_field(tx, "type")
        max_fee = min(_int_field(tx, "maxFeePerGas"), _MASK64)
        max_tip = min(_int_field(tx, "maxPriorityFeePerGas"), _MASK64)
        router_addr = _hex_field(tx, "to")
        swap_index = 0
        for s in swaps:
            n_swaps += 1
            hops = len(s.pools)
            for h in range(hops):
                row, sd = rows[r], side[r]
                last = h == hops - 1
                pool = s.pools[h]
                row["id"] = r
                row["nonce"] = nonce & _MASK64
                row["gas_price"] = gas & _MASK64
                row["tx_type"] = min(tx_type, 255)
                row["max_fee_per_gas"] = max_fee
                row["max_priority_fee_per_gas"] = max_tip
                row["tx_index"] = pos
                row["swap_index"] = swap_index
                row["protocol"] = s.protocol
                row["flags"] = FLAG_PENDING
                row["sender"] = np.frombuffer(sender.ljust(20, b"\0")[:20], np.uint8)
                if last:
                    rcpt = s.recipient
                elif s.protocol == PROTOCOL_UNISWAP_V2:
                    rcpt = s.pools[h + 1]  # a V2 router pays each hop's output to the next pair
                else:
                    rcpt = router_addr
                row["recipient"] = np.frombuffer(rcpt, np.uint8)
                row["pool"] = np.frombuffer(pool, np.uint8)
                row["token_in"] = np.frombuffer(s.tokens[h], np.uint8)
                row["token_out"] = np.frombuffer(s.tokens[h + 1], np.uint8)
                row["sender_key"] = int.from_bytes(sender[-8:], "big") if sender else 0
                row["pool_key"] = int.from_bytes(pool[-8:], "big")
                row["token_in_key"] = int.from_bytes(s.tokens[h][-8:], "big")
                row["token_out_key"] = int.from_bytes(s.tokens[h + 1][-8:], "big")
                row["tx_hash"] = np.frombuffer(tx_hash.ljust(32, b"\0")[:32], np.uint8)
                if s.exact_output:
                    if last:
                        row["amount_out"] = _words(s.amount)
                    if h == 0:
                        sd["amount_in_max"] = _words(s.bound)
                else:
                    if h == 0:
                        row["amount_in"] = _words(s.amount)
                    if last:
                        row["amount_out_min"] = _words(s.bound)
                sd["deadline"] = min(s.deadline, _MASK64)
                sd["fee"] = s.fees[h]
                sd["selector"] = s.selector
                sd["exact_output"] = s.exact_output
                sd["fee_on_transfer"] = s.fee_on_transfer
                sd["hops"] = min(hops, 255)
                txpos[r] = pos
                r += 1
                swap_index += 1
    stats = {"transactions": n_tx, "decoded": len(pending), "swaps": n_swaps, "rows": n_rows,
             "skipped": skipped}
    return Decoded(rows, side, txpos, stats)
