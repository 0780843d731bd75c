"""NUMA placement: one worker pool per node, its threads pinned to the node, its memory on the node.

A task goes to the node that owns its data: ``submit(fn, *args, key=k)`` routes by ``key_to_node``
(a mapping or a callable), else by a stable hash of the key, so every task about one key runs
where that key's data was allocated. On a one-node machine there is one pool and ``submit`` goes
straight to it.
"""
from __future__ import annotations

import itertools
import os
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tallyio.errors import RingClosedError
from tallyio.system.affinity import pin_thread
from tallyio.system.plan import CorePlan
from tallyio.system.topology import Topology, format_cpulist

_local = threading.local()


def current_node() -> int | None:
    """The NUMA node whose pool runs the calling thread; None outside a scheduler's workers."""
    return getattr(_local, "node", None)


def stable_hash(key) -> int:
    """A hash that is the same in every process (``hash(str)`` is salted per process)."""
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key & 0xFFFF_FFFF_FFFF_FFFF
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, (bytes, bytearray, memoryview)):
        return zlib.crc32(key)
    return zlib.crc32(repr(key).encode())


def _count(c: itertools.count) -> int:
    # itertools.count's repr is "count(N)"; reading it does not advance it.
    return int(repr(c)[6:-1])


@dataclass
class NodePool:
    """One node's share: its CPUs, its executor, its memory pool (None without a factory).

    The tallies are ``itertools.count`` objects: ``next()`` on one is a single C call under the
    GIL, so submitters and workers count without a lock (a lock here cost 4x a plain submit in a
    convoy between one submitter and one worker).
    """

    node: int
    cpus: tuple[int, ...]
    executor: ThreadPoolExecutor
    memory_pool: Any
    submitted: itertools.count = field(default_factory=itertools.count)
    completed: itertools.count = field(default_factory=itertools.count)
    failed: itertools.count = field(default_factory=itertools.count)


def _run(pool: NodePool, fn, args, kwargs):
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        next(pool.failed)
        raise
    next(pool.completed)
    return result


