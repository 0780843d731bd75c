"""The error the system switches raise (to move into ``tallyio.errors`` when integrated)."""
from __future__ import annotations

from tallyio.errors import TallyIOError


class OptimizationUnavailableError(TallyIOError, RuntimeError):
    """An optimization the config turns ``on`` that this machine cannot honour.

    ``switch`` names the optimization (``"realtime_priority"``, ``"allocator"``...) and ``reason``
    says what is missing.
    """

    def __init__(self, switch: str, reason: str):
        self.switch = switch
        self.reason = reason
        super().__init__(f"{switch} is 'on' but unavailable: {reason}")


MODES = ("auto", "on", "off")


def check_mode(name: str, mode) -> str:
    """Return ``mode`` if it is a switch mode, else ``ValueError`` naming ``name`` and the value."""
    if mode not in MODES:
        raise ValueError(f"{name} must be 'auto', 'on' or 'off', got {mode!r}")
    return mode
