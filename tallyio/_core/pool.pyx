# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Pre-allocated size-class memory pool: 64 B, 1 KiB, 4 KiB and 2 MiB blocks.

``MemoryPool.allocate(size)`` hands out a ``Block``, a writable buffer of exactly ``size`` bytes
(``memoryview(block)``, ``numpy.asarray(block)``); ``release(block)`` gives it back. Compiled
modules allocate without the GIL through ``tio_pool_alloc`` / ``tio_pool_free`` (see pool.pxd).

Misuse raises; it never corrupts memory: double release, a block of another pool, the buffer of
a released block, a release while a view of the block is alive, use of a closed pool.
"""
cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.stdlib cimport posix_memalign

import operator
import os

from tallyio.errors import BlockReleasedError, PoolClosedError, PoolExhaustedError

# Local until they move to tallyio/errors.py.




CLASS_NAMES = ("small", "medium", "large", "huge")
BLOCK_SIZES = (64, 1024, 4096, 2 << 20)
_PAGE_NAMES = {TIO_PAGES_NONE: "none", TIO_PAGES_NORMAL: "normal", TIO_PAGES_THP: "thp",
               TIO_PAGES_HUGETLB: "hugetlb"}
_HUGE = {"auto": TIO_HUGE_AUTO, "hugetlb": TIO_HUGE_HUGETLB, "thp": TIO_HUGE_THP,
         "off": TIO_HUGE_OFF}
cdef Py_ssize_t _MAX_SIZE = (<Py_ssize_t>1) << 62


def _online_numa_nodes():
    """Online NUMA nodes from sysfs ("0", "0-3", "0,2-3"); a machine without the file has node 0."""
    try:
        with open("/sys/devices/system/node/online") as f:
            text = f.read().strip()
    except OSError:
        return [0]
    nodes = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        nodes.extend(range(int(lo), int(hi or lo) + 1))
    return nodes


def _thp_available():
    """Whether the kernel honours MADV_HUGEPAGE (transparent huge pages not set to "never")."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _hugepages_free():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


cdef uint32_t _check_count(str name, object n) except? 0:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {n!r}")
    if not 0 <= n <= TIO_POOL_MAX_COUNT:
        raise ValueError(f"{name} must be in [0, {TIO_POOL_MAX_COUNT}], got {n}")
    return <uint32_t>n


cdef Py_ssize_t _check_size(object size) except -1:
    # Convert first and compare C integers: Python-object comparisons would cost more than the
    # allocation itself.
    cdef Py_ssize_t n
    if type(size) is not int:
        if isinstance(size, bool):
            raise TypeError(f"size must be an int, got {size!r}")
        try:
            size = operator.index(size)
        except TypeError:
            raise TypeError(f"size must be an int, got {size!r}") from None
    try:
        n = size
    except OverflowError:
        n = -1 if size < 0 else _MAX_SIZE + 1
    if n <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    if n > _MAX_SIZE:
        raise ValueError(f"size must be at most 2**62, got {size}")
    return n


