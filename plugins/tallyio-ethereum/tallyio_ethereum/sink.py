"""An opportunity sink a bot can act on: one JSON line per opportunity, each batch in one write.

``[sinks] names = ["bundle"]`` with ``options = { bundle = { path = "bundles.jsonl" } }``. Each
line is a JSON object:

* ``strategy``, ``kind``, ``profit`` (decimal string, exact), ``profit_token``;
* ``pools`` (0x addresses, in the order the strategy trades them) and ``tokens`` (every token the
  opportunity names: the profit token, the victim's in/out, an arbitrage's middle token);
* ``amounts``: every integer of the strategy's details (``frontrun_in``, ``backrun_out``,
  ``gas_cost``...) as a decimal string: amounts exceed 2**53 and JSON readers round big numbers;
* ``victim``: the pending transaction the opportunity hangs on (``tx_hash``, ``sender``, ``nonce``,
  ``gas_price``, ``pool``, ``token_in``, ``token_out``, ``amount_in``, ``amount_out_min``), or null
  when the source cannot say (``tx_ids`` lists the engine's row ids either way);
* ``target_block``: the block a bundle must land in: the one after the latest head the source saw
  for a pending victim (the row's own block for a mined one), or null when no head was seen;
* ``details``: the strategy's other (non-integer) details; ``bundle``: what the builder returned.

Victims come from the source: a source with ``row(row_id)`` (the ``ethereum`` live source keeps
its last ``recent_rows`` rows) and ``head`` (the latest block number). The plugin's
``engine_started`` hook hands the engine's source to every ``bundle`` sink.

Atomic per batch: the lines of one ``emit`` call (one engine batch) are joined and written with
one ``write(2)`` to a descriptor opened ``O_APPEND``, so a batch is never interleaved with another
writer's and a reader that acts only on complete lines (ending in a newline) never sees a torn
one. (A snapshot file replaced with tmp + rename was the alternative: it suits "the current set",
not a stream a bot tails.) A write the kernel cut short is finished by further writes and
counted in ``errors["partial_write"]``.

Bundle builder hook: ``builder`` is a callable, or a ``"module:function"`` string for the config,
called with each line's dict before it is written; what it returns (JSON-serializable, e.g. the
signed transactions of a bundle) is written under ``bundle``. A builder that raises or returns
something JSON cannot hold is counted in ``errors["builder_failed"]`` and the line is written
without ``bundle``: the builder is plugin code, and never stops the sink.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from collections import Counter
from typing import Any, Callable

from tallyio.errors import ConfigError
from tallyio.record import u256_to_int

log = logging.getLogger(__name__)

__all__ = ["BundleSink", "victim"]


def _hex(a) -> str:
    return "0x" + bytes(a).hex()


def victim(row) -> dict[str, Any]:
    """The fields of a ``TX_DTYPE`` row a bot needs to place a bundle around its transaction."""
    return {"tx_hash": _hex(row["tx_hash"]), "sender": _hex(row["sender"]),
            "nonce": int(row["nonce"]), "gas_price": str(int(row["gas_price"])),
            "pool": _hex(row["pool"]), "token_in": _hex(row["token_in"]),
            "token_out": _hex(row["token_out"]), "amount_in": str(u256_to_int(row["amount_in"])),
            "amount_out_min": str(u256_to_int(row["amount_out_min"])),
            "block": int(row["block"])}


def _resolve(builder) -> Callable | None:
    if builder is None or callable(builder):
        return builder
    if not isinstance(builder, str) or builder.count(":") != 1:
        raise ConfigError(f"bundle sink: builder must be a callable or \"module:function\", "
                          f"got {builder!r}")
    module, name = builder.split(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"bundle sink: builder {builder!r} cannot be imported: {e}") from None
    if not callable(fn):
        raise ConfigError(f"bundle sink: builder {builder!r} is not callable")
    return fn


class BundleSink:
    """JSON lines of opportunities with what a bot needs to act (see the module doc)."""

    def __init__(self, path: str | os.PathLike | None = None, *, builder=None):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"bundle sink: path must name a file (in the config: [sinks] "
                              f"options = {{ bundle = {{ path = \"bundles.jsonl\" }} }}), got {path!r}")
        self.path = os.fspath(path)
        self.builder = _resolve(builder)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
        except OSError as e:
            raise ConfigError(f"bundle sink: path {self.path!r} cannot be opened for appending: "
                              f"{e.strerror or e}") from None
        self.source = None
        self.errors: Counter = Counter()
        self.written = 0  # lines
        self._lock = threading.Lock()

    def attach(self, source) -> None:
        """Take victims and heads from ``source`` (see the module doc)."""
        self.source = source

    def record(self, o) -> dict[str, Any]:
        """The line of one ``Opportunity``, as a dict (before the builder)."""
        ints = {k: str(v) for k, v in o.details.items()
                if isinstance(v, int) and not isinstance(v, bool)}
        rest = {k: v for k, v in o.details.items() if k not in ints}
        row_of = getattr(self.source, "row", None)
        rows = [r for r in (row_of(i) for i in o.tx_ids) if r is not None] if row_of else []
        v = victim(rows[0]) if rows else None
        tokens = [o.profit_token]
        if v is not None:
            tokens += [v["token_in"], v["token_out"]]
        if isinstance(o.details.get("token_mid"), str):
            tokens.append(o.details["token_mid"])
        head = getattr(self.source, "head", 0) or 0
        if v is not None and v["block"]:
            target = v["block"]
        else:
            target = head + 1 if head else None
        return {"strategy": o.strategy, "kind": o.kind, "profit": str(o.profit),
                "profit_token": o.profit_token, "pools": list(o.pools),
                "tokens": list(dict.fromkeys(tokens)), "amounts": ints, "victim": v,
                "target_block": target, "tx_ids": list(o.tx_ids), "details": rest}

    def _line(self, o) -> bytes:
        rec = self.record(o)
        if self.builder is not None:
            try:
                bundle = self.builder(dict(rec))
                if bundle is not None:
                    json.dumps(bundle)  # what cannot be written is the builder's fault
                    rec["bundle"] = bundle
            except Exception:
                self.errors["builder_failed"] += 1
                log.exception("bundle sink: the builder failed on %s", rec["kind"])
        return (json.dumps(rec, default=str, separators=(",", ":")) + "\n").encode()

    def emit(self, opportunities) -> None:
        data = b"".join(self._line(o) for o in opportunities)
        with self._lock:
            view = memoryview(data)
            n = os.write(self._fd, view)
            if n < len(data):
                self.errors["partial_write"] += 1
                while n < len(data):
                    n += os.write(self._fd, view[n:])
            self.written += len(opportunities)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
