"""Deployment config: TOML, validated on load, every optimization a switch.

``load_config(path)`` reads a TOML file, applies environment overrides, fills defaults and validates:
an unknown key, a wrong type or an out-of-range value is a ``ConfigError`` naming the key and the
file. ``Config`` is a plain nested dict (``cfg["batching"]["batch_size"]``) with a ``source``
attribute saying where it came from.

Environment overrides: ``TALLYIO__<SECTION>__<KEY>=<TOML value>`` sets ``[section] key``, e.g.
``TALLYIO__BATCHING__BATCH_SIZE=512`` or ``TALLYIO__OPTIMIZATIONS__SIMD='"avx2"'`` (the value is
parsed as TOML, falling back to a plain string), for deployments that template config.

Sizes that allocate memory up front have a sane upper bound, so a typo fails here, naming the key,
rather than as a ``MemoryError`` at start: ``[engine] ring_capacity`` at most ``2**24`` rows
(``MAX_RING_CAPACITY``; 5.5 GiB of 352-byte ``TX_DTYPE`` records) and ``dedup_capacity`` at most
``2**24`` identities (``MAX_DEDUP_CAPACITY``; about 0.6 GiB).
"""
from __future__ import annotations

import copy
import math
import os
import sys
from typing import Any, Callable

from tallyio.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

SWITCH = ("auto", "on", "off")
SIMD_LEVELS = ("auto", "on", "off", "scalar", "avx2", "avx512")
OPTIMIZATIONS = ("circuit_breaker", "batching", "cpu_affinity", "realtime_priority", "numa",
                 "memory_pool", "prefetch", "simd", "allocator")


# the most rows of the ingest ring and the most identities dedup remembers (see the docstring)
MAX_RING_CAPACITY = 1 << 24
MAX_DEDUP_CAPACITY = 1 << 24


def _pow2(v):
    return v >= 2 and v & (v - 1) == 0


# section -> key -> (types, default, check or None, what the check wants)
Spec = tuple[tuple[type, ...], Any, Callable[[Any], bool] | None, str]
_NUM = (int, float)
SCHEMA: dict[str, dict[str, Spec]] = {
    "engine": {
        "ring_capacity": ((int,), 1 << 16, lambda v: _pow2(v) and v <= MAX_RING_CAPACITY,
                          "a power of two in [2, 2**24]"),
        "ring_kind": ((str,), "mpmc", lambda v: v in ("spsc", "mpmc"), "'spsc' or 'mpmc'"),
        "ingest_chunk": ((int,), 1024, lambda v: 1 <= v <= 1 << 20, "in [1, 2**20]"),
        "on_full": ((str,), "block", lambda v: v in ("block", "drop"), "'block' or 'drop'"),
        "observer_sample_every": ((int,), 1000, lambda v: v >= 0, ">= 0 (0: never)"),
        "dedup": ((bool,), True, None, "true or false"),
        "dedup_capacity": ((int,), 1 << 20, lambda v: 1 <= v <= MAX_DEDUP_CAPACITY,
                           "in [1, 2**24]"),
        "mode": ((str,), "auto", lambda v: v in ("auto", "live", "replay"),
                 "'auto' (by source), 'live' or 'replay'"),
        "keep_opportunities": ((int,), 10_000, lambda v: 0 <= v <= 1 << 24, "in [0, 2**24]"),
        "gc_freeze": ((bool,), True, None, "true or false"),
        "pools": ((str,), "", None, "a path to a pools table (.npz); empty: the feed's own"),
    },
    "batching": {
        "batch_size": ((int,), 256, lambda v: v >= 1, ">= 1"),
        "batch_timeout": (_NUM, 0.0, lambda v: 0 <= v <= 60, "in [0, 60] seconds"),
        "idle_timeout": (_NUM, 1e-3, lambda v: 0 <= v <= 60, "in [0, 60] seconds"),
        "max_age": (_NUM, 0.010, lambda v: 0 < v <= 3600, "in (0, 3600] seconds"),
        "spin": (_NUM, 50e-6, lambda v: 0 <= v <= 1, "in [0, 1] seconds"),
        "sleep": (_NUM, 0.0, lambda v: 0 <= v <= 0.1, "in [0, 0.1] seconds"),
        "backoff": (_NUM, 1e-3, lambda v: 0 <= v <= 1, "in [0, 1] seconds"),
        "park": ((bool,), True, None, "true or false"),
    },
    "breaker": {
        # per batch: a batch of a few hundred rows through Python strategies takes ~0.5 ms
        "latency_threshold": (_NUM, 0.005, lambda v: v > 0, "> 0 seconds"),
        "failure_threshold": ((int,), 5, lambda v: v >= 1, ">= 1"),
        "success_threshold": ((int,), 3, lambda v: v >= 1, ">= 1"),
        "timeout": (_NUM, 5.0, lambda v: v > 0, "> 0 seconds"),
        "latency_violation_threshold": ((int,), 5, lambda v: v >= 1, ">= 1"),
        # what a slow call is measured in: "cpu", the processor's CPU time on the engine thread
        # (contention delays rows but does not trip the breaker), or "wall", elapsed time (a
        # processor that blocks on I/O is slow only by the wall clock)
        "latency_clock": ((str,), "cpu", lambda v: v in ("cpu", "wall"), "'cpu' or 'wall'"),
        "policy": ((str,), "static", None, "a registered threshold policy name"),
        "policy_options": ((dict,), {}, None, "a table"),
    },
    "plugins": {
        "modules": ((list,), [], lambda v: all(isinstance(m, str) for m in v), "a list of module names"),
        "entry_points": ((bool,), True, None, "true or false"),
        "processors": ((list,), [], lambda v: all(isinstance(m, str) for m in v),
                       "a list of processor names (empty: all registered)"),
    },
    "processors": {},  # [processors.<name>] tables: options for each processor factory, free-form
    "source": {
        "kind": ((str,), "auto", None, "a registered source name, or 'auto'"),
        "path": ((str,), "", None, "a path"),
        "speed": (_NUM, 0.0, lambda v: 0 <= v <= 1e6,
                  ">= 0 (0: as fast as possible, 1: recorded speed, 2: twice as fast)"),
        "rate": (_NUM, 0.0, lambda v: 0 <= v <= 1e8, "in [0, 1e8] tx/s (0: the feed's own timing)"),
        "options": ((dict,), {}, None, "a table"),
    },
    "sinks": {
        "names": ((list,), [], lambda v: all(isinstance(m, str) for m in v), "a list of sink names"),
        "options": ((dict,), {}, lambda v: all(isinstance(t, dict) for t in v.values()),
                    "a table of per-sink tables ({ jsonl = { path = \"out.jsonl\" } })"),
    },
    "optimizations": {
        name: ((str,), "off" if name == "realtime_priority" else "auto",
               (lambda v: v in SIMD_LEVELS) if name == "simd" else (lambda v: v in SWITCH),
               "one of " + ", ".join(SIMD_LEVELS if name == "simd" else SWITCH))
        for name in OPTIMIZATIONS
    },
    "monitoring": {
        "enabled": ((bool,), False, None, "true or false"),
        "address": ((str,), "127.0.0.1", None, "an address to listen on"),
        "port": ((int,), 9464, lambda v: 0 <= v <= 65535, "in [0, 65535]"),
        "interval": (_NUM, 1.0, lambda v: 0.01 <= v <= 3600, "in [0.01, 3600] seconds"),
        "window": (_NUM, 10.0, lambda v: 0.1 <= v <= 3600, "in [0.1, 3600] seconds"),
    },
}


