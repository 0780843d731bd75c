# cython: language_level=3, binding=False
"""The monotonic nanosecond clock every TallyIO timestamp comes from."""
from libc.stdint cimport uint64_t


def now_ns():
    """Return CLOCK_MONOTONIC in nanoseconds (the same clock as ``time.monotonic_ns()``)."""
    return tio_now_ns()


def wait_until(deadline_ns, spin_ns=50_000):
    """Block until ``now_ns() >= deadline_ns`` without holding the GIL.

    Sleeps while more than ``spin_ns`` remain and busy-waits the rest, so the deadline is met
    within a microsecond instead of the ~50 us timer slack of a plain sleep, and other Python
    threads run meanwhile (a Python-level spin would hold the GIL for a whole switch interval).
    """
    if deadline_ns < 0:
        raise ValueError(f"deadline_ns must be >= 0, got {deadline_ns}")
    if spin_ns < 0:
        raise ValueError(f"spin_ns must be >= 0, got {spin_ns}")
    cdef uint64_t d = deadline_ns, s = spin_ns
    with nogil:
        tio_wait_until(d, s)
