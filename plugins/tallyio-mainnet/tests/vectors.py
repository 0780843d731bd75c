"""mev-inspect-js test vectors (tests/data) turned into TX_DTYPE records."""
from __future__ import annotations

import json

import numpy as np

from tallyio.record import (PROTOCOL_BALANCER_V1, PROTOCOL_BALANCER_V2, PROTOCOL_CURVE,
                            PROTOCOL_UNISWAP_V2, PROTOCOL_UNISWAP_V3, TX_DTYPE, address_bytes,
                            address_key, int_to_u256)

PROTOCOLS = {"UniswapV2": PROTOCOL_UNISWAP_V2, "UniswapV3": PROTOCOL_UNISWAP_V3,
             "BalancerV1": PROTOCOL_BALANCER_V1, "BalancerV2": PROTOCOL_BALANCER_V2,
             "CurveV2": PROTOCOL_CURVE}


def load(path):
    with open(path) as f:
        return json.load(f)


def records(swaps):
    """One record per vector swap: sender is the transaction's ``from``, recipient the swap's
    ``to``; ``swap_index`` is the log index (the order the vectors give)."""
    rec = np.zeros(len(swaps), dtype=TX_DTYPE)
    for i, s in enumerate(swaps):
        r = rec[i]
        r["id"] = i
        r["block"] = s["block"]["number"]
        r["tx_index"] = s["transaction"]["index"]
        r["swap_index"] = s["event"]["logIndex"]
        r["protocol"] = PROTOCOLS.get(s["contract"]["protocol"]["abi"], 0)
        fields = {"sender": s["transaction"]["from"], "recipient": s["to"],
                  "pool": s["contract"]["address"], "token_in": s["assetIn"]["address"],
                  "token_out": s["assetOut"]["address"]}
        for name, value in fields.items():
            r[name] = np.frombuffer(address_bytes(value), dtype=np.uint8)
        r["sender_key"] = address_key(fields["sender"])
        r["pool_key"] = address_key(fields["pool"])
        r["token_in_key"] = address_key(fields["token_in"])
        r["token_out_key"] = address_key(fields["token_out"])
        r["tx_hash"] = np.frombuffer(bytes.fromhex(s["transaction"]["hash"][2:]), dtype=np.uint8)
        r["amount_in"] = int_to_u256(int(s["amountIn"]))
        r["amount_out"] = int_to_u256(int(s["amountOut"]))
    return rec
