"""A TallyIO Source consuming partitions of a JetStream stream of ``TX_DTYPE`` batch messages."""
from __future__ import annotations

import asyncio
import bisect
import io
import json
import logging
import queue
import time
from collections import Counter, deque
from typing import Any, Iterator

import nats
import numpy as np
from nats.js import api

from tallyio.errors import ConfigError
from tallyio.feeds import FeedError, validate
from tallyio.record import TX_DTYPE
from tallyio_nats._loop import LoopThread, NatsError
from tallyio_nats.wire import (DEAD_SUBJECT, DONE_SUBJECT, META_SUBJECT, TX_STREAM, TX_SUBJECT,
                               MalformedMessage, decode, is_nats_url, parse_partitions,
                               server_url)

log = logging.getLogger(__name__)

SENT_HEADER = "Tallyio-Sent-Ns"  # the publisher's wall clock, for the publish -> decision hop
_EMPTY = np.zeros(0, TX_DTYPE)
_RETRY_S = 0.5  # pause before re-subscribing after a lost connection or a gap
GAP_WAIT_S = 2.0  # how long a message ahead of its turn waits for the missing one


class _Reader:
    """Where the reading of one partition stands."""

    __slots__ = ("partition", "expected", "resume", "stash", "since", "failing_since")

    def __init__(self, partition: int):
        self.partition = partition
        self.expected = 1   # the next partition sequence to hand over
        self.resume = 1     # stream sequence to re-subscribe from: all before it were taken
        self.stash: dict = {}  # partition sequence -> (msg, batch) that came ahead of its turn
        self.since = None   # monotonic time the oldest stashed message has been waiting
        self.failing_since = None  # monotonic time of the first failure since a message was taken


class _Gap(Exception):
    """A partition message arrived before one it follows: some were lost in flight."""


def _positive(name: str, value: Any, integer: bool = False) -> None:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) \
        and value > 0
    if not ok:
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, "
                          f"got {value!r}")


class Sample:
    """At most ``size`` of the values added, spread evenly over all of them: when full, every
    other one is dropped and from then on only every other new one is kept (and so on), so a
    done marker stays small however long the run."""

    def __init__(self, size: int):
        self.size, self.values, self._every, self._n = size, [], 1, 0

    def add(self, value: int) -> None:
        self._n += 1
        if self._n % self._every:
            return
        self.values.append(value)
        if len(self.values) >= self.size:
            del self.values[1::2]
            self._every *= 2


class TxKeys:
    """The engine's row id -> ``(transaction hash, swap index)`` of the rows a source yielded:
    what makes an opportunity's key the same in every shard and in a single-engine run (row ids
    are per engine). Keeps the latest ``keep`` rows; older ids answer None."""

    def __init__(self, keep: int):
        self.keep = keep
        self._starts: deque = deque()
        self._chunks: deque = deque()
        self._rows = 0

    def add(self, start: int, rows: np.ndarray) -> None:
        self._starts.append(start)
        self._chunks.append((rows["tx_hash"].copy(), rows["swap_index"].copy()))
        self._rows += len(rows)
        while self._rows - len(self._chunks[0][0]) >= self.keep:
            self._rows -= len(self._chunks.popleft()[0])
            self._starts.popleft()

    def key(self, row_id: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self._starts, row_id) - 1
        if i < 0:
            return None
        hashes, swaps = self._chunks[i]
        j = row_id - self._starts[i]
        if j >= len(hashes):
            return None
        return "0x" + hashes[j].tobytes().hex(), int(swaps[j])


