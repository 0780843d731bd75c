"""One asyncio loop in its own thread, holding one NATS connection, for code that is not async.

The engine's threads never run the loop: they hand it coroutines (``call``) or callbacks
(``soon``), so a slow broker never blocks the engine thread.
"""
from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

import nats
from nats.js import api

from tallyio.errors import TallyIOError
from tallyio_nats.wire import (DEAD_STREAM, DEAD_SUBJECT, DONE_SUBJECT, OPS_STREAM, OPS_SUBJECT,
                               server_url)

CONNECT_TIMEOUT_S = 10.0


class NatsError(TallyIOError):
    """The broker cannot be reached or refused a request; the message names the URL."""


class LoopThread:
    """An event loop running in a daemon thread, connected to ``url``.

    ``reconnect`` seconds: how long the client keeps trying to reconnect after losing the server
    (a restart) before giving up.
    """

    def __init__(self, url: str, *, name: str = "tallyio-nats", reconnect: float = 120.0):
        self.url = server_url(url)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.disconnects = 0
        fut = self.submit(self._connect(reconnect))
        try:
            self.nc = fut.result(CONNECT_TIMEOUT_S + 5)
        except Exception as e:
            fut.cancel()
            self.stop()
            raise NatsError(f"cannot connect to {self.url}: {e!r}") from None
        # a request lost in a server restart is retried after this long
        self.js = self.nc.jetstream(timeout=5)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _connect(self, reconnect):
        async def disconnected():
            self.disconnects += 1

        async def error(e):  # logged by the caller's counters; nats-py would print it otherwise
            pass
        # nats-py retries a refused first connection as if it were a reconnect: try the port
        # once first so that a wrong URL fails at once, naming the reason
        u = urlsplit(self.url)
        _, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port),
                                           CONNECT_TIMEOUT_S)
        writer.close()
        wait = 0.25
        return await nats.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S,
                                  allow_reconnect=True, reconnect_time_wait=wait,
                                  max_reconnect_attempts=max(1, int(reconnect / wait)),
                                  disconnected_cb=disconnected, error_cb=error)

    def call(self, coro, timeout: float | None = 60.0):
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        """Run ``coro`` on the loop; a ``concurrent.futures.Future`` of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Flush what was published (acks included), close the connection, cancel what still
        runs on the loop, stop it and join its thread."""
        nc = getattr(self, "nc", None)
        if self.loop.is_running():
            try:
                self.call(self._shutdown(nc), timeout=30)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self, nc) -> None:
        if nc is not None and not nc.is_closed:
            try:
                await nc.flush(timeout=5)
            except Exception:
                pass  # the server is away: what was not flushed comes back as redeliveries
            await nc.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ensure_stream(js, name: str, subjects: list[str], *, fresh: bool = False) -> None:
    """Create stream ``name`` on ``subjects`` with file storage (it survives a server restart);
    ``fresh``: delete it first, with its consumers."""
    if fresh:
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
    cfg = api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE,
                           retention=api.RetentionPolicy.LIMITS)
    try:
        await js.add_stream(cfg)
    except nats.js.errors.BadRequestError:
        await js.update_stream(cfg)


async def ensure_result_streams(js, *, fresh: bool = False) -> None:
    """The opportunity stream (results and done markers) and the dead-letter stream."""
    await ensure_stream(js, OPS_STREAM, [OPS_SUBJECT, DONE_SUBJECT], fresh=fresh)
    await ensure_stream(js, DEAD_STREAM, [DEAD_SUBJECT + ".>"], fresh=fresh)
