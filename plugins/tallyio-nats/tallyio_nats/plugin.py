"""TallyIO plugin: the ``nats`` source (``nats://`` URLs) and the ``nats`` opportunity sink
(entry point ``tallyio:nats``).

The NATS client is imported when the hooks run, not when the plugin loads; without it (an
environment that installed this package with ``--no-deps``) the plugin registers nothing and says
so once, and every other source and sink still works.
"""
from __future__ import annotations

import logging

from tallyio.hookspecs import hookimpl

log = logging.getLogger(__name__)
_told = False


def _modules():
    global _told
    try:
        from tallyio_nats.sink import NatsSink
        from tallyio_nats.source import NatsSource
    except ImportError as e:
        if not _told:
            _told = True
            log.warning("tallyio-nats: nats:// sources and the nats sink are unavailable: %s "
                        "(pip install nats-py)", e)
        return None
    return NatsSource, NatsSink


@hookimpl
def register_sources(register):
    mods = _modules()
    if mods is not None:
        register("nats", mods[0])


@hookimpl
def register_sinks(register):
    mods = _modules()
    if mods is not None:
        register("nats", mods[1])
