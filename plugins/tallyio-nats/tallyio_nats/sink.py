"""A TallyIO Sink publishing opportunities as JSON to ``tallyio.opportunities`` (JetStream)."""
from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import nats

from tallyio.errors import ConfigError
from tallyio_nats._loop import LoopThread, ensure_result_streams
from tallyio_nats.wire import OPS_SUBJECT

log = logging.getLogger(__name__)

_END = object()
# what a server restart looks like to a publisher: worth trying again
_RETRIED = (nats.errors.TimeoutError, nats.errors.NoRespondersError,
            nats.js.errors.NoStreamResponseError, nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError)


class NatsSink:
    """Publishes each opportunity as one JSON message: ``Opportunity.to_dict()`` with ``shard``
    (the engine's partitions) and ``tx``, the ``[transaction hash, swap index]`` of each of its
    ``tx_ids`` (the rows' keys, the same in every shard; ``tallyio gather`` deduplicates by
    them). ``tx`` is known when a ``nats`` source feeds the engine (it binds the sink); with
    another source it is empty and ``tx_ids`` stay engine-local.

    ``url``: ``nats://HOST:PORT`` (its own connection); left out when the nats source adds the
    sink on its own connection. ``emit`` runs on the engine thread and only queues: one task on
    the loop publishes in order, waits for each JetStream ack, and retries through a server
    restart for up to ``retry_s`` seconds; ``close`` waits until everything queued is stored.
    Publishes that still fail are counted in ``errors``.
    """

    def __init__(self, url: str | None = None, *, shard: str = "", retry_s: float = 120.0,
                 _loop: LoopThread | None = None):
        if _loop is None and url is None:
            raise ConfigError("[sinks] options.nats: url (nats://HOST:PORT) is required")
        if isinstance(retry_s, bool) or not isinstance(retry_s, (int, float)) or retry_s <= 0:
            raise ConfigError(f"retry_s must be a positive number of seconds, got {retry_s!r}")
        self._own = _loop is None
        self.lt = LoopThread(url, name="tallyio-nats-sink") if _loop is None else _loop
        if self._own:
            self.lt.call(ensure_result_streams(self.lt.js))
        self.shard = shard
        self.retry_s = float(retry_s)
        self.keys = None
        self.published = 0
        self.errors: Counter = Counter()
        self._queue: asyncio.Queue = self.lt.call(_make_queue())
        self._worker = self.lt.submit(self._publish_all())
        self._closed = False

    def bind(self, keys, shard: str) -> None:
        """Called by the nats source: its row keys (``TxKeys``) and shard name."""
        self.keys = keys
        self.shard = shard

    def emit(self, opportunities) -> None:
        keys = self.keys
        for o in opportunities:
            d = o.to_dict()
            d["shard"] = self.shard
            d["tx"] = [list(k) if (k := keys.key(i)) is not None else None
                       for i in o.tx_ids] if keys is not None else []
            payload = json.dumps(d, default=str).encode()
            self.lt.loop.call_soon_threadsafe(self._queue.put_nowait, payload)

    async def _publish_all(self) -> None:
        js = self.lt.js
        while True:
            payload = await self._queue.get()
            if payload is _END:
                return
            deadline = self.lt.loop.time() + self.retry_s
            while True:
                try:
                    await js.publish(OPS_SUBJECT, payload, timeout=5)
                    self.published += 1
                    break
                except _RETRIED as e:
                    if self.lt.loop.time() >= deadline or self.lt.nc.is_closed:
                        self.errors[type(e).__name__] += 1
                        log.error("nats sink: opportunity not published: %r", e)
                        break
                    await asyncio.sleep(0.25)  # the server is restarting: try again
                except Exception as e:
                    self.errors[type(e).__name__] += 1
                    log.error("nats sink: opportunity not published: %r", e)
                    break

    def close(self) -> None:
        """Wait until every queued opportunity is stored (or given up), then disconnect when the
        connection is the sink's own."""
        if self._closed:
            return
        self._closed = True
        self.lt.loop.call_soon_threadsafe(self._queue.put_nowait, _END)
        try:
            self._worker.result(timeout=self.retry_s + 30)
        finally:
            if self._own:
                self.lt.stop()


async def _make_queue() -> asyncio.Queue:
    return asyncio.Queue()
