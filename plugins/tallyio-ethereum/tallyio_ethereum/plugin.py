"""TallyIO plugin (entry point ``tallyio:ethereum``): the ``ethereum`` live source."""
from __future__ import annotations

from tallyio.hookspecs import hookimpl

from tallyio_ethereum.live import EthereumSource


@hookimpl
def register_sources(register):
    register("ethereum", EthereumSource)
