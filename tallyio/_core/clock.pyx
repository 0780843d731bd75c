# cython: language_level=3, binding=False
"""The monotonic nanosecond clock every TallyIO timestamp comes from."""


def now_ns():
    """Return CLOCK_MONOTONIC in nanoseconds (the same clock as ``time.monotonic_ns()``)."""
    return tio_now_ns()
