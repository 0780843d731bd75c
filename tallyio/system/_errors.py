"""Switch-mode checking shared by the system modules; the error lives in ``tallyio.errors``."""
from __future__ import annotations

from tallyio.errors import OptimizationUnavailableError  # noqa: F401  (re-exported)


MODES = ("auto", "on", "off")


def check_mode(name: str, mode) -> str:
    """Return ``mode`` if it is a switch mode, else ``ValueError`` naming ``name`` and the value."""
    if mode not in MODES:
        raise ValueError(f"{name} must be 'auto', 'on' or 'off', got {mode!r}")
    return mode
