"""Allocator tuning: run the engine under jemalloc, a deployment switch.

jemalloc has to be in the process before the first ``malloc``, so it cannot be switched on from
inside a running interpreter: either the engine process re-executes itself with ``LD_PRELOAD``
(:func:`ensure_jemalloc`) or a launcher starts it with the environment :func:`jemalloc_env`
builds. Debian ships it as ``libjemalloc2``; its build reads ``MALLOC_CONF`` (no ``je_`` prefix).

Defaults (``DEFAULT_MALLOC_CONF``), each a documented jemalloc option (see jemalloc(3)):
``background_thread:true`` purges dirty pages on jemalloc's own thread, not inside the hot path's
``free``; ``metadata_thp:auto`` lets jemalloc back its metadata with huge pages once it is large;
``dirty_decay_ms``/``muzzy_decay_ms`` 10 s keep freed pages around long enough for bursty traffic
to reuse them; ``narenas`` equal to the CPUs the process may use gives each pinned thread an arena
with little contention.
"""
from __future__ import annotations

import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

from tallyio.system._errors import OptimizationUnavailableError, check_mode

log = logging.getLogger("tallyio.system")

DEFAULT_MALLOC_CONF = ("background_thread:true,metadata_thp:auto,dirty_decay_ms:10000,"
                       "muzzy_decay_ms:10000,narenas:{ncpu}")
# Set in the re-executed process so a preload that does not take hold cannot loop forever.
REEXEC_MARKER = "TALLYIO_JEMALLOC_REEXEC"
# An explicit library path wins over the search (a non-Debian install, a vendored build).
LIBRARY_ENV = "TALLYIO_JEMALLOC"

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so",
)
_KNOWN = (("libjemalloc", "jemalloc"), ("libtcmalloc", "tcmalloc"), ("libmimalloc", "mimalloc"))


def find_jemalloc(candidates: tuple[str, ...] | None = None) -> str | None:
    """Path of an installed jemalloc shared library, or None.

    Looks at ``$TALLYIO_JEMALLOC``, then ``candidates`` (default: the usual Debian, Fedora and
    /usr/local paths), then the dynamic linker's cache.
    """
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    for path in candidates if candidates is not None else _CANDIDATES:
        if os.path.isfile(path):
            return path
    if candidates is None:
        name = ctypes.util.find_library("jemalloc")
        if name:
            for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
                if os.path.isfile(os.path.join(d, name)):
                    return os.path.join(d, name)
    return None


def live_allocator(maps_path: str = "/proc/self/maps") -> str:
    """Which malloc this process runs: ``"jemalloc"``, ``"tcmalloc"``, ``"mimalloc"``,
    ``"glibc"``, or ``"unknown"`` (read from the libraries mapped into it)."""
    try:
        with open(maps_path) as f:
            libs = {os.path.basename(line.split()[-1]) for line in f if "/" in line}
    except OSError:
        return "unknown"
    for prefix, name in _KNOWN:
        if any(lib.startswith(prefix) for lib in libs):
            return name
    if any(lib.startswith("libc.so") or lib.startswith("libc-") for lib in libs):
        return "glibc"
    return "unknown"


def default_malloc_conf(ncpu: int | None = None) -> str:
    """``DEFAULT_MALLOC_CONF`` for ``ncpu`` CPUs (default: the CPUs this process may use)."""
    if ncpu is None:
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(ncpu, bool) or not isinstance(ncpu, int) or ncpu < 1:
        raise ValueError(f"ncpu must be an integer >= 1, got {ncpu!r}")
    return DEFAULT_MALLOC_CONF.format(ncpu=ncpu)


@dataclass(frozen=True)
class AllocatorStatus:
    """Which allocator is (or will be) live and why; ``library`` is jemalloc's path if found."""

    mode: str
    active: bool
    allocator: str
    reason: str
    library: str | None = None


