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


def missing_strategies() -> list[str]:
    """The example strategies the KPI benchmarks are defined with that are not loaded here."""
    from tallyio.bench import kpi
    return sorted(set(kpi.KPI_STRATEGIES) - set(kpi.strategies()))


def require_strategies() -> None:
    """A KPI benchmark's ``setup``: skip it (asv prints "asv: skipped: <reason>") when the example
    strategies are not loaded, rather than time the engine alone under the KPI's name."""
    missing = missing_strategies()
    if missing:
        raise NotImplementedError(
            f"no {' or '.join(missing)} strategy loaded, and the KPI benchmarks run the example "
            f"strategies: install {' and '.join(f'plugins/tallyio-{m}' for m in missing)} "
            f"(asv.conf.json's install_command and `make` do)")
