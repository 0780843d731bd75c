"""Built-in opportunity sinks: keep in memory, append JSON lines, or log.

A bad option (a ``jsonl`` sink without a ``path``, a path that cannot be opened for appending, a
``limit`` that is not a non-negative int) is a ``ConfigError`` naming the option and the value,
raised when the engine builds its sinks, before any row is read.
"""
from __future__ import annotations

import json
import logging
import os
import threading

from tallyio.errors import ConfigError

log = logging.getLogger("tallyio.opportunities")


class MemorySink:
    """Keeps every opportunity in ``items`` (the engine's report reads them from here)."""

    def __init__(self, limit: int = 1_000_000):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"memory sink: limit must be an int >= 0, got {limit!r}")
        self.items: list = []
        self.limit = limit
        self.dropped = 0  # counted, never silent: the report shows how many did not fit

    def emit(self, opportunities) -> None:
        room = self.limit - len(self.items)
        self.items.extend(opportunities[:max(room, 0)])
        self.dropped += max(len(opportunities) - max(room, 0), 0)

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
