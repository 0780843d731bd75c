"""A JSON-RPC WebSocket server for the tests: recorded mainnet transactions as a node's mempool.

It serves, on 127.0.0.1 (a free port), the top-level transactions of recorded blocks as a
``newPendingTransactions`` stream (full objects, or hashes when ``full`` is off: it then refuses
the ``true`` parameter as nodes without it do), ``newHeads`` after each block's transactions,
``eth_getTransactionByHash``, ``eth_getBlockByHash``, and ``eth_call`` for ``getReserves()`` (the
reserves the traces revealed) and the V2 factory's ``getPair`` (by CREATE2). Requests may be
batched. Its own loop runs in its own thread; ``stop()`` closes it.
"""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from tallyio.record import PROTOCOL_UNISWAP_V2
from tallyio_ethereum.calldata import UNISWAP_V2_FACTORY, v2_pair_address
from tallyio_ethereum.live import GET_PAIR, GET_RESERVES
from tallyio_ethereum.replay import pending_transactions, revealed_reserves

TIMEOUT = 120  # seconds: only against a hang, never a speed bound


class Chain:
    """The recorded data: ``blocks`` of ``(number, hash, [tx objects])`` and ``reserves``."""

    def __init__(self, blocks, reserves):
        self.blocks = blocks
        self.reserves = reserves
        self.stream = [tx for _, _, txs in blocks for tx in txs]
        self.by_hash = {tx.get("hash"): tx for tx in self.stream}
        self.block_by_hash = {h: (n, [tx.get("hash") for tx in txs]) for n, h, txs in blocks}
        # a last, empty head: a client that handles heads in order has settled every real head
        # once it asks for this block
        last = blocks[-1][0] + 1 if blocks else 1
        self.last_head = (last, f"0x{last:064x}")
        self.block_by_hash[self.last_head[1]] = (last, [])


def recorded_chain(block_files) -> Chain:
    """The blocks' top-level transactions as pending objects, and the first reserves the traces
    reveal for each pair."""
    blocks, reserves = [], {}
    for path in block_files:
        number = int(json.loads(Path(path).read_text())["block_number"])
        if any(n == number for n, _, _ in blocks):
            continue  # the set holds one block twice (10921990.json is block 10921991 too)
        txs = pending_transactions(path)
        for tx in txs:
            tx.pop("transactionIndex")  # a pending transaction has no position yet
        blocks.append((number, f"0x{number:064x}", txs))
        for pool, r in revealed_reserves(path).items():
            reserves.setdefault(pool, r)
    return Chain(blocks, reserves)


def pool_file(tmp_path, chain, decoded, limit=None, name="pools.json"):
    """A pool file (``pools`` option) of the V2 pools ``decoded`` swaps on whose reserves
    ``chain`` knows; returns its path and ``{pool: (token0, token1)}``."""
    pools = {}
    for r in decoded.rows[decoded.rows["protocol"] == PROTOCOL_UNISWAP_V2]:
        pool = "0x" + bytes(r["pool"]).hex()
        if pool in chain.reserves:
            a, b = "0x" + bytes(r["token_in"]).hex(), "0x" + bytes(r["token_out"]).hex()
            pools[pool] = (min(a, b), max(a, b))
    items = sorted(pools.items())[:limit]
    path = tmp_path / name
    path.write_text(json.dumps([{"pool": p, "token0": t0, "token1": t1} for p, (t0, t1) in items]))
    return path, dict(items)


