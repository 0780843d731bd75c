"""Cross-pool AMM arbitrage for TallyIO: pending swaps (``processor``), mined ones (``cycles``)."""
from tallyio_arbitrage.amm import CrossPool, PoolBook, PriceTable, best_cross_pool, get_amount_out
from tallyio_arbitrage.processor import ArbitrageProcessor

__all__ = ["ArbitrageProcessor", "CrossPool", "PoolBook", "PriceTable", "best_cross_pool",
           "get_amount_out"]
