"""The transaction record: one fixed-size numpy row per pending transaction or decoded swap.

Every ring, drain and processor in the engine moves rows of ``TX_DTYPE``; a batch reaches a
strategy as a zero-copy view. Fields (byte order native unless stated):

========================  =========  ==========================================================
field                     type       meaning
========================  =========  ==========================================================
``id``                    uint64     engine-wide sequence number assigned at ingest
``arrival_ns``            int64      ``now_ns()`` when the engine received it (age and latency)
``block``                 uint64     block number (0 while pending)
``gas_price``             uint64     gas price (or effective gas price) in wei
``nonce``                 uint64     sender's nonce
``tx_index``              uint32     position of the transaction in its block
``swap_index``            uint32     position of the swap within its transaction (0 if one)
``block_time``            uint64     block timestamp, unix seconds (0 while pending)
``protocol``              uint8      ``PROTOCOL_*``: 0 unknown, 1 Uniswap V2 pair, 2 Uniswap V3 pool,
                                     3 Balancer V1 pool, 4 Balancer V2 Vault, 5 Curve pool,
                                     6 Bancor converter, 7 0x order (maker as the pool)
``flags``                 uint8      ``FLAG_*`` bits
``trace_depth``           uint8      length of ``trace_address`` in use (decoded swaps)
``tx_type``               uint8      EIP-2718 type: 0 legacy, 1 access list, 2 EIP-1559, 3 blob
``trace_address``         8 x u16    the call's position in the transaction's call tree
``sender_key``            uint64     64-bit key of ``sender`` (see ``address_key``)
``pool_key``              uint64     64-bit key of ``pool``
``token_in_key``          uint64     64-bit key of ``token_in``
``token_out_key``         uint64     64-bit key of ``token_out``
``amount_in``             4 x u64    exact amount in, 256-bit little-endian words (``u256``)
``amount_out``            4 x u64    exact amount out (decoded swaps), 256-bit words
``amount_out_min``        4 x u64    the victim's slippage bound (pending swaps), 256-bit words
``sender``                20 bytes   transaction sender (``from``)
``recipient``             20 bytes   who receives the output (``to`` of the swap)
``pool``                  20 bytes   pool / target contract
``token_in``              20 bytes   token sold
``token_out``             20 bytes   token bought
``tx_hash``               32 bytes   transaction hash
``max_fee_per_gas``       uint64     EIP-1559 fee cap in wei (0 for types 0 and 1)
``max_priority_fee_...``  uint64     ``max_priority_fee_per_gas``: EIP-1559 tip cap in wei
========================  =========  ==========================================================

``gas_price`` stays what it was (the legacy price, or the effective price a mined transaction
paid); ``effective_gas_price(rows, base_fee)`` gives what each row would pay at a base fee.

Record versions (``RECORD_VERSION``, bumped whenever ``TX_DTYPE`` changes; anything that stores or
sends rows as bytes states the version it wrote):

1. 336 bytes: the fields above without ``tx_type``, ``max_fee_per_gas``,
   ``max_priority_fee_per_gas``.
2. 352 bytes: ``tx_type`` in the padding byte after ``trace_depth`` (offset 187) and the two fee
   caps appended at 336 and 344, so every version-1 field keeps its offset (the compiled kernels
   read their offsets from ``TX_DTYPE`` when imported, and would be right either way).
   ``upgrade_records`` turns version-1 rows into version-2 rows with the three fields zero (a
   legacy-typed row, no fee caps: what a version-1 row meant); feed files of version 1 load
   through it.

Amounts routinely exceed 2**64 (18-decimal tokens), so they are carried losslessly as four 64-bit
words and turned into Python ints (``u256_to_int``) for exact arithmetic; never through float64.
"""
from __future__ import annotations

from typing import Any

import numpy as np

PROTOCOL_UNKNOWN = 0
PROTOCOL_UNISWAP_V2 = 1
PROTOCOL_UNISWAP_V3 = 2
PROTOCOL_BALANCER_V1 = 3  # a Balancer V1 pool (BPool)
PROTOCOL_BALANCER_V2 = 4  # the Balancer V2 Vault (one row per pool swap)
PROTOCOL_CURVE = 5        # a Curve StableSwap pool
PROTOCOL_BANCOR = 6       # a Bancor converter (one row per conversion hop)
PROTOCOL_ZEROX = 7        # a 0x Exchange Proxy fill (the maker is the pool)
PROTOCOL_NAMES = {PROTOCOL_UNKNOWN: "unknown", PROTOCOL_UNISWAP_V2: "uniswap_v2",
                  PROTOCOL_UNISWAP_V3: "uniswap_v3", PROTOCOL_BALANCER_V1: "balancer_v1",
                  PROTOCOL_BALANCER_V2: "balancer_v2", PROTOCOL_CURVE: "curve",
                  PROTOCOL_BANCOR: "bancor", PROTOCOL_ZEROX: "zerox"}

