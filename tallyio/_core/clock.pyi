def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds (the same clock as ``time.monotonic_ns()``)."""
