"""TallyIO plugin (entry point ``tallyio: arbitrage``): registers the ``arbitrage`` processor.

The engine builds it with the options of the config's ``[processors.arbitrage]`` table
(``pools``, ``gas_units``, ``min_profit``, ``max_scan``, ``weth``, ``prices``).
"""
from __future__ import annotations

from tallyio.hookspecs import hookimpl

from tallyio_arbitrage.processor import ArbitrageProcessor


@hookimpl
def register_processors(register):
    register("arbitrage", ArbitrageProcessor.from_options)
