"""Publish a TallyIO feed to JetStream: batch messages partitioned by token pair."""
from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import Any, Iterable

import numpy as np

from tallyio.errors import ConfigError
from tallyio.record import TX_DTYPE
from tallyio_nats._loop import LoopThread, NatsError, ensure_result_streams, ensure_stream
from tallyio_nats.source import SENT_HEADER
from tallyio_nats.wire import (HEADER, MAX_PARTITIONS, META_SUBJECT, TX_STREAM, TX_SUBJECT,
                               encode, partition_of)

MAX_MESSAGE_BYTES = 1 << 20  # the server's default max_payload
RETRY_S = 120.0  # how long a server restart may take
ACK_WAIT_S = 10.0


class Publisher:
    """Publishes ``TX_DTYPE`` rows to ``tallyio.tx.<partition>`` in batch messages.

    Building one starts a new run: the ``TALLYIO_TX`` stream is created afresh (file storage,
    everything kept: a partition taken over is replayed from its start), the opportunity and
    dead-letter streams are emptied, and ``tallyio.meta`` gets the feed's ``metadata`` arrays
    (its pools table) and ``partitions``, as an ``.npz``. ``publish(rows)`` routes each row to
    its token pair's partition (``wire.partition_of``), keeping feed order within a partition,
    and sends a message whenever a partition holds ``batch`` rows; ``end()`` sends what is left
    and one end marker per partition, and waits until the server stored every message.

    Raises ``ConfigError`` for a bad ``partitions`` / ``batch``, ``NatsError`` when the server
    cannot be reached or refuses a message.
    """

    def __init__(self, url: str, partitions: int, *, metadata: dict | None = None,
                 batch: int = 256):
        if isinstance(partitions, bool) or not isinstance(partitions, int) \
                or not 1 <= partitions <= MAX_PARTITIONS:
            raise ConfigError(f"partitions must be an integer in [1, {MAX_PARTITIONS}], got "
                              f"{partitions!r}")
        most = (MAX_MESSAGE_BYTES - HEADER.size) // TX_DTYPE.itemsize
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= most:
            raise ConfigError(f"batch must be an integer in [1, {most}] rows (a message holds at "
                              f"most {MAX_MESSAGE_BYTES} bytes), got {batch!r}")
        self.partitions, self.batch = partitions, batch
        self.lt = LoopThread(url, name="tallyio-nats-publish")
        self.rows = self.messages = 0
        self._seq = [0] * partitions
        self._held: list[list[np.ndarray]] = [[] for _ in range(partitions)]
        self._held_rows = [0] * partitions
        self._inflight: list = []      # sends submitted to the loop
        self._unconfirmed: list = []   # (message, ack future) sent, in order, not yet confirmed
        self._disconnects = 0
        self.resent = 0
        # truth_* arrays name rows by their index in the whole feed: no shard sees that index
        meta = {k: np.asarray(v) for k, v in (metadata or {}).items()
                if isinstance(v, np.ndarray) and not k.startswith("truth_")}
        meta["partitions"] = np.array(partitions)
        # which publication this is: a source that finds another one mid-run stops, rather than
        # mix two feeds' rows
        self.run_id = uuid.uuid4().hex
        meta["run_id"] = np.array(self.run_id)
        buf = io.BytesIO()
        np.savez(buf, **meta)
        try:
            self.lt.call(self._setup(buf.getvalue()))
        except BaseException:
            self.lt.stop()
            raise

    async def _setup(self, meta: bytes) -> None:
        self._send_lock = asyncio.Lock()
        js = self.lt.js
        await ensure_stream(js, TX_STREAM, [TX_SUBJECT + ".*", META_SUBJECT], fresh=True)
        await ensure_result_streams(js, fresh=True)
        await js.publish(META_SUBJECT, meta)

    def publish(self, rows: np.ndarray) -> None:
        """Route ``rows`` to their partitions; send every full batch."""
        rows = np.asarray(rows)
        if rows.dtype != TX_DTYPE:
            raise ConfigError(f"rows must be TX_DTYPE, got dtype {rows.dtype}")
        rows = rows.reshape(-1)
        if not len(rows):
            return
        self.rows += len(rows)
        part = partition_of(rows, self.partitions)
        for p in np.unique(part).tolist():
            self._held[p].append(rows[part == p])  # a boolean mask keeps feed order
            self._held_rows[p] += int((part == p).sum())
            if self._held_rows[p] >= self.batch:
                self._send(p, full_only=True)

    def _send(self, p: int, *, full_only: bool) -> None:
        rows = np.concatenate(self._held[p])
        n = len(rows) - len(rows) % self.batch if full_only else len(rows)
        for i in range(0, n, self.batch):
            self._message(p, encode(rows[i:i + self.batch], p, self._next(p)))
        self._held[p] = [rows[n:]] if n < len(rows) else []
        self._held_rows[p] = len(rows) - n

    def _next(self, p: int) -> int:
        self._seq[p] += 1
        return self._seq[p]

    def _message(self, p: int, payload: bytes) -> None:
        self.messages += 1
        # the id makes a re-send harmless: JetStream drops a copy of a message it stored
        msg = (f"{TX_SUBJECT}.{p}", payload,
               {SENT_HEADER: str(time.time_ns()), "Nats-Msg-Id": f"{p}.{self._seq[p]}"})
        self._inflight.append(self.lt.submit(self._send_async(msg)))
        if len(self._inflight) >= 512:  # bound what is in flight
            self.wait()

    async def _send_async(self, msg) -> None:
        # Sends start in call order (the loop runs them first in, first out) and the lock, which
        # is fair, keeps that order while they wait for a reconnection (nothing is sent then,
        # not buffered). After a reconnection, every message not yet confirmed is sent again,
        # in order, before any new one: what the server lost with the old connection is a
        # suffix of what was sent, so each partition's messages stay in the order they were
        # made, in the stream too.
        async with self._send_lock:
            await self._connected()
            if self.lt.disconnects != self._disconnects:
                self._disconnects = self.lt.disconnects
                await self._resend_unconfirmed()
            subject, payload, headers = msg
            ack = await self.lt.js.publish_async(subject, payload, headers=dict(headers))
            self._unconfirmed.append((msg, ack))

    async def _connected(self) -> None:
        deadline = time.monotonic() + RETRY_S
        while not self.lt.nc.is_connected:
            if self.lt.nc.is_closed or time.monotonic() > deadline:
                raise NatsError(f"{self.lt.url}: not connected")
            await asyncio.sleep(0.05)

    async def _resend_unconfirmed(self) -> None:
        """Send again, one at a time and confirmed, every message from the first one without
        its acknowledgement on."""
        pending = self._unconfirmed
        first = next((i for i, (_, ack) in enumerate(pending)
                      if not ack.done() or ack.cancelled() or ack.exception() is not None),
                     len(pending))
        for msg, ack in pending[first:]:
            ack.cancel()
            await self._resend(msg)
        self._unconfirmed = []

    async def _confirm(self) -> None:
        async with self._send_lock:
            for i, (_, ack) in enumerate(self._unconfirmed):
                try:
                    await asyncio.wait_for(ack, ACK_WAIT_S)
                except Exception:
                    # lost without a disconnection seen: send it and every later one again
                    self._unconfirmed = self._unconfirmed[i:]
                    await self._resend_unconfirmed()
                    return
            self._unconfirmed = []

    async def _resend(self, msg) -> None:
        deadline = time.monotonic() + RETRY_S
        subject, payload, headers = msg
        while True:
            await self._connected()
            try:
                await self.lt.js.publish(subject, payload, timeout=ACK_WAIT_S,
                                         headers=dict(headers))
                self.resent += 1
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    raise NatsError(f"{self.lt.url}: a message was not stored: {e!r}") from None
                await asyncio.sleep(0.25)

    def wait(self) -> None:
        """Wait until the server stored every message sent so far, sending again what a server
        restart lost; ``NatsError`` after ``RETRY_S`` seconds without success."""
        inflight, self._inflight = self._inflight, []
        for f in inflight:
            f.result(timeout=RETRY_S + 60)  # sent (or failed: NatsError)
        self.lt.call(self._confirm(), timeout=None)

    def end(self) -> dict[str, Any]:
        """Send the rest and each partition's end marker; wait until all are stored. Returns
        ``{"rows", "messages", "partitions"}``."""
        for p in range(self.partitions):
            if self._held_rows[p]:
                self._send(p, full_only=False)
            self._message(p, encode(np.zeros(0, TX_DTYPE), p, self._next(p), end=True))
        self.wait()
        return {"rows": self.rows, "messages": self.messages, "partitions": self.partitions}

    def close(self) -> None:
        self.lt.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False



