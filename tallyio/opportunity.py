"""What strategies find: one ``Opportunity`` per detected arbitrage, sandwich, or chance at one."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Opportunity:
    """A detection by a strategy.

    ``profit`` is exact, in the smallest unit of ``profit_token`` (a 0x address), net of gas when
    the strategy says so in ``details["net_of_gas"]``. ``tx_ids`` are the ``id`` fields of the
    records involved; ``pools`` the 0x addresses of the pools. ``details`` holds the
    strategy-specific rest (amounts, positions, transaction hashes), JSON-serializable.
    ``reverted``: an attempt the chain undid (a reverted transaction's route, found in a replay):
    evidence of competition, reported with ``profit`` 0 and never totalled as profit.
    """

    strategy: str
    kind: str
    profit: int
    profit_token: str
    tx_ids: tuple[int, ...] = ()
    pools: tuple[str, ...] = ()
    block: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    reverted: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tx_ids"] = list(self.tx_ids)
        d["pools"] = list(self.pools)
        # JSON has no big ints in most consumers: keep exact amounts as decimal strings too
        d["profit_str"] = str(self.profit)
        return d