class Server:
    """``full``: offer full transaction objects. ``drop_after``: on the first connection, close
    after sending that many transactions; a later connection resumes ``overlap`` transactions
    before that point (so the client sees some twice). ``close_at_end``: close the connection once
    everything was sent (and, in hash mode, fetched). ``heads``: send ``newHeads`` after each
    block. Streaming starts once the client subscribed to everything in ``wait_for``."""

    def __init__(self, chain: Chain, *, full=True, drop_after=None, overlap=0, close_at_end=True,
                 heads=True, wait_for=("pending",)):
        self.chain, self.full, self.drop_after, self.overlap = chain, full, drop_after, overlap
        self.close_at_end, self.heads, self.wait_for = close_at_end, heads, set(wait_for)
        self.connections = 0
        self.fetched: set[str] = set()  # every hash asked for, over every connection
        self.blocks_asked: set[str] = set()
        self.failures: list[str] = []  # the server's own errors: stop() raises them
        self.requests: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        async def start():
            return await serve(self._handle, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self):
        async def close():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        assert not self.failures, self.failures

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    async def _handle(self, ws):
        self.connections += 1
        first = self.connections == 1
        subs: dict[str, str] = {}
        ready = asyncio.Event()
        progress = asyncio.Event()  # set on each request
        streamer = None
        try:
            async for msg in ws:
                req = json.loads(msg)
                answers = [self._answer(r, subs) for r in (req if isinstance(req, list)
                                                           else [req])]
                await ws.send(json.dumps(answers if isinstance(req, list) else answers[0]))
                if self.wait_for <= set(subs.values()):
                    ready.set()
                if streamer is None and ready.is_set():
                    streamer = asyncio.create_task(self._stream(ws, subs, first, progress))
                progress.set()
        except ConnectionClosed:
            pass
        finally:
            if streamer is not None:
                if streamer.done() and not streamer.cancelled() and streamer.exception():
                    self.failures.append(repr(streamer.exception()))
                streamer.cancel()

    async def _stream(self, ws, subs, first, progress):
        pending = next(k for k, v in subs.items() if v == "pending")
        heads = next((k for k, v in subs.items() if v == "heads"), None)
        start = 0
        if not first and self.drop_after is not None:
            start = max(0, self.drop_after - self.overlap)
        stop = self.drop_after if first and self.drop_after is not None else None
        sent = set()
        k = 0
        for number, bhash, txs in self.chain.blocks:
            for tx in txs:
                if k >= start:
                    if stop is not None and k >= stop:
                        await ws.close()
                        return
                    await ws.send(json.dumps(_note(pending, tx if self.full else tx.get("hash"))))
                    sent.add(tx.get("hash"))
                k += 1
            if heads is not None and self.heads and k > start:
                await ws.send(json.dumps(_note(heads, {"number": hex(number), "hash": bhash,
                                                       "timestamp": "0x0"})))
        if stop is not None:
            await ws.close()
            return
        if heads is not None and self.heads:
            number, bhash = self.chain.last_head
            await ws.send(json.dumps(_note(heads, {"number": hex(number), "hash": bhash,
                                                   "timestamp": "0x0"})))
        if self.close_at_end:
            while (not self.full and not sent <= self.fetched) or (
                    heads is not None and self.heads and self.chain.last_head[1] not in self.blocks_asked):
                progress.clear()
                await asyncio.wait_for(progress.wait(), 120)  # a test fails, never hangs
            await ws.close()

    def _answer(self, r, subs):
        method, params, rid = r.get("method"), r.get("params") or [], r.get("id")
        self.requests.append(method)
        result = None
        if method == "eth_subscribe":
            if params[0] == "newPendingTransactions":
                if len(params) > 1 and not self.full:
                    return _error(rid, -32602, "too many arguments, want at most 1")
                subs[f"0x{len(subs) + 1:x}"] = "pending"
            elif params[0] == "newHeads":
                subs[f"0x{len(subs) + 1:x}"] = "heads"
            else:
                return _error(rid, -32602, f"no such subscription {params[0]}")
            result = f"0x{len(subs):x}"
        elif method == "eth_getTransactionByHash":
            result = self.chain.by_hash.get(params[0])
            self.fetched.add(params[0])
        elif method == "eth_getBlockByHash":
            n, hashes = self.chain.block_by_hash[params[0]]
            self.blocks_asked.add(params[0])
            result = {"number": hex(n), "hash": params[0], "transactions": hashes}
        elif method == "eth_call":
            to, data = params[0]["to"].lower(), params[0]["data"]
            if data == GET_RESERVES and to in self.chain.reserves:
                r0, r1 = self.chain.reserves[to]
                result = "0x" + f"{r0:064x}{r1:064x}" + "0" * 64
            elif data[:10] == GET_PAIR and to == "0x" + UNISWAP_V2_FACTORY.hex():
                a, b = bytes.fromhex(data[34:74]), bytes.fromhex(data[98:138])
                result = "0x" + v2_pair_address(UNISWAP_V2_FACTORY, a, b).hex().rjust(64, "0")
            else:
                result = "0x"  # no code there: what a node answers
        else:
            return _error(rid, -32601, f"the method {method} does not exist")
        return {"jsonrpc": "2.0", "id": rid, "result": result}


def _note(sub, result):
    return {"jsonrpc": "2.0", "method": "eth_subscription",
            "params": {"subscription": sub, "result": result}}


def _error(rid, code, message):
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
