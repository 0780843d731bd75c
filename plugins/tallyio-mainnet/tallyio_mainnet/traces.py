"""Call-trace primitives shared by the swap decoders: ABI words, call-tree order, token transfers.

A trace's ``trace_address`` is its path in the transaction's call tree; sorting by it gives the
order in which calls started. The protocol decoders (``balancer_v1``, ``balancer_v2``, ``curve``,
``bancor``, ``zerox``) each get one live call and the transaction's live token transfers, and
return the swaps (``Leg``) it made or raise ``Skip`` with a reason that ``decode`` counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Transfer:
    """One ERC20 movement: ``transfer`` or ``transferFrom`` called on ``token``."""

    trace_address: tuple[int, ...]
    token: str
    sender: str
    to: str
    amount: int


class Leg(NamedTuple):
    """One swap as a decoder sees it (addresses lower-case ``0x`` hex, exact amounts)."""

    protocol: int
    pool: str
    payer: str
    recipient: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int


class Skip(Exception):
    """A swap call whose trace gives no swap; ``reason`` is counted in ``stats["skipped"]``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ETH itself, as Balancer V2 (the zero address) and Bancor/Curve (0xeeee...) name it in call data;
# the decoders follow ERC20 transfers only, so a leg in ETH is skipped and counted
ETH_ADDRESSES = frozenset({"0x" + "00" * 20, "0x" + "ee" * 20})


def word(data: str, i: int) -> int:
    """The ``i``-th 32-byte word of hex ``data`` (no ``0x``, no selector) as an unsigned int."""
    return int(data[64 * i:64 * (i + 1)], 16)


def word_address(data: str, i: int) -> str:
    return "0x" + data[64 * i + 24:64 * (i + 1)]


def signed(value: int) -> int:
    return value - (1 << 256) if value >> 255 else value


def args(inp: str, nwords: int) -> str | None:
    """The argument hex of a call input carrying at least ``nwords`` words, else None."""
    data = inp[10:]
    return data if len(data) >= 64 * nwords else None


def call_args(action: dict, nwords: int) -> str:
    """``args`` of a call, or ``Skip("malformed_swap")`` when it is shorter than ``nwords``."""
    data = args(action.get("input", "0x"), nwords)
    if data is None:
        raise Skip("malformed_swap")
    return data


def output_words(trace: dict, nwords: int) -> str | None:
    """The hex of a call's return data when it holds at least ``nwords`` words, else None."""
    out = (trace.get("result") or {}).get("output") or "0x"
    return out[2:] if len(out) >= 2 + 64 * nwords else None


def address_array(data: str, head_word: int) -> list[str]:
    """The ``address[]`` argument whose offset is in word ``head_word`` of ``data``.

    Raises ``Skip("malformed_swap")`` when the offset or length points past the data."""
    try:
        start = word(data, head_word) // 32
        n = word(data, start)
        if n > len(data) // 64:
            raise ValueError(n)
        out = [word_address(data, start + 1 + k) for k in range(n)]
    except ValueError:
        raise Skip("malformed_swap") from None
    if len(data) < 64 * (start + 1 + n):
        raise Skip("malformed_swap")
    return out


def is_under(address: tuple[int, ...], parent: tuple[int, ...]) -> bool:
    """True when ``address`` is ``parent`` or lies below it in the call tree."""
    return address[:len(parent)] == parent


def before(tr: Transfer, addr: tuple[int, ...]) -> bool:
    """True when transfer ``tr`` completed before the call at ``addr`` started.

    A transfer that encloses the call (a token whose ``transfer`` sells its fee on a pair) moves
    its balance after its nested calls return, so it does not count as before them.
    """
    return tr.trace_address < addr and not is_under(addr, tr.trace_address)


def inside(transfers: list[Transfer], addr: tuple[int, ...]) -> list[Transfer]:
    """The transfers made below the call at ``addr``, in call order."""
    return [tr for tr in transfers if is_under(tr.trace_address, addr) and tr.trace_address != addr]


def only(candidates: list[Transfer], missing: str, several: str) -> Transfer:
    """The one transfer of ``candidates``; ``Skip(missing)`` or ``Skip(several)`` otherwise."""
    if len(candidates) != 1:
        raise Skip(several if candidates else missing)
    return candidates[0]
