"""Duplicate suppression (compiled): see ``tallyio._core.dedup``."""
from tallyio._core.dedup import Dedup

__all__ = ["Dedup"]
