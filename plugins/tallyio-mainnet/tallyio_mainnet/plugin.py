"""TallyIO plugin: registers the ``mainnet-trace`` feed source (entry point ``tallyio:mainnet``)."""
from __future__ import annotations

from tallyio.hookspecs import hookimpl

from tallyio_mainnet.source import MainnetTraceSource


@hookimpl
def register_sources(register):
    register("mainnet-trace", MainnetTraceSource)
