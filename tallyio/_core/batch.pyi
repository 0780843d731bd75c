import numpy as np

from tallyio._core.ring import Ring

class BatchDrain:
    ring: Ring  # cdef readonly
    batch_size: int  # cdef readonly Py_ssize_t
    def __init__(self, ring: Ring, batch_size: int, batch_timeout: float, *,
                 max_age: float | None = None, time_field: str | None = "arrival_ns",
                 idle_timeout: float | None = None, spin: float = 50e-6,
                 sleep: float = 0.0) -> None: ...
    def drain(self) -> tuple[np.ndarray, np.ndarray]: ...
    def drain_into(self, out: np.ndarray, expired: np.ndarray | None = None) -> tuple[int, int]: ...
    def stats(self) -> dict[str, int]: ...