def feed_source(feed=None):
    """The TallyIO source a feed path names (how ``tallyio run --feed`` finds it: the
    registered sources' ``accepts``, then the built-in file formats); the bundled sample when
    ``feed`` is None."""
    from tallyio.engine import Engine
    return Engine().open_source(feed)


def publish_feed(url: str, feed=None, *, partitions: int, batch: int = 256,
                 limit: int | None = None, chunks: Iterable[np.ndarray] | None = None) -> dict:
    """Publish a whole feed (``feed``: a path or URL any TallyIO source accepts, default the
    bundled sample; or ``chunks`` directly) and its end markers. ``limit``: the first rows
    only. Returns ``Publisher.end()``'s summary with ``seconds``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    source = feed_source(feed) if chunks is None else None
    metadata = getattr(source, "metadata", {}) or {}
    t0 = time.perf_counter()
    with Publisher(url, partitions, metadata=metadata, batch=batch) as pub:
        left = limit
        for chunk in (chunks if chunks is not None else source):
            chunk = np.asarray(chunk).reshape(-1)
            if left is not None:
                chunk = chunk[:left]
                left -= len(chunk)
            pub.publish(chunk)
            if left == 0:
                break
        out = pub.end()
    close = getattr(source, "close", None)
    if close is not None:
        close()
    out["seconds"] = time.perf_counter() - t0
    return out
