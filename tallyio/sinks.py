"""Built-in opportunity sinks: keep in memory, append JSON lines, or log.

A bad option (a ``jsonl`` sink without a ``path``, a path that cannot be opened for appending, a
``limit`` that is not a non-negative int) is a ``ConfigError`` naming the option and the value,
raised when the engine builds its sinks, before any row is read.
"""
from __future__ import annotations

import json
import logging
import os
from collections import deque
import threading

from tallyio.errors import ConfigError

log = logging.getLogger("tallyio.opportunities")


class MemorySink:
    """Keeps the latest ``limit`` opportunities in ``items`` (oldest first) for a program that
    reads them in-process; older ones are dropped and counted in ``dropped``, so a long run's
    memory stays flat (the report keeps its own latest ``[engine] keep_opportunities``)."""

    def __init__(self, limit: int = 10_000):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"memory sink: limit must be an int >= 0, got {limit!r}")
        self.items: deque = deque(maxlen=limit)
        self.limit = limit
        self.dropped = 0  # counted, never silent

    def emit(self, opportunities) -> None:
        n = len(opportunities)
        self.dropped += max(0, len(self.items) + n - self.limit)
        self.items.extend(opportunities)

    def close(self) -> None:
        pass


class JsonlSink:
    """Appends one JSON object per opportunity to ``path`` (opened when the sink is built)."""

    def __init__(self, path: str | os.PathLike | None = None):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"jsonl sink: path must name a file (in the config: [sinks] "
                              f"options = {{ jsonl = {{ path = \"out.jsonl\" }} }}), got {path!r}")
        self.path = os.fspath(path)
        try:
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"jsonl sink: path {self.path!r} cannot be opened for appending: "
                              f"{e.strerror or e}") from None
        self._lock = threading.Lock()

    def emit(self, opportunities) -> None:
        with self._lock:
            for o in opportunities:
                self._f.write(json.dumps(o.to_dict(), default=str) + "\n")
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()


class LogSink:
    """Logs each opportunity at INFO on the ``tallyio.opportunities`` logger."""

    def emit(self, opportunities) -> None:
        for o in opportunities:
            log.info("%s %s profit=%d token=%s pools=%s", o.strategy, o.kind, o.profit,
                     o.profit_token, ",".join(o.pools))

    def close(self) -> None:
        pass
