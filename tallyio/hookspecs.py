"""The plugin contract: every hook TallyIO calls, when, with what, and what it returns.

Plugins implement these with ``@tallyio.hookimpl``. Hooks are resolved once, when the engine
starts, into plain Python lists; pluggy is never called per item or per batch on the hot path.
Collection hooks receive a ``register`` callback (the datasette / llm style) rather than
returning values, so a plugin can register any number of things and errors name the plugin.

The objects plugins register follow these protocols (duck-typed):

Processor (a strategy)
    ``name: str`` and ``process(batch: numpy.ndarray) -> Iterable[Opportunity] | None``.
    ``batch`` is a read-only, zero-copy view of ``TX_DTYPE`` rows, valid only during the call.
    Optional: ``flush() -> Iterable[Opportunity] | None``, called once when the stream ends (for
    strategies that look across batches, such as per-block sandwich detection);
    ``on_feed(metadata: dict) -> None``, called before ingestion with the source's ``metadata``
    (for example the pool table a synthetic or recorded feed ships with);
    ``on_skipped(batch) -> None``, called instead of ``process`` while the processor's breaker is
    open, so that a stateful strategy can keep its state current without doing its search.
Source
    Iterable of ``numpy.ndarray`` chunks of ``TX_DTYPE``. A chunk's ``arrival_ns`` column holds each
    row's offset in ns from the start of the feed (its recorded or scheduled time); the engine paces
    replay by it and overwrites it with the real arrival stamp at ingest. Optional ``close()`` and
    ``metadata: dict`` (handed to every processor's ``on_feed``).
Sink
    ``emit(opportunities: list[Opportunity]) -> None``, called off the hot path by the engine thread
    after each batch that found something, and optional ``close()``.
ThresholdPolicy
    See ``tallyio.resilience.breaker``: derives a breaker's latency threshold from recent latencies.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "tallyio"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_processors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register strategy processors.

    Called once per engine start, before any item is ingested. Call ``register(name, factory)``
    for each processor; ``factory(**options)`` returns a Processor (see the protocol above), with
    ``options`` from the config's ``[processors.<name>]`` table. Names must be unique across
    plugins. The config's ``[plugins] processors`` list, when set, selects which run. Returns
    nothing.
    """


@hookspec
def register_threshold_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register latency-threshold policies for circuit breakers.

    Called once per engine start. Call ``register(name, factory)``; ``factory(**options)`` returns a
    ThresholdPolicy, with ``options`` from the ``[breaker.policy]`` section of the deployment config
    that selects ``name``. Returns nothing.
    """


@hookspec
def register_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register feed sources.

    Called once per engine start and by ``tallyio run --feed``. Call ``register(name, factory)``;
    ``factory(path=None, **options)`` returns a Source. A source registered for a feed kind is
    picked when the config's ``[source] kind`` names it, or, for ``--feed PATH``, when its factory
    has a ``accepts(path) -> bool`` attribute that returns True. Returns nothing.
    """


@hookspec
def register_sinks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register opportunity sinks.

    Called once per engine start. Call ``register(name, factory)``; ``factory(**options)`` returns
    a Sink. Sinks named in the config's ``[sinks]`` section receive every opportunity. Returns
    nothing.
    """


@hookspec
def engine_started(engine: Any) -> None:
    """Observe an engine that has started: its threads run and it accepts items.

    Called once, from the thread that called ``Engine.start()``. Exceptions are logged and
    counted, never raised to the caller. Returns nothing.
    """


@hookspec
def engine_stopped(engine: Any, report: Any) -> None:
    """Observe an engine that has stopped and drained; ``report`` is its final ``Report``.

    Called once, from the thread that called ``Engine.stop()``. Returns nothing.
    """


@hookspec
def breaker_state_changed(name: str, old: str, new: str) -> None:
    """Observe a circuit breaker changing state (``"closed"``, ``"open"``, ``"half_open"``, ...).

    Called off the hot path by the engine thread, after the batch during which the change
    happened, for each change in order. ``name`` is the breaker's (processor's) name. Returns
    nothing.
    """


@hookspec
def batch_done(stats: dict) -> None:
    """Observe a sample of processed batches.

    Called by the engine thread for one batch in ``observer_sample_every`` (config), never for every
    batch by default, with ``{"size", "expired", "drain_ns", "process_ns", "opportunities"}``.
    Returns nothing.
    """


@hookspec
def metrics_collected(metrics: dict) -> None:
    """Observe the engine's metrics snapshot (``Engine.metrics()``), to forward it elsewhere.

    Called every ``[monitoring] interval`` seconds from the engine's metrics thread, never from
    the hot path, while the engine runs. Exceptions are logged and counted. Returns nothing.
    """
