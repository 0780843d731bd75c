"""TallyIO: a low-latency transaction-processing engine with a compiled, GIL-free core."""
from tallyio._core.batch import BatchDrain
from tallyio._core.clock import now_ns
from tallyio._core.hist import LatencyHistogram
from tallyio._core.ring import ObjectRing, Ring
from tallyio.errors import RingClosedError, TallyIOError

__version__ = "0.1.0"

__all__ = [
    "BatchDrain",
    "LatencyHistogram",
    "ObjectRing",
    "Ring",
    "RingClosedError",
    "TallyIOError",
    "now_ns",
]
