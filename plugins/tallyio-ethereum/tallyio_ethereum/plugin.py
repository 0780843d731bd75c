"""TallyIO plugin (entry point ``tallyio:ethereum``): the ``ethereum`` live source and the
``bundle`` opportunity sink, which takes its victims from the run's source."""
from __future__ import annotations

from tallyio.hookspecs import hookimpl

from tallyio_ethereum.live import EthereumSource
from tallyio_ethereum.sink import BundleSink


@hookimpl
def register_sources(register):
    register("ethereum", EthereumSource)


@hookimpl
def register_sinks(register):
    register("bundle", BundleSink)


@hookimpl
def engine_started(engine):
    for _, sink in getattr(engine, "sinks", ()):
        if isinstance(sink, BundleSink):
            sink.attach(engine.source)
