# Stubs for tallyio._core.ingest (compiled). Cython types in comments.
import numpy as np

from tallyio._core.hist import LatencyHistogram
from tallyio._core.ring import Ring

class Pacer:
    pushed: int      # uint64
    dropped: int     # uint64
    full_waits: int  # uint64
    wakeups: int     # uint64
    def __init__(self, ring: Ring, *, rate: float = ..., speed: float = ..., t0_ns: int | None = ...,
                 offset: int = ..., stride: int = ..., chunk_max: int = ..., tick_ns: int = ...,
                 on_full: str = ...) -> None: ...
    @property
    def t0_ns(self) -> int: ...
    def stop(self) -> None: ...
    @property
    def stopped(self) -> bool: ...
    def run(self, rows: np.ndarray) -> int: ...

def record_since(rows: np.ndarray, t_ns: int, a: LatencyHistogram,
                 b: LatencyHistogram | None = ...) -> int: ...

def drain_batch(drain: object, out: np.ndarray, expired: np.ndarray, a: LatencyHistogram,
                b: LatencyHistogram | None = ...) -> tuple[int, int, int]: ...
