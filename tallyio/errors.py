"""TallyIO's exceptions: one root, and messages that name the parameter and the value."""


class TallyIOError(Exception):
    """Root of every error TallyIO raises on purpose."""


class RingClosedError(TallyIOError):
    """A push to a ring (or a submit to a processor) after it was closed."""