def jemalloc_env(env: Mapping[str, str] | None = None, *, library: str | None = None,
                 malloc_conf: str | None = None, ncpu: int | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) that starts a child process under jemalloc.

    Adds ``library`` (default: :func:`find_jemalloc`) to ``LD_PRELOAD`` unless it is there, and
    sets ``MALLOC_CONF`` to ``malloc_conf`` (default: :func:`default_malloc_conf`) unless the
    environment already sets one: an operator's own tuning wins. Raises
    ``OptimizationUnavailableError`` when no jemalloc is installed.
    """
    out = dict(os.environ if env is None else env)
    lib = library or out.get(LIBRARY_ENV) or find_jemalloc()
    if lib is None or not os.path.isfile(lib):
        raise OptimizationUnavailableError("allocator", _missing(lib))
    preload = [p for p in out.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p]
    if lib not in preload:
        preload.insert(0, lib)
    out["LD_PRELOAD"] = ":".join(preload)
    if not out.get("MALLOC_CONF"):
        out["MALLOC_CONF"] = malloc_conf or default_malloc_conf(ncpu)
    return out


def _missing(lib: str | None) -> str:
    if lib:
        return f"jemalloc library {lib} does not exist (from the library argument or ${LIBRARY_ENV})"
    return "jemalloc is not installed (apt-get install libjemalloc2, or set TALLYIO_JEMALLOC to its path)"


def ensure_jemalloc(mode: str = "auto", *, library: str | None = None, malloc_conf: str | None = None,
                    argv: list[str] | None = None, execve: Callable = os.execve,
                    maps_path: str = "/proc/self/maps", env: Mapping[str, str] | None = None) -> AllocatorStatus:
    """Make the current process run under jemalloc, re-executing it if need be.

    ``"off"``: nothing. Otherwise, if jemalloc is already live, report it. If not and it is
    installed, re-execute the interpreter with the same arguments (``argv``, default
    ``sys.orig_argv``) under :func:`jemalloc_env` -- this call does not return then. If it is
    missing (or a re-exec did not bring it in), ``"auto"`` logs and reports glibc, ``"on"``
    raises ``OptimizationUnavailableError``. Call it first thing at engine start-up, before
    threads or open resources that an exec would drop. ``execve`` and ``maps_path`` are for tests.
    """
    check_mode("allocator mode", mode)
    current = live_allocator(maps_path)
    if mode == "off":
        return AllocatorStatus(mode, current == "jemalloc", current, "off in config")
    if current == "jemalloc":
        return AllocatorStatus(mode, True, current, "jemalloc preloaded", library or find_jemalloc())
    environ = os.environ if env is None else env
    lib = library or environ.get(LIBRARY_ENV) or find_jemalloc()
    if lib is None or not os.path.isfile(lib):
        reason = _missing(lib)
    elif environ.get(REEXEC_MARKER):
        reason = f"re-executed with LD_PRELOAD={lib} but {current} malloc is still live"
    else:
        new_env = jemalloc_env(environ, library=lib, malloc_conf=malloc_conf)
        new_env[REEXEC_MARKER] = "1"
        args = list(argv if argv is not None else getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
        sys.stdout.flush()
        sys.stderr.flush()
        execve(sys.executable, args, new_env)
        # Only an injected execve returns.
        return AllocatorStatus(mode, True, "jemalloc", f"re-executed under {lib}", lib)
    if mode == "on":
        raise OptimizationUnavailableError("allocator", reason)
    log.warning("jemalloc not active, carrying on with %s malloc: %s", current, reason)
    return AllocatorStatus(mode, False, current, reason, lib)


def allocator_status(mode: str = "auto", *, library: str | None = None,
                     maps_path: str = "/proc/self/maps") -> AllocatorStatus:
    """What :func:`ensure_jemalloc` would achieve in ``mode``, without doing it (for ``info``)."""
    check_mode("allocator mode", mode)
    current = live_allocator(maps_path)
    lib = library or os.environ.get(LIBRARY_ENV) or find_jemalloc()
    if mode == "off":
        return AllocatorStatus(mode, current == "jemalloc", current, "off in config", lib)
    if current == "jemalloc":
        return AllocatorStatus(mode, True, current, "jemalloc preloaded", lib)
    if lib is None or not os.path.isfile(lib):
        return AllocatorStatus(mode, False, current, _missing(lib), None)
    return AllocatorStatus(mode, True, current, f"jemalloc installed at {lib}: the engine re-executes "
                                                "under it at start-up", lib)


LIBRARY_HINT = ("jemalloc must be in the process before its first malloc: run under `tallyio run` "
                "(it re-executes under jemalloc), call tallyio.system.ensure_jemalloc() first thing "
                "in the program, or start it with tallyio.system.jemalloc_env() (LD_PRELOAD)")


def in_process_allocator(mode: str = "auto", *, maps_path: str = "/proc/self/maps") -> dict:
    """The allocator switch as an ``Engine`` in this process sees it: ``{active, state, reason}``.

    An engine cannot swap ``malloc`` once the interpreter runs, so the switch is what is already
    live: jemalloc preloaded is ``"active"``; otherwise ``"auto"`` is ``"no effect"`` and ``"on"``
    raises ``OptimizationUnavailableError`` with the ways to get jemalloc in (:data:`LIBRARY_HINT`);
    ``"off"`` is ``"off"`` (a preloaded jemalloc stays: it cannot be unloaded either).
    """
    check_mode("allocator mode", mode)
    current = live_allocator(maps_path)
    if mode == "off":
        return {"active": False, "state": "off",
                "reason": "off in config" + (" (jemalloc preloaded all the same)" if current == "jemalloc" else "")}
    if current == "jemalloc":
        return {"active": True, "state": "active", "reason": "jemalloc preloaded in this process"}
    if mode == "on":
        raise OptimizationUnavailableError("allocator", f"{current} malloc is live in this process; {LIBRARY_HINT}")
    return {"active": False, "state": "no effect",
            "reason": f"{current} malloc is live in this process; {LIBRARY_HINT}"}
