"""Built-in opportunity sinks: keep in memory, append JSON lines, or log."""
from __future__ import annotations

import json
import logging
import os
import threading

log = logging.getLogger("tallyio.opportunities")


class MemorySink:
    """Keeps every opportunity in ``items`` (the engine's report reads them from here)."""

    def __init__(self, limit: int = 1_000_000):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
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
    """Appends one JSON object per opportunity to ``path``."""

    def __init__(self, path: str):
        if not path:
            raise ValueError("path must name a file, got ''")
        self.path = os.fspath(path)
        self._f = open(self.path, "a", encoding="utf-8")
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
