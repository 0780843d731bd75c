"""TallyIO's exceptions: one root, and messages that name the parameter and the value."""
from __future__ import annotations



class TallyIOError(Exception):
    """Root of every error TallyIO raises on purpose."""


class RingClosedError(TallyIOError):
    """A push to a ring (or a submit to a processor) after it was closed."""


class CircuitOpenError(TallyIOError):
    """A call refused by an open (or forced-open) circuit breaker.

    ``name`` is the breaker's name and ``retry_after`` the seconds until it lets a trial call
    through (``inf`` when forced open).
    """

    def __init__(self, name: str, retry_after: float, message: str | None = None):
        self.name = name
        self.retry_after = retry_after
        super().__init__(message or f"circuit {name!r} is open; retry in {retry_after:.6f} s")


class BatchTimeoutError(TallyIOError):
    """An item that waited longer than ``max_latency`` before its batch was processed."""


class BufferFullError(TallyIOError):
    """A submit refused because the buffer was full and the policy is to raise."""


class ConfigError(TallyIOError, ValueError):
    """A deployment config that does not validate; the message names the key and the file."""


class PluginError(TallyIOError):
    """A plugin that could not be loaded or that implements an unknown hook."""


class ProcessorResultError(TallyIOError, TypeError):
    """A processor returned something other than None or an iterable of ``Opportunity``;
    counted as that processor's error for the batch."""


class OptimizationUnavailableError(TallyIOError, RuntimeError):
    """An optimization the config turns ``on`` that this machine cannot honour.

    ``switch`` names the optimization (``"realtime_priority"``, ``"allocator"``...) and ``reason``
    says what is missing.
    """

    def __init__(self, switch: str, reason: str):
        self.switch = switch
        self.reason = reason
        super().__init__(f"{switch} is 'on' but unavailable: {reason}")


class PoolExhaustedError(TallyIOError, MemoryError):
    """An allocation refused because its size class was exhausted (``on_exhausted="raise"``)."""


class PoolClosedError(TallyIOError):
    """An allocation from a MemoryPool after ``close()``."""


class BlockReleasedError(TallyIOError, ValueError):
    """A second release of a Block, or use of a released Block's buffer."""


class AmmOverflowError(TallyIOError, OverflowError):
    """An exact AMM result (``tallyio.amm``) that needs more than 256 bits; the message names the
    function and its arguments. The pure-Python reference would return the unbounded int."""