class Config(dict):
    """A validated deployment config: ``{section: {key: value}}``."""

    source: str = "<defaults>"

    def switch(self, name: str) -> str:
        return self["optimizations"][name]


def defaults() -> Config:
    cfg = Config({s: {k: copy.deepcopy(spec[1]) for k, spec in keys.items()}
                  for s, keys in SCHEMA.items()})
    return cfg


def _check(section: str, key: str, value: Any, where: str) -> Any:
    spec = SCHEMA[section].get(key)
    if spec is None:
        known = ", ".join(sorted(SCHEMA[section])) or "none"
        raise ConfigError(f"{where}: unknown key [{section}] {key!r} (known: {known})")
    types, _, ok, wants = spec
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{where}: [{section}] {key} must be {wants}, got {value!r}")
    if not isinstance(value, types):
        tname = "/".join(t.__name__ for t in types)
        raise ConfigError(f"{where}: [{section}] {key} must be of type {tname}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: [{section}] {key} must be finite, got {value!r}")
    if ok is not None and not ok(value):
        raise ConfigError(f"{where}: [{section}] {key} must be {wants}, got {value!r}")
    return value


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def from_dict(data: dict, where: str = "<dict>", env: dict | None = None) -> Config:
    """Validate ``data`` (the parsed TOML) over the defaults; apply ``env`` overrides."""
    cfg = defaults()
    cfg.source = where
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {table!r}")
        if section == "processors":
            for name, opts in table.items():
                if not isinstance(opts, dict):
                    raise ConfigError(f"{where}: [processors.{name}] must be a table, got {opts!r}")
            cfg[section] = copy.deepcopy(table)
            continue
        for key, value in table.items():
            cfg[section][key] = _check(section, key, value, where)
    for var, text in (os.environ if env is None else env).items():
        if not var.startswith("TALLYIO__"):
            continue
        parts = var[len("TALLYIO__"):].lower().split("__")
        if len(parts) != 2 or parts[0] not in SCHEMA or parts[0] == "processors":
            raise ConfigError(f"environment: {var} does not name [section] key "
                              f"(TALLYIO__<SECTION>__<KEY>)")
        section, key = parts
        cfg[section][key] = _check(section, key, _parse_env_value(text), f"environment {var}")
    if cfg["batching"]["batch_size"] > cfg["engine"]["ring_capacity"]:
        raise ConfigError(f"{where}: [batching] batch_size must be <= [engine] ring_capacity "
                          f"({cfg['engine']['ring_capacity']}), got {cfg['batching']['batch_size']}")
    return cfg


def load_config(path: str | os.PathLike | None = None, env: dict | None = None) -> Config:
    """Load and validate a deployment config (``None``: the defaults plus environment overrides)."""
    if path is None:
        return from_dict({}, "<defaults>", env)
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:  # a directory, no permission...
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return from_dict(data, path, env)
