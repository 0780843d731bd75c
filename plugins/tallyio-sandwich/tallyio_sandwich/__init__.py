"""Sandwich detection for TallyIO: opportunities in pending swaps (``processor``), completed
sandwiches in mined blocks (``inspect``)."""
from tallyio_sandwich.amm import Sandwich, best_sandwich, max_frontrun, sandwich_gross
from tallyio_sandwich.processor import SandwichProcessor

__all__ = ["Sandwich", "SandwichProcessor", "best_sandwich", "max_frontrun", "sandwich_gross"]