FLAG_PENDING = 1  # not yet mined (a mempool transaction)

U256 = (np.uint64, 4)
ADDRESS = (np.uint8, 20)

TX_DTYPE = np.dtype([
    ("id", np.uint64),
    ("arrival_ns", np.int64),
    ("block", np.uint64),
    ("gas_price", np.uint64),
    ("nonce", np.uint64),
    ("tx_index", np.uint32),
    ("swap_index", np.uint32),
    ("sender_key", np.uint64),
    ("pool_key", np.uint64),
    ("token_in_key", np.uint64),
    ("token_out_key", np.uint64),
    ("amount_in", U256),
    ("amount_out", U256),
    ("amount_out_min", U256),
    ("block_time", np.uint64),
    ("protocol", np.uint8),
    ("flags", np.uint8),
    ("trace_depth", np.uint8),
    ("tx_type", np.uint8),  # in what was padding: the fields after it keep their offsets
    ("trace_address", (np.uint16, 8)),
    ("sender", ADDRESS),
    ("recipient", ADDRESS),
    ("pool", ADDRESS),
    ("token_in", ADDRESS),
    ("token_out", ADDRESS),
    ("tx_hash", (np.uint8, 32)),
    ("max_fee_per_gas", np.uint64),
    ("max_priority_fee_per_gas", np.uint64),
], align=True)

RECORD_VERSION = 2
# fields added by each version after the first (what upgrade_records zero-fills)
RECORD_FIELDS_ADDED = {2: ("tx_type", "max_fee_per_gas", "max_priority_fee_per_gas")}

_MASK64 = (1 << 64) - 1


