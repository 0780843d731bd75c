"""Hand-made blocks in the trace format, for decoder tests."""
from __future__ import annotations


def word(value: int) -> str:
    return format(value % (1 << 256), "064x")  # two's complement for negative int256


def addr_word(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def transfer(to: str, amount: int) -> str:
    return "0xa9059cbb" + addr_word(to) + word(amount)


def transfer_from(frm: str, to: str, amount: int) -> str:
    return "0x23b872dd" + addr_word(frm) + addr_word(to) + word(amount)


def v2_swap(amount0_out: int, amount1_out: int, to: str) -> str:
    return ("0x022c0d9f" + word(amount0_out) + word(amount1_out) + addr_word(to) + word(128)
            + word(0))


def v3_swap(recipient: str, zero_for_one: bool, amount_specified: int, limit: int = 0) -> str:
    return ("0x128acb08" + addr_word(recipient) + word(int(zero_for_one)) + word(amount_specified)
            + word(limit) + word(160) + word(0))


def v3_output(amount0: int, amount1: int) -> str:
    return "0x" + word(amount0) + word(amount1)


def call(tx: int, trace_address, frm: str, to: str, inp: str = "0x", output: str = "0x",
         error=None, call_type: str = "call") -> dict:
    return {
        "action": {"from": frm, "callType": call_type, "gas": "0x0", "input": inp, "to": to,
                   "value": "0x0"},
        "block_number": 1,
        "result": None if error else {"gasUsed": "0x0", "output": output},
        "subtraces": 0,
        "trace_address": list(trace_address),
        "transaction_hash": tx_hash(tx),
        "transaction_position": tx,
        "type": "call",
        "error": error,
    }


def tx_hash(tx: int) -> str:
    return "0x" + format(tx + 1, "064x")


def block(traces: list[dict], number: int = 1, timestamp: int | None = None,
          gas_price: int = 7) -> dict:
    txs = sorted({t["transaction_position"] for t in traces})
    b = {
        "block_number": number,
        "miner": "0x" + "00" * 20,
        "base_fee_per_gas": 0,
        "traces": traces,
        "receipts": [{"block_number": number, "transaction_hash": tx_hash(i),
                      "transaction_index": i, "gas_used": 1, "effective_gas_price": gas_price,
                      "cumulative_gas_used": 1, "to": None} for i in txs],
    }
    if timestamp is not None:
        b["block_timestamp"] = timestamp
    return b


def address(n: int) -> str:
    return "0x" + format(n, "040x")