class NatsSource:
    """Rows from partitions of the ``TALLYIO_TX`` JetStream stream (see ``tallyio publish``).

    ``path``: ``nats://HOST:PORT``. ``partitions``: which to consume (``"0-3"``, ``"0,2"``;
    default all of them, as the publisher recorded in the stream's ``tallyio.meta`` message).
    Each partition is read through its own durable pull consumer, ``<durable>-p<N>``, created
    afresh from the start of the stream when the source starts: taking a partition over replays
    it from its first message, so the pool book and the strategies' own state are rebuilt
    exactly (what was already published comes out again and ``tallyio gather`` drops the
    duplicates). Deleting the old consumer is what takes the partition from a previous owner.

    The broker is read by an asyncio loop in its own thread; the engine's ingest thread only
    takes decoded chunks from a queue. A message is acknowledged once ``engine.settled`` shows
    every row of it has an outcome (``attach``); ``max_ack_pending`` unacknowledged messages per
    partition bound what is in flight. Redeliveries (a per-partition sequence below the next
    expected) are acknowledged and dropped; a message ahead of its turn (one before it was lost
    while the server restarted, or stored late) waits for the missing one, and when that has not
    come within ``GAP_WAIT_S`` the partition is re-subscribed from the last stream position fully
    taken. A partition that cannot be read for ``reconnect`` seconds ends the run with the
    reason (``NatsError``, the engine's ``source_error``). Malformed messages (wrong size, record
    version, magic, partition or rows that do not validate) are counted in ``errors`` by reason,
    published to ``tallyio.dead.<partition>`` and acknowledged. The run ends when every
    partition's end marker has been taken.

    ``metadata`` is the feed's (its pools table builds the engine's pool book). Raises
    ``ConfigError`` for a bad option, ``NatsError`` when the server cannot be reached or no
    ``tallyio.meta`` message appears within ``meta_wait`` seconds.
    """

    replay = True  # a published feed: the same messages give the same results, whatever the timing

    def __init__(self, path: str, *, partitions: Any = None, durable: str = "tallyio",
                 batch: int = 64, max_ack_pending: int = 256, ack_wait: float = 30.0,
                 meta_wait: float = 30.0, idle: float = 0.2, shard: str | None = None,
                 keep_keys: int = 1 << 21, reconnect: float = 120.0) -> None:
        if not self.accepts(path):
            raise ConfigError(f"path must be a nats://HOST:PORT URL, got {path!r}")
        self.url = server_url(path)
        for name, value, integer in (("batch", batch, True), ("max_ack_pending", max_ack_pending,
                                     True), ("ack_wait", ack_wait, False), ("meta_wait",
                                     meta_wait, False), ("idle", idle, False),
                                     ("keep_keys", keep_keys, True),
                                     ("reconnect", reconnect, False)):
            _positive(name, value, integer)
        if not isinstance(durable, str) or not durable.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"durable must be letters, digits, - and _, got {durable!r}")
        if partitions is not None:
            parse_partitions(partitions)  # a malformed value fails before any connection
        self.durable, self.batch, self.max_ack_pending = durable, batch, max_ack_pending
        self.ack_wait, self.idle, self.reconnect = float(ack_wait), float(idle), float(reconnect)
        self.errors: Counter = Counter()   # malformed messages by reason (the engine reports them)
        self.stats: Counter = Counter()    # messages, rows, redelivered, resubscribed, acked...
        self.hops_ns = Sample(10_000)      # publish -> every row of the message settled
        self.keys = TxKeys(keep_keys)
        self.engine = None
        self.sink = None
        self.finished = False
        self.first_ns = self.last_ns = 0   # wall clock: first message taken, last one acked
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: deque = deque()     # (rows yielded when it may be acked, msg, sent ns)
        self._yielded = 0
        self._resumed = 0                  # rows handed over (acks without an engine attached)
        self._tasks: list = []
        self._closed = False
        self.lt = LoopThread(self.url, name="tallyio-nats-source", reconnect=reconnect)
        try:
            meta = self.lt.call(self._read_meta(float(meta_wait)), timeout=meta_wait + 30)
            self.total_partitions = int(meta.pop("partitions"))
            self.run_id = str(meta.pop("run_id", ""))
            self.partitions = parse_partitions(
                partitions if partitions is not None else f"0-{self.total_partitions - 1}",
                self.total_partitions)
        except BaseException:
            self.lt.stop()
            raise
        self.metadata = meta
        self.shard = shard if shard is not None else _spec(self.partitions)
        self._wake = None

    @staticmethod
    def accepts(path) -> bool:
        """True for a ``nats://`` (or ``tls://``) URL."""
        return is_nats_url(path)

    async def _same_run(self) -> None:
        """``NatsError`` when the feed was published again since this source started (the old
        stream, with the consumers, is gone)."""
        try:
            msg = await self.lt.js.get_last_msg(TX_STREAM, META_SUBJECT)
        except Exception:
            return  # the server is away, or the stream is: the retry finds out
        with np.load(io.BytesIO(msg.data), allow_pickle=False) as z:
            now = str(z["run_id"]) if "run_id" in z.files else ""
        if now != self.run_id:
            raise NatsError(f"{self.url}: the feed was published again during the run "
                            f"(publication {self.run_id} replaced by {now}): start the engines "
                            f"after tallyio publish")

    async def _read_meta(self, wait: float) -> dict:
        deadline = time.monotonic() + wait
        while True:
            try:
                msg = await self.lt.js.get_last_msg(TX_STREAM, META_SUBJECT)
                break
            except (nats.js.errors.NotFoundError, nats.errors.TimeoutError) as e:
                if time.monotonic() >= deadline:
                    raise NatsError(f"{self.url}: no {META_SUBJECT} message in stream {TX_STREAM}"
                                    f" after {wait:g} s (publish the feed first: tallyio "
                                    f"publish --to {self.url}): {e!r}") from None
                await asyncio.sleep(_RETRY_S)
        with np.load(io.BytesIO(msg.data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # ---- the engine's side -----------------------------------------------------------------

    def attach(self, engine) -> None:
        """Ack against ``engine.settled``; publish what the engine finds through a ``nats``
        sink: the one the config names (given this source's row keys and shard), else one added
        on this source's connection, so ``tallyio run --source nats://...`` needs no config."""
        from tallyio_nats.sink import NatsSink
        self.engine = engine
        sinks = [s for _, s in engine.sinks if isinstance(s, NatsSink)]
        if not sinks:
            sink = NatsSink(_loop=self.lt)
            engine.sinks.append(("nats", sink))
            sinks = [sink]
        for s in sinks:
            s.bind(self.keys, self.shard)
        self.sink = sinks[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        self._wake = self.lt.call(_make_event())
        self._tasks = [self.lt.submit(self._consume(p)) for p in self.partitions]
        self._tasks.append(self.lt.submit(self._acker()))
        live = set(self.partitions)
        while live:
            self._resumed = self._yielded
            try:
                item = self._q.get(timeout=self.idle)
            except queue.Empty:
                # an empty chunk hands control back to the engine now and then, so a stop
                # request is seen while the stream is quiet
                yield _EMPTY
                continue
            kind, p, payload, msg, sent = item
            if kind == "fatal":
                raise payload
            if kind == "rows":
                self.keys.add(self._yielded, payload)
                self._yielded += len(payload)
                self.stats["rows"] += len(payload)
            elif kind == "end":
                live.discard(p)
            self._pending.append((self._yielded, msg, sent))
            self.lt.loop.call_soon_threadsafe(self._wake.set)
            if kind == "rows":
                yield payload
        self._resumed = self._yielded
        self.finished = True

    def close(self) -> None:
        """Acknowledge what the engine settled, publish this shard's done marker (when every
        partition reached its end) after the sinks' last result, and disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            self.lt.call(self._ack_settled(), timeout=30)
            if self.finished:
                self.lt.call(self._publish_done(), timeout=60)
        except Exception as e:
            log.warning("nats source %s: closing: %r", self.shard, e)
        for t in self._tasks:
            t.cancel()
        self.lt.stop()

    # ---- the loop's side -------------------------------------------------------------------

    async def _subscribe(self, p: int, start: int):
        js = self.lt.js
        name = f"{self.durable}-p{p}"
        try:
            await js.delete_consumer(TX_STREAM, name)
        except nats.js.errors.NotFoundError:
            pass
        policy = api.DeliverPolicy
        cfg = api.ConsumerConfig(
            durable_name=name, filter_subject=f"{TX_SUBJECT}.{p}",
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=policy.ALL if start <= 1 else policy.BY_START_SEQUENCE,
            opt_start_seq=None if start <= 1 else start, ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending)
        await js.add_consumer(TX_STREAM, cfg)
        # on this source's publication: checked after the consumer exists, so a stream
        # replaced any later takes the consumer with it and the next read fails (and checks)
        await self._same_run()
        return await js.pull_subscribe_bind(name, stream=TX_STREAM)

    async def _consume(self, p: int) -> None:
        st = _Reader(p)
        sub = None
        try:
            while True:
                try:
                    sub = await self._subscribe(p, st.resume)
                    while True:
                        try:
                            msgs = await sub.fetch(self.batch, timeout=1.0)
                        except nats.errors.TimeoutError:
                            msgs = []
                        for m in msgs:
                            if await self._take(st, m):
                                return  # the end marker
                        if st.stash and time.monotonic() - st.since > GAP_WAIT_S:
                            raise _Gap(f"partition {p}: waiting for message {st.expected}")
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a lost connection, a gap, a refused request
                    if self.lt.nc.is_closed:
                        raise NatsError(f"{self.url}: connection closed while reading partition "
                                        f"{p}: {e!r}") from None
                    if st.failing_since is None:
                        st.failing_since = time.monotonic()
                    elif time.monotonic() - st.failing_since > self.reconnect:
                        # the server answers but the partition cannot be read (its stream was
                        # deleted, say): end the run with the reason rather than retry forever
                        raise NatsError(f"{self.url}: partition {p}: nothing taken for "
                                        f"{self.reconnect:g} s: {e!r}") from None
                    await self._same_run()
                    self.stats["resubscribed"] += 1
                    if sub is not None:
                        try:
                            await sub.unsubscribe()
                        except Exception:
                            pass
                        sub = None
                    log.info("partition %d: re-subscribing from stream sequence %d after %r",
                             p, st.resume, e)
                    await asyncio.sleep(_RETRY_S)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._q.put(("fatal", p, e, None, None))

    async def _take(self, st: "_Reader", m) -> bool:
        """Take message ``m`` of ``st``'s partition: hand it, and any stashed ones that follow,
        to the ingest thread in partition order. A redelivery is acked in its turn and dropped;
        one ahead of its turn waits in the stash; a malformed one is dead-lettered. True once
        the end marker is handed."""
        p = st.partition
        self.stats["messages"] += 1
        try:
            b = decode(m.data)
            if b.partition != p:
                raise MalformedMessage("wrong_partition", f"a message of partition {b.partition}"
                                                          f" on partition {p}'s subject")
            if not b.end:
                try:
                    validate(b.rows, f"partition {p} message {b.seq}")
                except FeedError as e:
                    raise MalformedMessage("invalid_rows", str(e)) from None
        except MalformedMessage as e:
            await self._dead_letter(p, m, e)
            return False
        if b.seq < st.expected or b.seq in st.stash:
            self.stats["redelivered"] += 1
            self._q.put(("ack", p, None, m, None))
            return False
        if b.seq > st.expected:
            # messages lost in flight (the server restarted) or stored out of order: wait for
            # the missing one, re-subscribing when it does not come (GAP_WAIT_S)
            # It is acknowledged now, in its turn: held unacknowledged, a long wait would fill
            # max_ack_pending and stop the very delivery it waits for. (Acks are flow control
            # and progress here; a takeover replays from the start whatever was acked.)
            self.stats["out_of_order"] += 1
            self._q.put(("ack", p, None, m, None))
            st.stash[b.seq] = (m, b)
            st.since = st.since or time.monotonic()
            return False
        clean = not st.stash
        st.failing_since = None
        ended = self._hand(st, m, b)
        while not ended and st.expected in st.stash:
            ended = self._hand(st, *st.stash.pop(st.expected), acked=True)
        if clean:  # everything of the partition up to this message has been taken
            st.resume = m.metadata.sequence.stream + 1
        if not st.stash:
            st.since = None
        return ended

    def _hand(self, st: "_Reader", m, b, acked: bool = False) -> bool:
        st.expected += 1
        if not self.first_ns:
            self.first_ns = time.time_ns()
        sent = None
        if m.headers and SENT_HEADER in m.headers:
            try:
                sent = int(m.headers[SENT_HEADER])
            except ValueError:
                pass
        self._q.put(("end" if b.end else "rows", st.partition, b.rows, None if acked else m,
                     sent))
        return b.end

    async def _dead_letter(self, p: int, m, e: MalformedMessage) -> None:
        self.errors[e.reason] += 1
        log.warning("partition %d: malformed message (stream sequence %d): %s; sent to %s.%d",
                    p, m.metadata.sequence.stream, e, DEAD_SUBJECT, p)
        try:
            await self.lt.js.publish(f"{DEAD_SUBJECT}.{p}", m.data, headers={
                "Tallyio-Reason": e.reason, "Tallyio-Error": str(e)[:500],
                "Tallyio-Stream-Seq": str(m.metadata.sequence.stream)})
        except Exception as exc:
            self.errors["dead_letter_failed"] += 1
            log.warning("partition %d: dead letter not published: %r", p, exc)
            return  # not acked: it comes back after ack_wait and is tried again
        await m.ack()

    async def _acker(self) -> None:
        """Ack messages whose rows have all settled. Polls ``engine.settled`` (a plain counter
        the engine thread bumps) every millisecond while acks wait, and sleeps otherwise."""
        while True:
            await self._ack_settled()
            if self._pending:
                await asyncio.sleep(0.001)
            else:
                self._wake.clear()
                if not self._pending:
                    await self._wake.wait()

    async def _ack_settled(self) -> None:
        settled = self.engine.settled if self.engine is not None else self._resumed
        pending = self._pending
        while pending and pending[0][0] <= settled:
            _, msg, sent = pending.popleft()
            if sent is not None:
                self.hops_ns.add(time.time_ns() - sent)
            if msg is None:  # acknowledged when it arrived (out of order)
                continue
            try:
                await msg.ack()
                self.stats["acked"] += 1
                self.last_ns = time.time_ns()
            except Exception:  # the server is away: the message comes back and is acked then
                self.stats["ack_failed"] += 1

    async def _publish_done(self) -> None:
        self.stats["disconnects"] = self.lt.disconnects
        hops = np.asarray(self.hops_ns.values, dtype=np.int64)
        done = {"shard": self.shard, "partitions": self.partitions,
                "rows": int(self.stats["rows"]), "messages": int(self.stats["messages"]),
                "stats": dict(self.stats), "errors": dict(self.errors),
                "first_ns": self.first_ns, "last_ns": self.last_ns,
                "hops_ns": hops.tolist()}
        await self.lt.js.publish(DONE_SUBJECT, json.dumps(done).encode())


async def _make_event() -> asyncio.Event:
    return asyncio.Event()  # made on the loop: an Event binds to the loop that first waits on it


def _spec(partitions: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out, run = [], [partitions[0], partitions[0]]
    for p in partitions[1:]:
        if p == run[1] + 1:
            run[1] = p
        else:
            out.append(run)
            run = [p, p]
    out.append(run)
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)
