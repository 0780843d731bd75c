"""TallyIO plugin: the ``nats`` source (``nats://`` URLs) and the ``nats`` opportunity sink
(entry point ``tallyio:nats``)."""
from __future__ import annotations

from tallyio.hookspecs import hookimpl


@hookimpl
def register_sources(register):
    from tallyio_nats.source import NatsSource
    register("nats", NatsSource)


@hookimpl
def register_sinks(register):
    from tallyio_nats.sink import NatsSink
    register("nats", NatsSink)
