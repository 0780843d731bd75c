"""Rows that must be looked at a whole group at a time (every swap of a transaction, of a block)
arrive split across batches: ``CompleteGroups`` holds them until their group is complete."""
from __future__ import annotations

import numpy as np

from tallyio.record import TX_DTYPE, copy_rows

_EMPTY = np.empty(0, dtype=TX_DTYPE)


class CompleteGroups:
    """Buffers rows across batches and releases them one complete group at a time.

    ``fields`` name the columns whose values identify a group: ``("block",)`` for a block,
    ``("block", "tx_index")`` for a transaction. Rows arrive in group order; a group is complete
    once a row of a later group has arrived, or at ``flush()`` (the end of the stream).
    """

    def __init__(self, fields: tuple[str, ...]):
        if not fields:
            raise ValueError("fields must name at least one column, got ()")
        self.fields = tuple(fields)
        self._held: list[np.ndarray] = []
        self.rows_held = 0

    def add(self, rows: np.ndarray) -> np.ndarray:
        """Hold ``rows`` (copied: a batch view dies with its call); return the complete groups."""
        if len(rows):
            self._held.append(copy_rows(rows))
            self.rows_held += len(rows)
        return self._release(final=False)

    def flush(self) -> np.ndarray:
        """Everything held, complete or not."""
        return self._release(final=True)

    def _release(self, final: bool) -> np.ndarray:
        if not self._held:
            return _EMPTY
        held = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        if final:
            cut = len(held)
        else:
            last = np.ones(len(held), dtype=bool)
            for f in self.fields:
                last &= held[f] == held[f][-1]
            cut = 0 if last.all() else len(held) - int(np.argmin(last[::-1]))
        ready, keep = held[:cut], held[cut:]
        self._held = [keep] if len(keep) else []
        self.rows_held = len(keep)
        return ready

    @staticmethod
    def groups(rows: np.ndarray, fields: tuple[str, ...]):
        """The ``(start, stop)`` bounds of each run of equal ``fields`` values in ``rows``."""
        if not len(rows):
            return []
        change = np.zeros(len(rows), dtype=bool)
        change[0] = True
        for f in fields:
            change[1:] |= rows[f][1:] != rows[f][:-1]
        starts = np.flatnonzero(change)
        return list(zip(starts.tolist(), np.r_[starts[1:], len(rows)].tolist()))

