"""TallyIO plugin (entry point ``tallyio: sandwich``): registers the ``sandwich`` processor.

The engine builds it with the options of the config's ``[processors.sandwich]`` table
(``pools``, ``gas_units``, ``min_profit``, ``weth``, ``prices``).
"""
from __future__ import annotations

from tallyio.hookspecs import hookimpl

from tallyio_sandwich.processor import SandwichProcessor


@hookimpl
def register_processors(register):
    register("sandwich", SandwichProcessor.from_options)
