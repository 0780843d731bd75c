"""Seeded data shared by the benchmarks. Append only: changing a generator changes history."""
import numpy as np

SEED = 20240601


def rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


def int64_rows(n: int, offset: int = 0) -> np.ndarray:
    return rng(offset).integers(0, 2**62, n, dtype=np.int64)


def latencies_ns(n: int, offset: int = 0) -> np.ndarray:
    """Log-normal latencies around 20 us with a heavy tail, like a real engine's."""
    return np.round(rng(offset).lognormal(np.log(20_000), 0.8, n)).astype(np.int64)
