from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from tallyio._core.amm cimport tio_u256
from tallyio._core.cache cimport StateCache


# One row of PoolBook.apply's outcome: the layout of OUTCOME_DTYPE (checked at import).
ctypedef struct tio_book_outcome:
    int32_t pool             # index in the book, -1 when the row names no known pool
    uint8_t status           # STATUS_*
    uint8_t zero_for_one     # 1: the row sells token0
    tio_u256 amount_out
    tio_u256 reserve0_before
    tio_u256 reserve1_before
    tio_u256 reserve0_after
    tio_u256 reserve1_after


cdef enum:
    TIO_BOOK_APPLIED = 0
    TIO_BOOK_REVERTED_SLIPPAGE = 1
    TIO_BOOK_REVERTED_ZERO = 2
    TIO_BOOK_REVERTED_OVERFLOW = 3
    TIO_BOOK_NOT_PENDING = 4
    TIO_BOOK_NOT_V2 = 5
    TIO_BOOK_UNKNOWN_POOL = 6
    TIO_BOOK_TOKEN_MISMATCH = 7
    TIO_BOOK_NSTATUS = 8


cdef class PoolBook:
    """Reserves of known Uniswap V2 pools. Compiled callers read the arrays below with the GIL
    held or between ``_enter(0)`` / ``_leave(0)``; only ``apply`` writes the reserves."""
    cdef Py_ssize_t n
    cdef object _r0, _r1, _addr, _tok0, _tok1, _fee_num, _fee_den, _t0key, _t1key, _key
    cdef object _sib_start, _sib, _proto, _w0, _w1, _bfee, _xsib_start, _xsib
    cdef tio_u256 *r0
    cdef tio_u256 *r1
    cdef const uint8_t *addr
    cdef const uint32_t *fee_num
    cdef const uint32_t *fee_den
    cdef const uint64_t *t0key
    cdef const uint64_t *t1key
    cdef const int32_t *sib_start    # siblings of pool i: sib[sib_start[i]:sib_start[i + 1]]
    cdef const int32_t *sib
    # Balancer V1 pools (protocol PROTOCOL_BALANCER_V1): denormalized weights of token0/token1 and
    # the swap fee, 18-decimal fixed point; zeros for Uniswap V2 pools. n_bal == 0: a V2-only book.
    cdef Py_ssize_t n_bal
    cdef const uint8_t *proto
    cdef const tio_u256 *w0
    cdef const tio_u256 *w1
    cdef const tio_u256 *bfee
    cdef const int32_t *xsib_start   # pools of pool i's pair on the other protocol:
    cdef const int32_t *xsib         # xsib[xsib_start[i]:xsib_start[i + 1]]
    cdef StateCache _index           # 64-bit pool key -> pool index
    cdef object _outcome             # the last apply's outcome (read-only array)
    cdef object _ids                 # the last apply's row ids, to match a batch to it
    cdef uint64_t counts[8]          # rows per status since creation
    cdef int _readers                # GIL-free readers in flight (changed with the GIL held)
    cdef bint _writer                # an apply in flight (changed with the GIL held)
    cdef bint _loaded                # __init__ ran: the arrays (and screens' sizes) are final
    cdef readonly object token_table

    cdef int _enter(self, bint write) except -1
    cdef void _leave(self, bint write) noexcept
    cdef object _positions(self, object batch)
    cdef Py_ssize_t _pool(self, object i) except -1
    cdef void _apply_rows(self, const char *data, Py_ssize_t stride, Py_ssize_t n,
                          tio_book_outcome *o, uint64_t *idp, uint64_t *counts) noexcept nogil
