"""A live source: a node's pending transactions over Ethereum JSON-RPC on a WebSocket.

``tallyio run --source ws://HOST:PORT`` (or ``[source] kind = "ethereum"`` with ``url``) builds an
``EthereumSource``. It speaks the standard JSON-RPC of any Ethereum node (geth, reth, erigon,
nethermind, a provider's endpoint) with the ``websockets`` client:

* ``eth_subscribe ["newPendingTransactions", true]``: full transaction objects, where the node
  offers them; a node that refuses the ``true`` parameter is subscribed without it and sends
  hashes, which are fetched in batches of ``fetch_batch`` with ``eth_getTransactionByHash``;
* ``eth_subscribe ["newHeads"]``: for each head, ``eth_getBlockByHash(hash, false)`` lists its
  transactions; those still in the source's buffer are dropped (counted ``late``: mined before the
  engine saw them), those already handed over are counted ``stats["mined"]``, and the V2 pools
  they touched are re-read with one batched ``eth_call getReserves`` (``0x0902f1ac``) at that
  block, into ``reserves``;
* the pool table (``metadata``, from which the engine builds its ``PoolBook``) is bootstrapped
  when the source is built: the pools of a JSON file (``pools``) and the V2 factory's
  ``getPair`` of token pairs (``pairs``), with their reserves from one batched ``eth_call``.

Each transaction goes through ``decode_transactions`` (the router calldata decoder) into
``TX_DTYPE`` rows with ``FLAG_PENDING``; ``tx_index`` is the transaction's position in the stream
(every transaction received counts, routers or not), so a stream's rows equal the decoder's rows
for the same transactions in the same order. ``arrival_ns`` is the time since the stream started.

Threads: the asyncio loop runs in the source's own thread; rows reach the engine through a
bounded buffer (``buffer_rows``) that the engine's ingest thread reads by iterating the source.
An idle source yields an empty chunk every ``idle_s`` so that its reader can check for a stop
between chunks (the engine does) without the source knowing the engine.

Counted, never silent (``errors``, by reason, in transactions): ``buffer_full`` (rows that did
not fit the buffer), ``duplicate`` (a hash seen before: the overlap of a reconnect), ``late``
(mined before it left the buffer, or announced already mined), ``not_found`` (a hash the node no
longer knows), ``unfetched`` (hashes announced but not fetched when the stream ended),
``bad_transaction`` (not a transaction object, a field of the wrong type), ``bad_message`` (not
JSON-RPC), ``unknown_subscription`` (a notification for no subscription of the session), and ``undecodable_<reason>`` (a router transaction the decoder could not read:
``unknown_selector``, ``short_calldata``...). ``stats`` holds the rest: ``transactions``,
``decoded``, ``rows``, ``not_a_router``, ``heads``, ``mined``, ``reserves_refreshed``,
``connects``, ``disconnects``, and the decoder's non-swap calls inside a swap transaction.

The stream reconnects with exponential backoff (``backoff_s`` doubling to ``backoff_max_s``),
deduplicates by hash across reconnects (the last ``dedup_capacity`` hashes), and, in hash mode,
fetches after a reconnect what was announced before it. It ends (the iterator returns once the
buffer is empty) on ``close()``, after ``max_transactions`` transactions, or when the connection
is lost with no reconnect left (``max_reconnects``; None: reconnect forever).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from typing import Any, Iterator

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tallyio.errors import ConfigError, TallyIOError
from tallyio.record import TX_DTYPE
from tallyio.amm import to_u256_column

from tallyio_ethereum.calldata import ROUTERS, UNISWAP_V2_FACTORY, decode_transactions, selector

log = logging.getLogger(__name__)

__all__ = ["EthereumSource", "GET_RESERVES", "GET_PAIR"]

GET_RESERVES = "0x0902f1ac"
GET_PAIR = f"0x{selector('getPair(address,address)'):08x}"
# the decoder's counts for calls inside a decoded swap transaction that are not swaps
_NOT_ERRORS = frozenset({"not_a_router", "multicall_other_call", "universal_other_command"})
_EMPTY = np.zeros(0, TX_DTYPE)
_CLOSE_GRACE_S = 1.0  # close(): how long a halted stream may take to end by itself
_EARLY_MAX = 4096  # notifications held for a subscription whose answer is not in yet


class _RpcError(Exception):
    """A JSON-RPC error answer, or an answer that does not fit the request."""


class _Lost(Exception):
    """The connection is gone or unusable: reconnect."""


class _Seen:
    """The last ``capacity`` keys, oldest forgotten first."""

    def __init__(self, capacity: int):
        self.capacity, self._d = capacity, OrderedDict()

    def add(self, key) -> None:
        self._d[key] = None
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def __contains__(self, key) -> bool:
        return key in self._d


class _Rpc:
    """JSON-RPC 2.0 over one WebSocket: requests and batches matched to answers by id, and
    subscription notifications handed to ``on_notify(subscription, result)``."""

    def __init__(self, ws, on_notify, on_bad, timeout: float):
        self.ws, self.on_notify, self.on_bad, self.timeout = ws, on_notify, on_bad, timeout
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}

    async def read(self) -> None:
        """Dispatch every message until the connection closes; then fail what is waiting."""
        try:
            async for msg in self.ws:
                try:
                    data = json.loads(msg)
                except ValueError:
                    self.on_bad()
                    continue
                for item in data if isinstance(data, list) else [data]:
                    self._dispatch(item)
        except WebSocketException:
            pass  # closed without a close frame: the same end, the session reconnects
        finally:
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(_Lost("connection closed"))
            self.waiting.clear()

    def _dispatch(self, item) -> None:
        if not isinstance(item, dict):
            self.on_bad()
            return
        if item.get("method") == "eth_subscription":
            p = item.get("params")
            if not isinstance(p, dict):
                self.on_bad()
                return
            self.on_notify(p.get("subscription"), p.get("result"))
            return
        fut = self.waiting.pop(item.get("id"), None) if isinstance(item.get("id"), int) else None
        if fut is None:
            self.on_bad()
        elif not fut.done():
            fut.set_result(item)

    async def batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        """Answers of ``calls`` (``(method, params)``) sent as one batch, in call order; an error
        answer is a ``_RpcError`` in its place (not raised)."""
        if not calls:
            return []
        loop = asyncio.get_running_loop()
        reqs, futs = [], []
        for method, params in calls:
            i = next(self.ids)
            futs.append(loop.create_future())
            self.waiting[i] = futs[-1]
            reqs.append({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
        try:
            await self.ws.send(json.dumps(reqs[0] if len(reqs) == 1 else reqs))
            answers = await asyncio.wait_for(asyncio.gather(*futs), self.timeout)
        except (asyncio.TimeoutError, WebSocketException, OSError, _Lost) as e:
            for f in futs:  # the others failed too: retrieved here, not logged as lost
                if f.done() and not f.cancelled():
                    f.exception()
            raise _Lost(f"{calls[0][0]}: {e!r}") from None
        finally:
            for r in reqs:
                self.waiting.pop(r["id"], None)
        return [_RpcError(a["error"]) if a.get("error") is not None else a.get("result")
                for a in answers]

    async def call(self, method: str, params: list) -> Any:
        out = (await self.batch([(method, params)]))[0]
        if isinstance(out, _RpcError):
            raise out
        return out


def _address(text, what: str) -> str:
    if not isinstance(text, str) or len(text) != 42 or text[:2] != "0x":
        raise ConfigError(f"{what} must be a 0x-prefixed 20-byte hex address, got {text!r}")
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        raise ConfigError(f"{what} must be a 0x-prefixed 20-byte hex address, got {text!r}") from None
    return text.lower()


def _word_address(word: str) -> str:
    return "0x" + word[-40:]


def _reserves(result) -> tuple[int, int] | None:
    """(reserve0, reserve1) of a ``getReserves()`` return value, or None when it is not one."""
    if not isinstance(result, str) or len(result) < 2 + 3 * 64 or result[:2] != "0x":
        return None
    try:
        return int(result[2:66], 16), int(result[66:130], 16)
    except ValueError:
        return None


def _count(name: str, value, low: int, *, none: bool = False) -> int | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"ethereum source: {name} must be an int >= {low}"
                          f"{' or None' if none else ''}, got {value!r}")
    return value


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ConfigError(f"ethereum source: {name} must be a number of seconds in (0, 1e6), "
                          f"got {value!r}")
    return float(value)


def _load_pool_file(path) -> list[tuple[str, str, str]]:
    """(pool, token0, token1) of a JSON pool file: a list of ``{"pool", "token0", "token1"}``."""
    where = f"ethereum source: pools {os.fspath(path)!r}"
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot be read as JSON: {e}") from None
    if isinstance(data, dict):
        data = data.get("pools")
    if not isinstance(data, list):
        raise ConfigError(f"{where}: must be a JSON list of {{\"pool\", \"token0\", \"token1\"}} "
                          f"objects (or {{\"pools\": [...]}})")
    out = []
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: entry {i} must be an object, got {e!r}")
        pool = _address(e.get("pool"), f"{where}: entry {i} pool")
        t0 = _address(e.get("token0"), f"{where}: entry {i} token0")
        t1 = _address(e.get("token1"), f"{where}: entry {i} token1")
        if not t0 < t1:
            raise ConfigError(f"{where}: entry {i}: token0 must be the lower address (a V2 "
                              f"pair's order), got {t0} and {t1}")
        out.append((pool, t0, t1))
    return out


class EthereumSource:
    """Pending transactions of an Ethereum node (JSON-RPC over WebSocket), decoded into swap rows.

    ``url``: ``ws://`` or ``wss://``. ``pools``: a JSON pool file to bootstrap the pool table from;
    ``pairs``: token pairs ``[[tokenA, tokenB], ...]`` looked up with ``factory.getPair`` (default
    factory: Uniswap V2's); both read their reserves from the node when the source is built (a
    node that cannot be reached then is a ``TallyIOError`` naming the url). ``full_transactions``:
    ask for full objects (fall back to hashes when the node refuses); False: hashes.
    ``heads``: subscribe to ``newHeads``. ``buffer_rows``: rows buffered for the engine at most.
    ``fetch_batch``: hashes per ``eth_getTransactionByHash`` batch. ``max_transactions``,
    ``max_reconnects``: see the module doc (None: unbounded). ``backoff_s``/``backoff_max_s``:
    reconnect delays. ``timeout_s``: connect and per-request timeout. ``idle_s``: the longest an
    idle iterator waits before yielding an empty chunk. ``dedup_capacity``: hashes remembered.
    ``recent_rows``: rows kept for ``row(row_id)`` (the ``bundle`` sink's victims).
    ``routers``: as ``decode_transactions``'s.

    Bad options are a ``ConfigError`` naming the option and the value.
    """

    replay = False  # a live feed: rows age (max_age) and the breakers watch latency

    def __init__(self, url: str | None = None, *, pools: str | os.PathLike | None = None,
                 pairs: list | None = None, factory: str | None = None,
                 full_transactions: bool = True, heads: bool = True, buffer_rows: int = 65536,
                 fetch_batch: int = 100, max_transactions: int | None = None,
                 max_reconnects: int | None = None, backoff_s: float = 0.1,
                 backoff_max_s: float = 10.0, timeout_s: float = 30.0, idle_s: float = 0.1,
                 dedup_capacity: int = 1 << 18, recent_rows: int = 16384,
                 routers=None) -> None:
        if not self.accepts(url):
            raise ConfigError(f"ethereum source: url must be a ws:// or wss:// URL, got {url!r}")
        self.url = url
        for name, v in (("full_transactions", full_transactions), ("heads", heads)):
            if not isinstance(v, bool):
                raise ConfigError(f"ethereum source: {name} must be true or false, got {v!r}")
        self.full_transactions, self.heads = full_transactions, heads
        self.buffer_rows = _count("buffer_rows", buffer_rows, 1)
        self.fetch_batch = _count("fetch_batch", fetch_batch, 1)
        self.max_transactions = _count("max_transactions", max_transactions, 1, none=True)
        self.max_reconnects = _count("max_reconnects", max_reconnects, 0, none=True)
        self.dedup_capacity = _count("dedup_capacity", dedup_capacity, 1)
        self.recent_rows = _count("recent_rows", recent_rows, 1)
        self.backoff_s = _seconds("backoff_s", backoff_s)
        self.backoff_max_s = _seconds("backoff_max_s", backoff_max_s)
        self.timeout_s = _seconds("timeout_s", timeout_s)
        self.idle_s = _seconds("idle_s", idle_s)
        self.factory = _address(factory, "ethereum source: factory") if factory is not None \
            else "0x" + UNISWAP_V2_FACTORY.hex()
        self.routers = ROUTERS if routers is None else routers
        table = _load_pool_file(pools) if pools is not None else []
        if pairs is not None and (not isinstance(pairs, list) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs)):
            raise ConfigError(f"ethereum source: pairs must be a list of [tokenA, tokenB], "
                              f"got {pairs!r}")
        pairs = [(_address(a, f"ethereum source: pairs[{i}][0]"),
                  _address(b, f"ethereum source: pairs[{i}][1]"))
                 for i, (a, b) in enumerate(pairs or [])]

        self.errors: Counter = Counter()
        self.stats: Counter = Counter()
        self.reserves: dict[str, tuple[int, int, int]] = {}  # pool -> (r0, r1, block) per head
        # (pool, r0, r1, block) per refresh, for the engine to apply to its pool book between
        # batches (Engine._apply_reserve_updates); bounded: a newer refresh supersedes an old one
        self.reserve_updates: deque = deque(maxlen=1 << 16)
        self.metadata: dict[str, Any] = {}
        self.reconnects = 0
        self.head = 0  # the latest block number of newHeads (0: none seen)
        self._recent = np.zeros(self.recent_rows, TX_DTYPE)  # the last rows yielded, by id
        self._yielded = 0
        self._seen = _Seen(self.dedup_capacity)
        self._mined = _Seen(self.dedup_capacity)
        self._pending_pools: OrderedDict[str, set] = OrderedDict()  # handed-over tx -> V2 pools
        self._to_fetch: deque[str] = deque()  # hash mode: announced, not fetched yet
        self._queued: set[str] = set()
        self._buffer: deque[np.ndarray] = deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._finished = False
        self.ended = threading.Event()  # set when the stream has ended (rows may still be buffered)
        self._iterated = False
        self._closed = False
        self._t0 = time.monotonic_ns()
        self._halt = asyncio.Event()  # bound to the source's loop on first use (3.10+)
        self._stream_future = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tallyio-ethereum",
                                        daemon=True)
        self._thread.start()
        if table or pairs:
            try:
                self._run(self._bootstrap(table, pairs))
            except BaseException:
                self.close()
                raise

    @staticmethod
    def accepts(path) -> bool:
        """True for a ``ws://`` or ``wss://`` URL."""
        return isinstance(path, str) and path.lower().startswith(("ws://", "wss://"))

    # ---- the consumer side (the engine's ingest thread) -----------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._iterated:
            raise TallyIOError("an ethereum source is a live stream: it can be iterated once")
        self._iterated = True
        if not self._closed:
            self._stream_future = asyncio.run_coroutine_threadsafe(self._stream(), self._loop)
        return self._chunks()

    def _chunks(self) -> Iterator[np.ndarray]:
        try:
            while True:
                with self._cond:
                    if not self._buffer and not self._finished:
                        self._cond.wait(self.idle_s)
                    chunks = list(self._buffer)
                    self._buffer.clear()
                    self._buffered = 0
                    finished = self._finished
                if chunks:
                    chunk = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
                    self._remember(chunk)
                    yield chunk
                elif finished:
                    return
                else:
                    yield _EMPTY  # idle: the reader checks for a stop between chunks
        finally:
            self.close()

    def _remember(self, chunk: np.ndarray) -> None:
        n, cap = len(chunk), self.recent_rows
        ids = np.arange(self._yielded, self._yielded + n, dtype=np.uint64)[-cap:]
        slots = ids % cap
        self._recent[slots] = chunk[-cap:]
        self._recent["id"][slots] = ids
        self._yielded += n

    def row(self, row_id: int):
        """The row the engine numbered ``row_id`` (it numbers a source's rows 0, 1, ... in the
        order they are yielded) while it is among the last ``recent_rows``; else None. For a
        sink that needs the victim of an opportunity (``tx_ids``)."""
        row_id = int(row_id)
        if not 0 <= row_id < self._yielded:
            return None
        r = self._recent[row_id % self.recent_rows].copy()
        return r if int(r["id"]) == row_id else None  # overwritten since

    def close(self) -> None:
        """Stop the stream and its thread (idempotent; from any thread but the source's own)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._halt.set)
            fut = self._stream_future
            if fut is not None:
                try:
                    fut.result(timeout=_CLOSE_GRACE_S)
                except concurrent.futures.TimeoutError:
                    # still connecting, or waiting on an answer: cancelled where it waits (the
                    # socket is closed on the way out)
                    fut.cancel()
                except Exception:  # already logged by the stream; closing must not raise
                    log.debug("ethereum stream ended with an error", exc_info=True)
                try:
                    fut.result(timeout=self.timeout_s + 5)
                except (Exception, concurrent.futures.CancelledError):
                    pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=self.timeout_s + 5)
        if not self._thread.is_alive():
            self._loop.close()
        self._finish()

    def _finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        self.ended.set()

    # ---- the loop thread --------------------------------------------------------------------

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _bootstrap(self, table, pairs) -> None:
        try:
            async with connect(self.url, open_timeout=self.timeout_s, max_size=None) as ws:
                rpc = _Rpc(ws, lambda *_: None, self._bad_message, self.timeout_s)
                reader = asyncio.create_task(rpc.read())
                try:
                    await self._bootstrap_pools(rpc, table, pairs)
                finally:
                    reader.cancel()
        except (OSError, WebSocketException, asyncio.TimeoutError, _Lost, _RpcError) as e:
            raise TallyIOError(f"ethereum source: url {self.url!r}: bootstrapping the pool table "
                               f"failed: {e!r}") from None

    async def _bootstrap_pools(self, rpc, table, pairs) -> None:
        pools = {p: (t0, t1) for p, t0, t1 in table}
        tag = "latest"
        calls = [("eth_call", [{"to": self.factory, "data": GET_PAIR + a[2:].rjust(64, "0")
                                + b[2:].rjust(64, "0")}, tag]) for a, b in pairs]
        for (a, b), out in zip(pairs, await rpc.batch(calls)):
            if isinstance(out, _RpcError) or not isinstance(out, str) or len(out) != 66 \
                    or int(out, 16) == 0:
                self.stats["pairs_missing"] += 1
                continue
            pools.setdefault(_word_address(out).lower(), (min(a, b), max(a, b)))
        order = list(pools)
        calls = [("eth_call", [{"to": p, "data": GET_RESERVES}, tag]) for p in order]
        rows = []
        for p, out in zip(order, await rpc.batch(calls)):
            r = None if isinstance(out, _RpcError) else _reserves(out)
            if r is None:
                self.stats["pools_without_reserves"] += 1
                continue
            rows.append((p, *pools[p], *r))
        self.stats["pools"] = len(rows)
        if rows:
            def addresses(k):
                return np.array([np.frombuffer(bytes.fromhex(r[k][2:]), np.uint8) for r in rows])
            self.metadata = {
                "pool_address": addresses(0), "pool_token0": addresses(1),
                "pool_token1": addresses(2),
                "pool_reserve0": to_u256_column([r[3] for r in rows]),
                "pool_reserve1": to_u256_column([r[4] for r in rows]),
            }

    def _bad_message(self) -> None:
        self.errors["bad_message"] += 1

    async def _stream(self) -> None:
        failures = 0  # in a row, for the backoff
        try:
            while not self._halt.is_set():
                try:
                    if await self._session():
                        break  # halted, or max_transactions reached
                    failures = 0
                except (OSError, WebSocketException, asyncio.TimeoutError, _Lost, _RpcError) as e:
                    log.warning("ethereum source %s: %r", self.url, e)
                    failures += 1
                self.stats["disconnects"] += 1
                if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
                    break
                self.reconnects += 1
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** min(failures, 30))
                try:
                    await asyncio.wait_for(self._halt.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        except Exception:
            self.errors["source_failed"] += 1
            log.exception("ethereum source %s failed", self.url)
        finally:
            if self._to_fetch:
                self.errors["unfetched"] += len(self._to_fetch)
            self._finish()

    async def _session(self) -> bool:
        """One connection: subscribe and stream until it closes (False) or the source is done
        (True)."""
        async with connect(self.url, open_timeout=self.timeout_s, max_size=None) as ws:
            self.stats["connects"] += 1
            handlers: dict[Any, Any] = {}
            heads_q: asyncio.Queue = asyncio.Queue()
            worker = None
            wake = asyncio.Event()

            # a node may notify before the reader hands the subscribe answer over: held until
            # the subscription's handler is in place
            early: dict[Any, list] = {}

            def on_notify(sub, result):
                h = handlers.get(sub)
                if h is not None:
                    h(result)
                elif len(early) < 16 and sum(map(len, early.values())) < _EARLY_MAX:
                    early.setdefault(sub, []).append(result)
                else:
                    self.errors["unknown_subscription"] += 1

            def handle(sub, h):
                handlers[sub] = h
                for result in early.pop(sub, ()):
                    h(result)

            rpc = _Rpc(ws, on_notify, self._bad_message, self.timeout_s)
            reader = asyncio.create_task(rpc.read())
            halt = asyncio.create_task(self._halt.wait())
            try:
                sub = None
                if self.full_transactions:
                    try:
                        sub = await rpc.call("eth_subscribe", ["newPendingTransactions", True])
                    except _RpcError:
                        self.stats["full_transactions_refused"] += 1
                if sub is None:
                    sub = await rpc.call("eth_subscribe", ["newPendingTransactions"])

                def on_pending(result):
                    if isinstance(result, str):
                        h = result.lower()
                        if h in self._seen or h in self._queued:
                            self.errors["duplicate"] += 1
                        else:
                            self._to_fetch.append(h)
                            self._queued.add(h)
                            wake.set()
                    else:
                        self._accept([result])

                handle(sub, on_pending)
                if self.heads:
                    heads = await rpc.call("eth_subscribe", ["newHeads"])

                    # one head at a time, in order: a block's late rows and reserves are
                    # settled before the next block's
                    worker = asyncio.create_task(self._heads(rpc, heads_q))
                    handle(heads, heads_q.put_nowait)
                fetcher = asyncio.create_task(self._fetch(rpc, wake))
                if self._to_fetch:  # announced before a reconnect
                    wake.set()
                done, _ = await asyncio.wait({reader, halt, fetcher},
                                             return_when=asyncio.FIRST_COMPLETED)
                fetcher.cancel()
                if early:
                    self.errors["unknown_subscription"] += sum(map(len, early.values()))
                if worker is not None and not self._halt.is_set():
                    # the heads that came before the end: what needs no more answers completes
                    heads_q.put_nowait(None)
                    await asyncio.wait({worker}, timeout=self.timeout_s)
                if fetcher in done and fetcher.exception() is not None:
                    raise fetcher.exception()
                return self._halt.is_set()
            finally:
                halt.cancel()
                reader.cancel()
                if worker is not None:
                    worker.cancel()

    async def _fetch(self, rpc: _Rpc, wake: asyncio.Event) -> None:
        """Hash mode: fetch announced hashes in batches, in announcement order; a hash leaves
        ``_to_fetch`` only once its answer is in (a reconnect fetches the rest)."""
        while True:
            await wake.wait()
            wake.clear()
            while self._to_fetch:
                hashes = list(itertools.islice(self._to_fetch, self.fetch_batch))
                answers = await rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
                for h in hashes:
                    self._to_fetch.popleft()
                    self._queued.discard(h)
                txs = []
                for h, tx in zip(hashes, answers):
                    if isinstance(tx, _RpcError) or tx is None:
                        self.errors["not_found"] += 1
                    else:
                        txs.append(tx)
                self._accept(txs)
                if self._done():
                    self._halt.set()
                    return

    def _done(self) -> bool:
        return self.max_transactions is not None and \
            self.stats["transactions"] >= self.max_transactions

    def _accept(self, txs: list) -> None:
        """Dedup, decode and buffer transaction objects, in order."""
        chunks, hashes = [], []
        for tx in txs:
            if self._done():
                self.stats["after_max_transactions"] += 1
                continue
            h = tx.get("hash") if isinstance(tx, dict) else None
            if not isinstance(h, str):
                self.errors["bad_transaction"] += 1
                continue
            h = h.lower()
            if h in self._seen:
                self.errors["duplicate"] += 1
                continue
            self._seen.add(h)
            if tx.get("blockNumber") is not None or h in self._mined:
                self.errors["late"] += 1
                continue
            position = self.stats["transactions"]
            self.stats["transactions"] += 1
            try:
                dec = decode_transactions([tx], routers=self.routers)
            except (TypeError, ValueError):
                self.errors["bad_transaction"] += 1
                continue
            for reason, n in dec.stats["skipped"].items():
                if reason in _NOT_ERRORS:
                    self.stats[reason] += n
                else:
                    self.errors[f"undecodable_{reason}"] += n
            if not len(dec.rows):
                continue
            self.stats["decoded"] += 1
            dec.rows["tx_index"] = position
            chunks.append(dec.rows)
            hashes.append(h)
        if self._done():
            self._halt.set()
        if not chunks:
            return
        rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        rows["arrival_ns"] = time.monotonic_ns() - self._t0
        with self._cond:
            if self._buffered + len(rows) > self.buffer_rows:
                self.errors["buffer_full"] += len(chunks)
                return
            self._buffer.append(rows)
            self._buffered += len(rows)
            self._cond.notify()
        self.stats["rows"] += len(rows)
        for h, c in zip(hashes, chunks):
            self._pending_pools[h] = {"0x" + bytes(p).hex() for p, proto in
                                      zip(c["pool"], c["protocol"]) if proto == 1}
            if len(self._pending_pools) > self.dedup_capacity:
                self._pending_pools.popitem(last=False)

    async def _heads(self, rpc: _Rpc, queue: asyncio.Queue) -> None:
        while (head := await queue.get()) is not None:
            try:
                await self._on_head(rpc, head)
            except _Lost:
                self.stats["heads_failed"] += 1
            except Exception:  # a node's odd answer must not end the stream: counted
                self.errors["bad_head"] += 1
                log.exception("ethereum source %s: head %r", self.url, head)

    async def _on_head(self, rpc: _Rpc, head) -> None:
        if not isinstance(head, dict) or not isinstance(head.get("hash"), str):
            self.errors["bad_message"] += 1
            return
        try:
            block = await rpc.call("eth_getBlockByHash", [head["hash"], False])
        except (_RpcError, _Lost):
            self.stats["heads_failed"] += 1
            return
        txs = block.get("transactions") if isinstance(block, dict) else None
        if not isinstance(txs, list):
            self.errors["bad_message"] += 1
            return
        try:
            number = int(head.get("number") or block.get("number"), 16)
        except (TypeError, ValueError):
            self.errors["bad_message"] += 1
            return
        self.stats["heads"] += 1
        self.head = max(self.head, number)
        mined = {h.lower() for h in txs if isinstance(h, str)}
        for h in mined:
            self._mined.add(h)
        touched: set[str] = set()
        late = set()
        with self._cond:
            kept = deque()
            for chunk in self._buffer:
                gone = np.array(["0x" + bytes(x).hex() in mined for x in chunk["tx_hash"]], bool)
                if gone.any():
                    late.update("0x" + bytes(x).hex() for x in chunk["tx_hash"][gone])
                    chunk = chunk[~gone]
                if len(chunk):
                    kept.append(chunk)
            self._buffer = kept
            self._buffered = sum(len(c) for c in kept)
        if late:
            self.errors["late"] += len(late)
        for h in mined - late:
            pools = self._pending_pools.pop(h, None)
            if pools is not None:
                self.stats["mined"] += 1
                touched |= pools
        for h in late:
            self._pending_pools.pop(h, None)
        if touched:
            order = sorted(touched)
            try:
                answers = await rpc.batch([("eth_call", [{"to": p, "data": GET_RESERVES},
                                                         hex(number)]) for p in order])
            except _Lost:
                self.stats["reserves_failed"] += len(order)
                return
            for p, out in zip(order, answers):
                r = None if isinstance(out, _RpcError) else _reserves(out)
                if r is None:
                    self.stats["reserves_failed"] += 1
                else:
                    self.reserves[p] = (r[0], r[1], number)
                    self.reserve_updates.append((p, r[0], r[1], number))
                    self.stats["reserves_refreshed"] += 1
