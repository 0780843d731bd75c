"""Cross-pool AMM arbitrage for TallyIO: pending swaps (``processor``: the compiled screen over the
engine's pool book, ``tallyio.amm``), mined ones (``cycles``)."""
from tallyio_arbitrage.processor import ArbitrageProcessor

__all__ = ["ArbitrageProcessor"]