@cython.freelist(64)
@cython.final
@cython.no_gc
cdef class Block:
    """A block of pool memory: a writable buffer of exactly ``size`` bytes.

    Made by ``MemoryPool.allocate``; give it back with ``MemoryPool.release``. Its contents are
    not zeroed (like ``malloc``). A view (``memoryview(block)``, ``numpy.asarray(block)``) keeps
    the block out: releasing it while a view is alive raises ``BufferError``. A block that is
    garbage-collected without a release goes back to its pool (counted as ``collected``).
    """

    def __cinit__(self):
        # A Block made with Block.__new__ (not by allocate) owns no memory: it reads as released,
        # so its buffer raises instead of exposing NULL, and nothing is given back when it dies.
        self._released = True
        self.cls = -1

    def __init__(self, *args, **kwargs):
        raise TypeError("Block is created by MemoryPool.allocate, not directly")

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self._released:
            raise BlockReleasedError("block was released; its buffer is no longer usable")
        PyBuffer_FillInfo(view, self, self.ptr, self._size, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def __array__(self, dtype=None, copy=None):
        # numpy reaches this only when the buffer protocol failed; without it, numpy swallows the
        # buffer error and wraps a released block in a 0-d object array.
        if self._released:
            raise BlockReleasedError("block was released; its buffer is no longer usable")
        import numpy
        if copy:
            return numpy.array(memoryview(self), dtype=dtype, copy=True)
        return numpy.asarray(memoryview(self), dtype=dtype)

    cdef int _free(self) except -1:
        cdef int rc = 0
        self._released = True
        if self.cls >= 0:
            rc = tio_pool_give(&self.pool.p.cls[self.cls], self.slot, self.gen)
        else:
            tio_pool_sys_free(self.pool.p, self.ptr)
        self.ptr = NULL
        if rc != 0:
            raise BlockReleasedError("block's memory was already freed (through the C-level "
                                     "tio_pool_free)")
        return 0

    def __dealloc__(self):
        # No view can be alive here: each one holds a reference to the block.
        if not self._released and self.pool is not None:
            try:
                self._free()
            except BlockReleasedError:
                pass  # freed through the C API already; nothing left to give back
            self.pool._collected += 1
            self.pool._maybe_unmap()

    @property
    def size(self):
        """The requested size in bytes (the length of the buffer)."""
        return self._size

    @property
    def released(self):
        return self._released

    @property
    def size_class(self):
        """The class that served the block: "small" ... "huge", or "system" (system allocator)."""
        return CLASS_NAMES[self.cls] if self.cls >= 0 else "system"

    def __len__(self):
        return self._size

    def __repr__(self):
        state = "released" if self._released else f"{self.exports} views"
        return f"<Block size={self._size} class={self.size_class} {state}>"


cdef class MemoryPool:
    """MemoryPool(small=1000, medium=500, large=100, huge=10, numa_node=None,
    on_exhausted="fallback", *, huge_pages="auto")

    A pre-allocated pool of 64 B (``small``), 1 KiB (``medium``), 4 KiB (``large``) and 2 MiB
    (``huge``) blocks; each argument is how many blocks of that class to map and pre-fault now.

    Parameters
    ----------
    small, medium, large, huge : int
        Blocks per class, in [0, 2**31 - 1]; 0 leaves the class empty (every request of that size
        is then an exhausted request).
    numa_node : int or None
        Bind every region to this NUMA node (``mbind``, before the pages are touched); one of the
        machine's online nodes. None: the kernel's default placement.
    on_exhausted : {"fallback", "raise"}
        What a request of an exhausted class gets: a block from the system allocator (counted as a
        fallback), or ``PoolExhaustedError`` (counted as refused).
    huge_pages : {"auto", "hugetlb", "thp", "off"}
        Pages of the regions of at least 2 MiB (the huge class always is): "auto" tries
        ``MAP_HUGETLB``, then transparent huge pages (``MADV_HUGEPAGE``), then normal pages;
        "hugetlb" and "thp" demand that kind and raise ``OSError`` when the machine cannot; "off"
        uses normal pages. Smaller regions always use normal pages. ``stats()`` says what each
        region got.

    Requests above 2 MiB always come from the system allocator and are counted (``oversize``).
    ``allocate`` and ``release`` may be called from any thread; compiled code allocates without
    the GIL through ``tio_pool_alloc`` / ``tio_pool_free``.

    ``close()`` (or leaving a ``with`` block) stops allocation at once; the regions are unmapped
    as soon as no pooled block is out, so a block still held stays valid until it is released.
    """

    def __cinit__(self, small=1000, medium=500, large=100, huge=10, numa_node=None,
                  on_exhausted="fallback", *, huge_pages="auto"):
        cdef uint32_t counts[4]
        cdef int k, rc, step, node = -1, policy
        counts[0] = _check_count("small", small)
        counts[1] = _check_count("medium", medium)
        counts[2] = _check_count("large", large)
        counts[3] = _check_count("huge", huge)
        if on_exhausted not in ("fallback", "raise"):
            raise ValueError(f"on_exhausted must be 'fallback' or 'raise', got {on_exhausted!r}")
        if huge_pages not in _HUGE:
            raise ValueError(f"huge_pages must be 'auto', 'hugetlb', 'thp' or 'off', "
                             f"got {huge_pages!r}")
        policy = _HUGE[huge_pages]
        if numa_node is not None:
            if isinstance(numa_node, bool) or not isinstance(numa_node, int):
                raise TypeError(f"numa_node must be an int or None, got {numa_node!r}")
            nodes = _online_numa_nodes()
            if numa_node not in nodes:
                raise ValueError(f"numa_node must be one of this machine's online NUMA nodes "
                                 f"{nodes}, got {numa_node}")
            node = numa_node
        total = 0
        for k in range(4):
            total += counts[k] * BLOCK_SIZES[k]
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if total > phys:
            raise ValueError(f"the pool would pre-allocate {total} bytes (small={small}, "
                             f"medium={medium}, large={large}, huge={huge}), more than this "
                             f"machine's {phys} bytes of memory")
        self.numa_node = numa_node
        self.on_exhausted = on_exhausted
        self.huge_pages = huge_pages
        self.p = tio_pool_new(1 if on_exhausted == "fallback" else 0)
        if self.p == NULL:
            raise MemoryError("cannot allocate a MemoryPool")
        thp_ok = _thp_available()
        for k in range(4):
            rc = tio_pool_map_class(self.p, k, counts[k], policy, thp_ok, node, &step)
            if rc != 0:
                self._raise_map_error(k, counts[k], -rc, step, node)

    def __init__(self, small=1000, medium=500, large=100, huge=10, numa_node=None,
                 on_exhausted="fallback", *, huge_pages="auto"):
        pass

    def _raise_map_error(self, k, count, err, step, node):
        what = (f"the {CLASS_NAMES[k]} class ({count} blocks of {BLOCK_SIZES[k]} B, "
                f"{count * BLOCK_SIZES[k]} bytes)")
        reason = os.strerror(err)
        if step == 2:
            raise OSError(err, f"huge_pages='hugetlb' but 2 MiB huge pages could not be mapped for "
                               f"{what}: {reason} (HugePages_Free: {_hugepages_free()}; reserve "
                               f"pages with sysctl vm.nr_hugepages, or use huge_pages='auto')")
        if step == 3:
            raise OSError(err, f"huge_pages='thp' but transparent huge pages are not available for "
                               f"{what}: {reason} (see /sys/kernel/mm/transparent_hugepage/enabled)")
        if step == 4:
            raise OSError(err, f"mbind of {what} to numa_node={node} failed: {reason}")
        raise MemoryError(f"cannot map {what}: {reason}")

    def __dealloc__(self):
        # Every Block holds a reference to its pool, so none is out when this runs.
        tio_pool_destroy(self.p)

    cdef void _maybe_unmap(self) noexcept:
        if (self.closed and not self._unmapped and self._active == 0
                and tio_pool_in_use(self.p) == 0):
            tio_pool_unmap(self.p)
            self._unmapped = True

    def allocate(self, size):
        """Return a Block of exactly ``size`` bytes (``size`` > 0).

        Served by the smallest class that fits; above 2 MiB, or when that class is exhausted and
        ``on_exhausted="fallback"``, by the system allocator (counted). Raises
        ``PoolExhaustedError`` for an exhausted class under ``on_exhausted="raise"``,
        ``PoolClosedError`` after ``close()``, ``TypeError``/``ValueError`` for a bad size.
        """
        cdef Py_ssize_t n = _check_size(size)
        cdef int k
        cdef uint32_t idx
        cdef uint64_t gen
        cdef void *ptr
        cdef Block b
        if self.closed:
            raise PoolClosedError("MemoryPool is closed")
        k = tio_pool_class_of(<size_t>n)
        if k >= 0:
            idx = tio_pool_take(&self.p.cls[k], &gen)
            if idx != TIO_POOL_NIL:
                b = Block.__new__(Block)
                b.pool = self
                b.ptr = tio_pool_block(&self.p.cls[k], idx)
                b._size = n
                b.cls = k
                b.slot = idx
                b.gen = gen
                b._released = False
                return b
            if not self.p.fallback:
                raise PoolExhaustedError(
                    f"the {CLASS_NAMES[k]} class ({BLOCK_SIZES[k]} B blocks, capacity "
                    f"{self.p.cls[k].count}) is exhausted; size={n} refused "
                    f"(on_exhausted='raise')")
        else:
            tio_pool_count_oversize(self.p)
        ptr = tio_pool_sys_alloc(self.p, <size_t>n)
        if ptr == NULL:
            raise MemoryError(f"the system allocator could not provide size={n} bytes")
        b = Block.__new__(Block)
        b.pool = self
        b.ptr = <char *>ptr
        b._size = n
        b.cls = -1
        b._released = False
        return b

    def release(self, block):
        """Give ``block`` back to the pool.

        Raises ``TypeError`` for a non-Block, ``ValueError`` for a block of another pool,
        ``BlockReleasedError`` for a block already released, and ``BufferError`` while a view of
        the block (memoryview, numpy array) is alive. Allowed after ``close()``.
        """
        cdef Block b
        if type(block) is not Block:
            raise TypeError(f"block must be a Block from MemoryPool.allocate, "
                            f"got {type(block).__name__}")
        b = <Block>block
        if b.pool is not self:
            raise ValueError("block belongs to another MemoryPool")
        if b._released:
            raise BlockReleasedError("block was already released")
        if b.exports:
            raise BufferError(f"block has {b.exports} live buffer view(s) (memoryview or numpy "
                              f"array); drop them before release")
        b._free()
        if self.closed:
            self._maybe_unmap()

    def close(self):
        """Stop allocating (``allocate`` raises ``PoolClosedError``); idempotent.

        The regions are unmapped now if no pooled block is out, else when the last one is released
        (or garbage-collected), so no buffer ever points at unmapped memory.
        """
        if not self.closed:
            self.closed = True
            tio_pool_mark_closed(self.p)
            self._maybe_unmap()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def stats(self):
        """A snapshot of the counters.

        ``classes`` maps each class name to ``block_size``, ``capacity``, ``in_use``,
        ``high_water``, ``fallbacks`` (exhausted requests served by the system allocator),
        ``refused`` (exhausted requests refused under "raise"), ``pages`` ("hugetlb", "thp",
        "normal", or "none" for an empty class) and ``numa_bound``. At the top: ``in_use`` (pooled
        blocks out), ``system_in_use`` (system-allocator blocks out), ``oversize`` (requests above
        2 MiB), ``fallbacks`` and ``refused`` (sums), ``collected`` (blocks garbage-collected
        without a release), ``numa_node``, ``numa_bound``, ``on_exhausted``, ``huge_pages``,
        ``closed`` and ``mapped``.
        """
        cdef int k
        cdef tio_pool_class *c
        classes = {}
        fallbacks = refused = 0
        for k in range(4):
            c = &self.p.cls[k]
            exhausted = tio_pool_stat(self.p, TIO_POOL_STAT_EXHAUSTED, k)
            fb = exhausted if self.p.fallback else 0
            fallbacks += fb
            refused += exhausted - fb
            classes[CLASS_NAMES[k]] = {
                "block_size": c.block_size,
                "capacity": c.count,
                "in_use": tio_pool_stat(self.p, TIO_POOL_STAT_IN_USE, k),
                "high_water": tio_pool_stat(self.p, TIO_POOL_STAT_HIGH_WATER, k),
                "fallbacks": fb,
                "refused": exhausted - fb,
                "pages": _PAGE_NAMES[c.pages],
                "numa_bound": bool(c.numa_bound),
            }
        return {
            "classes": classes,
            "in_use": tio_pool_in_use(self.p),
            "system_in_use": tio_pool_stat(self.p, TIO_POOL_STAT_SYSTEM_IN_USE, 0),
            "oversize": tio_pool_stat(self.p, TIO_POOL_STAT_OVERSIZE, 0),
            "fallbacks": fallbacks,
            "refused": refused,
            "collected": self._collected,
            "numa_node": self.numa_node,
            "numa_bound": self.numa_node is not None,
            "on_exhausted": self.on_exhausted,
            "huge_pages": self.huge_pages,
            "closed": self.closed,
            "mapped": not self._unmapped,
        }

    def _stress(self, n_ops, size, tag=0, hold=1, check=True):
        """Test and benchmark hook: ``n_ops`` C-level allocations without the GIL.

        Each allocation through ``tio_pool_alloc`` is kept until ``hold`` blocks are held, then all
        are freed through ``tio_pool_free``. With ``check``, each block is stamped with
        ``tag << 32 | op`` (every 8-byte word up to 4 KiB, then one word per 4 KiB) and verified
        just before its free, so a block handed to two threads at once shows up as ``corrupt``.
        Returns counts: ``allocated``, ``freed``, ``system`` (blocks outside the regions),
        ``refused`` (NULL from the pool), ``corrupt``, ``bad_free`` (tio_pool_free returned -1).
        """
        cdef uint64_t n, t, i, stamp, a = 0, fr = 0, sysn = 0, refd = 0, bad = 0, badf = 0
        cdef size_t sz
        cdef int h, nh = 0, j, chk = 1 if check else 0
        cdef void *held[64]
        cdef uint64_t stamps[64]
        cdef uint64_t gens[64]
        cdef uint32_t idx
        for name, v in (("n_ops", n_ops), ("tag", tag), ("hold", hold)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
        if n_ops < 0:
            raise ValueError(f"n_ops must be >= 0, got {n_ops}")
        if not 0 <= tag < (1 << 32):
            raise ValueError(f"tag must be in [0, 2**32), got {tag}")
        if not 1 <= hold <= 64:
            raise ValueError(f"hold must be in [1, 64], got {hold}")
        sz = <size_t>_check_size(size)
        if self.closed:
            raise PoolClosedError("MemoryPool is closed")
        n, t, h = n_ops, tag, hold
        self._active += 1
        try:
            with nogil:
                for i in range(n):
                    held[nh] = tio_pool_alloc(self.p, sz, &gens[nh])
                    if held[nh] == NULL:
                        refd += 1
                    else:
                        a += 1
                        if tio_pool_locate(self.p, held[nh], &idx) == -1:
                            sysn += 1
                        stamp = t << 32 | (i & 0xFFFFFFFFu)
                        stamps[nh] = stamp
                        if chk:
                            _stamp(<char *>held[nh], sz, stamp)
                        else:
                            (<char *>held[nh])[0] = 1  # parity with the _bench_system peer
                        nh += 1
                    if nh == h or (i + 1 == n and nh > 0):
                        for j in range(nh):
                            if chk and not _verify(<char *>held[j], sz, stamps[j]):
                                bad += 1
                            if tio_pool_free(self.p, held[j], gens[j]) == 0:
                                fr += 1
                            else:
                                badf += 1
                        nh = 0
        finally:
            self._active -= 1
            self._maybe_unmap()
        return {"allocated": a, "freed": fr, "system": sysn, "refused": refd, "corrupt": bad,
                "bad_free": badf}

    def _bench_system(self, n_ops, size, hold=1, aligned=False):
        """Benchmark peer of ``_stress(check=False)``: the same loop on ``malloc`` (or, with
        ``aligned``, ``posix_memalign`` to 64 B like the pool's blocks) and ``free`` without the
        GIL: the system allocator a compiled module would use instead."""
        cdef uint64_t n, i
        cdef size_t sz
        cdef int h, nh = 0, j
        cdef bint failed = False, al = bool(aligned)
        cdef void *held[64]
        if isinstance(n_ops, bool) or not isinstance(n_ops, int) or n_ops < 0:
            raise ValueError(f"n_ops must be an int >= 0, got {n_ops!r}")
        if isinstance(hold, bool) or not isinstance(hold, int) or not 1 <= hold <= 64:
            raise ValueError(f"hold must be an int in [1, 64], got {hold!r}")
        sz = <size_t>_check_size(size)
        n, h = n_ops, hold
        with nogil:
            for i in range(n):
                if al:
                    if posix_memalign(&held[nh], 64, sz) != 0:
                        held[nh] = NULL
                else:
                    held[nh] = malloc(sz)
                if held[nh] == NULL:
                    failed = True
                    break
                (<char *>held[nh])[0] = 1
                nh += 1
                if nh == h or i + 1 == n:
                    for j in range(nh):
                        free(held[j])
                    nh = 0
            for j in range(nh):
                free(held[j])
        if failed:
            raise MemoryError(f"posix_memalign failed for size={sz}")

    def _c_misuse(self, size, MemoryPool other=None):
        """Test hook: codes of the C-level ``tio_pool_free`` (0 freed, -1 refused) on a block of
        ``size`` bytes from ``tio_pool_alloc``, as a dict: ``interior`` (pointer + 1), ``first``
        (the good free), ``double`` (the same again), ``stale`` (the first generation again after
        the block was handed out anew; ``stale_same_block`` says whether it was the same block),
        ``current`` (that new allocation's own free), ``null``, ``wrong_gen`` (the right pointer,
        a generation it never had) and, with ``other`` (another pool), ``foreign`` (this pool's
        block freed to ``other``, with its generation). None when the pool had no block to give."""
        cdef size_t sz = <size_t>_check_size(size)
        cdef char *ptr
        cdef char *again
        cdef uint64_t gen, gen2
        cdef uint32_t idx
        cdef dict out = {}
        if self.closed:
            raise PoolClosedError("MemoryPool is closed")
        if other is self:
            raise ValueError("other must be another MemoryPool")
        if other is not None and other.closed:
            raise PoolClosedError("other MemoryPool is closed")
        ptr = <char *>tio_pool_alloc(self.p, sz, &gen)
        if ptr == NULL:
            return None
        out["wrong_gen"] = tio_pool_free(self.p, ptr, gen + 2)
        if other is not None:
            out["foreign"] = tio_pool_free(other.p, ptr, gen)
        if tio_pool_locate(self.p, ptr, &idx) < 0:
            # A system-allocator block: like free(), nothing can check a second or interior free
            # of it, so only the checks above are safe to make.
            out["system"] = True
            out["first"] = tio_pool_free(self.p, ptr, gen)
            return out
        out["system"] = False
        out["interior"] = tio_pool_free(self.p, ptr + 1, gen)
        out["first"] = tio_pool_free(self.p, ptr, gen)
        out["double"] = tio_pool_free(self.p, ptr, gen)
        # The free list is LIFO, so the next allocation of the class is the same slot: a free that
        # presents the first generation is now stale, and must not free the new owner's block.
        again = <char *>tio_pool_alloc(self.p, sz, &gen2)
        out["stale_same_block"] = again == ptr
        out["stale"] = tio_pool_free(self.p, ptr, gen)
        out["current"] = tio_pool_free(self.p, again, gen2)
        out["null"] = tio_pool_free(self.p, NULL, gen)
        return out

    def _aba_replay(self):
        """Test hook: replay the ABA interleaving on the small class (see tio_pool_aba_replay);
        True when the stale CAS was refused. Needs two free small blocks."""
        if self.closed:
            raise PoolClosedError("MemoryPool is closed")
        if self.p.cls[0].count - tio_pool_stat(self.p, TIO_POOL_STAT_IN_USE, 0) < 2:
            raise ValueError("_aba_replay needs two free small blocks")
        return tio_pool_aba_replay(&self.p.cls[0]) == 1

    def __repr__(self):
        counts = ", ".join(f"{CLASS_NAMES[k]}={self.p.cls[k].count}" for k in range(4))
        return (f"MemoryPool({counts}, numa_node={self.numa_node!r}, "
                f"on_exhausted={self.on_exhausted!r}, in_use={tio_pool_in_use(self.p)}, "
                f"closed={self.closed})")


cdef inline size_t _stride(size_t size) noexcept nogil:
    # Every word of a block up to 4 KiB; one word per 4 KiB page of a 2 MiB block keeps a stress op
    # from costing a 2 MiB memset while still touching every page.
    return 1 if size <= 4096 else 512


cdef void _stamp(char *p, size_t size, uint64_t stamp) noexcept nogil:
    cdef size_t w = 0, words = size // 8, step = _stride(size)
    while w < words:
        memcpy(p + w * 8, &stamp, 8)
        w += step
    if size % 8 or words == 0:
        p[size - 1] = <char>(stamp & 0xFF)


cdef bint _verify(const char *p, size_t size, uint64_t stamp) noexcept nogil:
    cdef size_t w = 0, words = size // 8, step = _stride(size)
    cdef uint64_t v
    while w < words:
        memcpy(&v, p + w * 8, 8)
        if v != stamp:
            return False
        w += step
    if (size % 8 or words == 0) and p[size - 1] != <char>(stamp & 0xFF):
        return False
    return True
