"""Sandwich detection for TallyIO: opportunities in pending swaps (``processor``: the compiled
screen over the engine's pool book, ``tallyio.amm``), completed sandwiches in mined blocks
(``inspect``)."""
from tallyio_sandwich.processor import SandwichProcessor

__all__ = ["SandwichProcessor"]
