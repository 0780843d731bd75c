def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds (the same clock as ``time.monotonic_ns()``)."""

def wait_until(deadline_ns: int, spin_ns: int = 50_000) -> None:
    """Block until ``now_ns() >= deadline_ns`` without holding the GIL."""