def int_to_u256(value: int) -> np.ndarray:
    """Four little-endian uint64 words of a non-negative int below 2**256."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"value must be an int, got {value!r}")
    value = int(value)
    if not 0 <= value < 1 << 256:
        raise ValueError(f"value must be in [0, 2**256), got {value}")
    return np.array([(value >> (64 * i)) & _MASK64 for i in range(4)], dtype=np.uint64)


def u256_to_int(words) -> int:
    """The exact int held by four little-endian uint64 words."""
    w = [int(x) for x in np.asarray(words, dtype=np.uint64).reshape(4)]
    return w[0] | (w[1] << 64) | (w[2] << 128) | (w[3] << 192)


def u256_column_to_ints(column) -> list[int]:
    """Exact ints of an ``(n, 4)`` uint64 amount column (``batch['amount_in']``)."""
    c = np.asarray(column, dtype=np.uint64).reshape(-1, 4).tolist()
    return [w[0] | (w[1] << 64) | (w[2] << 128) | (w[3] << 192) for w in c]


def u256_column_to_float(column) -> np.ndarray:
    """float64 approximations of an amount column, for vectorized pre-filters only."""
    c = np.asarray(column, dtype=np.uint64).reshape(-1, 4).astype(np.float64)
    return c[:, 0] + c[:, 1] * 2.0**64 + c[:, 2] * 2.0**128 + c[:, 3] * 2.0**192


def address_bytes(address) -> bytes:
    """20 bytes from a ``0x``-hex string, bytes, or a 20-byte uint8 array."""
    if isinstance(address, str):
        h = address[2:] if address[:2].lower() == "0x" else address
        if len(h) != 40:
            raise ValueError(f"address must be 20 bytes of hex, got {address!r}")
        return bytes.fromhex(h)
    b = bytes(np.asarray(address, dtype=np.uint8)) if not isinstance(address, bytes) else address
    if len(b) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(b)}")
    return b


def address_hex(address) -> str:
    """``0x``-prefixed lower-case hex of a 20-byte address."""
    return "0x" + address_bytes(address).hex()


def address_key(address) -> int:
    """The 64-bit key of an address: its last 8 bytes, big-endian.

    Addresses are Keccak-derived, so any 8 of their bytes are already uniform; the key is what
    hash tables, watch-lists and SIMD membership tests compare.
    """
    return int.from_bytes(address_bytes(address)[-8:], "big")


# numpy copies a padded structured dtype field by field (17 us for 256 rows here); viewed as
# opaque fixed-size bytes the same rows move with one memcpy per row (1.9 us). Every bulk copy,
# fancy index and mask of records in the engine goes through these two.
_ROW = np.dtype((np.void, TX_DTYPE.itemsize))


def copy_rows(rows: np.ndarray) -> np.ndarray:
    """A copy of a 1-D array of TX_DTYPE rows (fast path for the padded record)."""
    return rows.view(_ROW).copy().view(TX_DTYPE)


def take_rows(rows: np.ndarray, index) -> np.ndarray:
    """``rows[index]`` for an integer index array or a boolean mask (fast path)."""
    return rows.view(_ROW)[index].view(TX_DTYPE)


def swap_rows(swaps: np.ndarray) -> list[dict[str, Any]]:
    """Plain-Python views of ``TX_DTYPE`` rows in block order (block, tx_index, swap_index).

    Each dict holds ``row`` (index into ``swaps``), ``id``, ``block``, ``tx_index``,
    ``swap_index``, ``trace_address`` (list), ``protocol``, ``tx_hash`` (0x hex), the addresses as
    20-byte ``bytes`` (``sender``, ``recipient``, ``pool``, ``token_in``, ``token_out``) and exact
    ``amount_in`` / ``amount_out`` ints. Raises ``TypeError`` unless ``swaps`` is a ``TX_DTYPE``
    array.
    """
    if not isinstance(swaps, np.ndarray) or swaps.dtype != TX_DTYPE:
        got = swaps.dtype if isinstance(swaps, np.ndarray) else type(swaps).__name__
        raise TypeError(f"swaps must be a numpy array of TX_DTYPE records, got {got}")
    swaps = swaps.reshape(-1)
    order = np.lexsort((swaps["swap_index"], swaps["tx_index"], swaps["block"]))
    amount_in = u256_column_to_ints(swaps["amount_in"])
    amount_out = u256_column_to_ints(swaps["amount_out"])
    rows = []
    for i in order.tolist():
        r = swaps[i]
        depth = int(r["trace_depth"])
        rows.append({
            "row": i,
            "id": int(r["id"]),
            "block": int(r["block"]),
            "tx_index": int(r["tx_index"]),
            "swap_index": int(r["swap_index"]),
            "trace_address": r["trace_address"][:depth].tolist(),
            "protocol": int(r["protocol"]),
            "tx_hash": "0x" + r["tx_hash"].tobytes().hex(),
            "sender": r["sender"].tobytes(),
            "recipient": r["recipient"].tobytes(),
            "pool": r["pool"].tobytes(),
            "token_in": r["token_in"].tobytes(),
            "token_out": r["token_out"].tobytes(),
            "amount_in": amount_in[i],
            "amount_out": amount_out[i],
        })
    return rows


def upgrade_records(records: np.ndarray) -> np.ndarray:
    """``TX_DTYPE`` rows from rows of an older record version: every field the old rows have is
    copied, the fields added since (``RECORD_FIELDS_ADDED``) are zero. ``TX_DTYPE`` rows are
    returned as they are. Raises ``ValueError`` naming the field for rows that are not an older
    version (an unknown field, a field of another type, a missing field that was never added)."""
    dt = records.dtype
    if dt == TX_DTYPE:
        return records
    if dt.names is None:
        raise ValueError(f"records must be structured TX_DTYPE rows (or an older version of "
                         f"them), got dtype {dt}")
    added = {f for fields in RECORD_FIELDS_ADDED.values() for f in fields}
    for name in dt.names:
        if name not in TX_DTYPE.names:
            raise ValueError(f"records: field {name!r} is not a TX_DTYPE field of any version")
        if dt.fields[name][0] != TX_DTYPE.fields[name][0]:
            raise ValueError(f"records: field {name!r} is {dt.fields[name][0]}, TX_DTYPE has "
                             f"{TX_DTYPE.fields[name][0]}")
    missing = [n for n in TX_DTYPE.names if n not in dt.names and n not in added]
    if missing:
        raise ValueError(f"records: field {missing[0]!r} is missing (every record version has it)")
    out = np.zeros(records.shape, TX_DTYPE)
    for name in dt.names:
        out[name] = records[name]
    return out


def effective_gas_price(rows: np.ndarray, base_fee: int) -> np.ndarray:
    """What each row's transaction pays per gas at ``base_fee`` (wei): ``min(max_fee_per_gas,
    base_fee + max_priority_fee_per_gas)`` for EIP-1559 types (2 and 3), ``gas_price`` for the
    others. uint64; a sum past 2**64 - 1 is capped by the fee cap it is compared with."""
    if isinstance(base_fee, bool) or not isinstance(base_fee, (int, np.integer)) or \
            not 0 <= int(base_fee) < 1 << 64:
        raise ValueError(f"base_fee must be an int in [0, 2**64), got {base_fee!r}")
    cap = rows["max_fee_per_gas"]
    tip = rows["max_priority_fee_per_gas"]
    room = np.uint64((1 << 64) - 1 - int(base_fee))
    offered = np.where(tip > room, np.uint64((1 << 64) - 1), tip + np.uint64(int(base_fee)))
    eip1559 = rows["tx_type"] >= 2
    return np.where(eip1559, np.minimum(cap, offered), rows["gas_price"]).astype(np.uint64)


def empty(n: int) -> np.ndarray:
    """``n`` zeroed records."""
    return np.zeros(n, dtype=TX_DTYPE)