class NumaScheduler:
    """Worker pools placed on NUMA nodes, with tasks routed to the node owning their data.

    ``topology``: from :func:`read_topology`. ``plan``: a :class:`CorePlan`; its
    ``workers_by_node`` gives each node's CPUs (default: every allowed CPU of each node).
    ``pool_factory(numa_node=n)`` builds the node's memory pool (e.g. ``tallyio.MemoryPool``).
    ``workers_per_node``: threads per pool (default: one per CPU of the node). ``key_to_node``:
    a mapping or callable from key to node; a key the mapping lacks falls back to the hash.
    ``pin``: True pins each worker to its node's CPUs, False leaves them unpinned, a callable
    ``pin(cpus)`` replaces the pinning (tests of made-up machines).
    """

    def __init__(self, topology: Topology, plan: CorePlan | None = None, *,
                 pool_factory: Callable[..., Any] | None = None, workers_per_node: int | None = None,
                 key_to_node: Mapping | Callable[[Any], int] | None = None,
                 pin: bool | Callable[[frozenset[int]], Any] = True, name: str = "tallyio-numa"):
        if workers_per_node is not None and (isinstance(workers_per_node, bool)
                                             or not isinstance(workers_per_node, int) or workers_per_node < 1):
            raise ValueError(f"workers_per_node must be an integer >= 1, got {workers_per_node!r}")
        if key_to_node is not None and not (callable(key_to_node) or isinstance(key_to_node, Mapping)):
            raise ValueError(f"key_to_node must be a mapping or a callable, got {key_to_node!r}")
        if plan is not None:
            placement = {n: tuple(c) for n, c in plan.workers_by_node.items() if c}
        else:
            placement = {n.id: n.cpus for n in topology.usable_nodes}
        if not placement:
            raise ValueError(f"topology has no node with allowed CPUs: {topology.as_dict()['nodes']}")
        if pin is True:
            pinner = pin_thread
        elif pin is False:
            pinner = None
        elif callable(pin):
            pinner = pin
        else:
            raise ValueError(f"pin must be True, False or a callable, got {pin!r}")
        self.topology = topology
        # Resolved once: an isinstance check against the Mapping ABC costs more than the routing.
        if isinstance(key_to_node, Mapping):
            self._lookup = key_to_node.get
        else:
            self._lookup = key_to_node
        self._lock = threading.Lock()
        self._closed = False
        self._rr = itertools.count()
        self.pin_errors: list[tuple[int, str]] = []
        self.pools: dict[int, NodePool] = {}
        for node, cpus in sorted(placement.items()):
            n_workers = workers_per_node or len(cpus)
            ex = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix=f"{name}-node{node}",
                                    initializer=self._init_worker, initargs=(node, frozenset(cpus), pinner))
            mem = pool_factory(numa_node=node) if pool_factory is not None else None
            self.pools[node] = NodePool(node, tuple(cpus), ex, mem)
        self.nodes: tuple[int, ...] = tuple(self.pools)
        # The single-node fast path: no routing, no hashing.
        self._only = self.pools[self.nodes[0]] if len(self.nodes) == 1 else None

    def _init_worker(self, node: int, cpus: frozenset[int], pinner) -> None:
        _local.node = node
        _local.scheduler = self
        if pinner is not None:
            try:
                pinner(cpus)
            except (OSError, ValueError) as e:
                # A worker that cannot be pinned still runs its tasks; the failure is kept for
                # whoever reports placement (the engine, ``tallyio info``).
                with self._lock:
                    self.pin_errors.append((node, str(e)))

    def node_for(self, key) -> int:
        """The node a task with ``key`` runs on; ``ValueError`` when a mapping names no such node."""
        if self._only is not None:
            return self._only.node
        node = self._lookup(key) if self._lookup is not None else None
        if node is None:
            return self.nodes[stable_hash(key) % len(self.nodes)]
        if node not in self.pools:
            raise ValueError(f"key_to_node sent key {key!r} to node {node!r}; nodes with workers: "
                             f"{', '.join(map(str, self.nodes))}")
        return node

    def memory_pool(self, node: int | None = None):
        """The memory pool of ``node`` (default: the calling worker's node)."""
        node = current_node() if node is None else node
        if node not in self.pools:
            raise ValueError(f"node must be one of {', '.join(map(str, self.nodes))}, got {node!r}")
        return self.pools[node].memory_pool

    def submit(self, fn: Callable, /, *args, key=None, node: int | None = None, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` on the node of ``key`` (or on ``node``); returns its Future.

        Without ``key`` or ``node`` tasks go round-robin over the nodes. Raises ``RingClosedError``
        after :meth:`shutdown`, ``ValueError`` for an unknown ``node``.
        """
        if self._only is not None and node is None:
            pool = self._only
        elif node is not None:
            if node not in self.pools:
                raise ValueError(f"node must be one of {', '.join(map(str, self.nodes))}, got {node!r}")
            pool = self.pools[node]
        elif key is not None:
            pool = self.pools[self.node_for(key)]
        else:
            pool = self.pools[self.nodes[next(self._rr) % len(self.nodes)]]
        try:
            fut = pool.executor.submit(_run, pool, fn, args, kwargs)
        except RuntimeError:
            # The executor refuses once shut down; anything else it raises is not ours to rename.
            if self._closed:
                raise RingClosedError("submit to a NumaScheduler after shutdown") from None
            raise
        next(pool.submitted)
        return fut

    def stats(self) -> dict[int, dict]:
        """Per node: CPUs, tasks submitted, completed, failed (raised); submitted minus the other
        two is what is queued or running (or was cancelled)."""
        return {n: {"cpus": format_cpulist(p.cpus), "submitted": _count(p.submitted),
                    "completed": _count(p.completed), "failed": _count(p.failed)} for n, p in self.pools.items()}

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new tasks and stop the pools; with ``wait`` the queued tasks finish first."""
        self._closed = True
        for p in self.pools.values():
            p.executor.shutdown(wait=wait)

    def __enter__(self) -> "NumaScheduler":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


# ---- memory policy of the calling thread, and of a range of memory (ctypes, no libnuma) ----------

MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND = 0, 1, 2
_MPOL_F_ADDR = 2
_MASK_WORDS = 16  # 1024 nodes, as the pool's mbind
# (set_mempolicy, get_mempolicy) syscall numbers by machine
_SYSCALLS = {"x86_64": (238, 239), "aarch64": (237, 236)}


def _syscall_numbers() -> tuple[int, int]:
    import platform
    nrs = _SYSCALLS.get(platform.machine())
    if nrs is None:
        raise OSError(f"memory policy syscalls unknown on {platform.machine()}")
    return nrs


def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)


def set_thread_mempolicy(node: int | None, mode: int = MPOL_PREFERRED) -> None:
    """Set the calling thread's memory policy: its new pages come from ``node`` (``MPOL_PREFERRED``
    falls back to other nodes when ``node`` is full; ``MPOL_BIND`` does not). ``None`` restores
    the default (local allocation). ``OSError`` from the kernel (an offline node) or on a
    platform without the syscall."""
    ctypes, libc = _libc()
    nr_set, _ = _syscall_numbers()
    if node is None:
        rc = libc.syscall(ctypes.c_long(nr_set), ctypes.c_long(MPOL_DEFAULT), None, ctypes.c_ulong(0))
    else:
        if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < 64 * _MASK_WORDS:
            raise ValueError(f"node must be an integer in 0..{64 * _MASK_WORDS - 1}, got {node!r}")
        mask = (ctypes.c_ulong * _MASK_WORDS)()
        mask[node // 64] = 1 << (node % 64)
        rc = libc.syscall(ctypes.c_long(nr_set), ctypes.c_long(mode), mask,
                          ctypes.c_ulong(64 * _MASK_WORDS + 1))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"set_mempolicy(node {node}): {os.strerror(err)}")


def get_mempolicy(address: int | None = None) -> tuple[int, frozenset[int]]:
    """``(mode, nodes)``: the calling thread's memory policy, or with ``address`` the policy of
    the memory holding that address (what ``mbind`` set). ``mode`` is ``MPOL_DEFAULT`` (0),
    ``MPOL_PREFERRED`` (1), ``MPOL_BIND`` (2)..."""
    ctypes, libc = _libc()
    _, nr_get = _syscall_numbers()
    mode = ctypes.c_int(-1)
    mask = (ctypes.c_ulong * _MASK_WORDS)()
    rc = libc.syscall(ctypes.c_long(nr_get), ctypes.byref(mode), mask, ctypes.c_ulong(64 * _MASK_WORDS + 1),
                      ctypes.c_void_p(address or 0), ctypes.c_ulong(_MPOL_F_ADDR if address else 0))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"get_mempolicy: {os.strerror(err)}")
    nodes = frozenset(w * 64 + b for w in range(_MASK_WORDS) for b in range(64) if mask[w] >> b & 1)
    return mode.value, nodes


@dataclass(frozen=True)
class NodeBinding:
    """What :func:`bind_thread_to_node` did for one thread: its node, the CPUs it was confined to
    (None: left as they were, e.g. already pinned to one CPU of the node), and why."""

    node: int
    cpus: frozenset[int] | None
    reason: str


def bind_thread_to_node(node: int, cpus, *, confine: bool = True) -> NodeBinding:
    """Bind the calling thread to NUMA ``node``: its new memory preferred from the node
    (``set_mempolicy``) and, with ``confine``, its CPUs limited to ``cpus`` (the node's allowed
    CPUs). The engine calls it in each of its threads at start when the numa switch is active,
    after pinning (a thread pinned to one CPU of the node keeps that pin: ``confine=False``).
    ``OSError``/``ValueError`` when the kernel refuses."""
    set_thread_mempolicy(node, MPOL_PREFERRED)
    if confine:
        got = pin_thread(frozenset(cpus))
        return NodeBinding(node, frozenset(cpus), f"memory preferred from node {node}, cpus "
                                                  f"{format_cpulist(sorted(cpus))} (was {format_cpulist(sorted(got))})")
    return NodeBinding(node, None, f"memory preferred from node {node}; cpu pin kept")
