"""A tiny independent ABI encoder for building router calldata in the tests."""
from __future__ import annotations

from tallyio_ethereum.calldata import selector


def addr(h: str) -> bytes:
    return bytes.fromhex(h[2:] if h.startswith("0x") else h)


def word(v: int) -> bytes:
    return v.to_bytes(32, "big")


def encode(*args) -> bytes:
    """ABI-encode a tuple of values: int (uint), bytes of 20 (address), ("bytes", b),
    ("addresses", [...]), ("bytes[]", [...]), ("tuple", (...)) (a dynamic tuple)."""
    head, tail = [], b""
    n = 32 * len(args)
    for a in args:
        if isinstance(a, int):
            head.append(word(a))
        elif isinstance(a, bytes) and len(a) == 20:
            head.append(b"\0" * 12 + a)
        else:
            kind, v = a
            head.append(word(n + len(tail)))
            if kind == "bytes":
                tail += word(len(v)) + v + b"\0" * (-len(v) % 32)
            elif kind == "addresses":
                tail += word(len(v)) + b"".join(b"\0" * 12 + x for x in v)
            elif kind == "bytes[]":
                tail += word(len(v)) + encode(*[("bytes", x) for x in v])
            elif kind == "tuple":
                tail += encode(*v)
    return b"".join(head) + tail


def call(signature: str, *args) -> str:
    """``0x`` hex calldata of ``signature`` with ``args``."""
    return "0x" + (selector(signature).to_bytes(4, "big") + encode(*args)).hex()


def v3_path(*items) -> bytes:
    """token, fee, token, fee, token ... packed."""
    out = b""
    for x in items:
        out += x.to_bytes(3, "big") if isinstance(x, int) else x
    return out
