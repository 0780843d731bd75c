"""TallyIO: a low-latency transaction-processing engine with a compiled, GIL-free core."""
from tallyio._core.batch import BatchDrain
from tallyio._core.cache import StateCache
from tallyio._core.clock import now_ns, wait_until
from tallyio._core.hist import LatencyHistogram
from tallyio._core.pool import Block, MemoryPool
from tallyio._core.prefetch import PrefetchingIterator, gather
from tallyio._core.ring import ObjectRing, Ring
from tallyio.config import Config, load_config
from tallyio.engine import Engine
from tallyio.errors import (BatchTimeoutError, BlockReleasedError, BufferFullError,
                            CircuitOpenError, ConfigError, OptimizationUnavailableError,
                            PluginError, PoolClosedError, PoolExhaustedError, RingClosedError,
                            TallyIOError)
from tallyio.hookspecs import hookimpl
from tallyio.opportunity import Opportunity
from tallyio.record import TX_DTYPE
from tallyio.report import Report
from tallyio.resilience.batch import AsyncBatchProcessor, BatchProcessor
from tallyio.resilience.breaker import AdaptiveThreshold, CircuitBreaker, StaticThreshold

from tallyio import simd  # noqa: E402  (tallyio.simd.hash_batch, ...)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveThreshold",
    "AsyncBatchProcessor",
    "BatchDrain",
    "BatchProcessor",
    "Block",
    "BlockReleasedError",
    "BatchTimeoutError",
    "BufferFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Config",
    "ConfigError",
    "Engine",
    "LatencyHistogram",
    "MemoryPool",
    "ObjectRing",
    "OptimizationUnavailableError",
    "Opportunity",
    "PrefetchingIterator",
    "PluginError",
    "PoolClosedError",
    "PoolExhaustedError",
    "Report",
    "StateCache",
    "StaticThreshold",
    "Ring",
    "RingClosedError",
    "TX_DTYPE",
    "TallyIOError",
    "gather",
    "hookimpl",
    "load_config",
    "now_ns",
    "simd",
    "wait_until",
]
