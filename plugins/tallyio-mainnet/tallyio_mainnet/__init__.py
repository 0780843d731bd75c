"""Replay mined Ethereum blocks through TallyIO: decode swaps (Uniswap V2/V3, Balancer V1/V2, Curve,
Bancor, 0x native orders) from call traces."""
from tallyio_mainnet.decode import Swap, block_files, decode_block, decode_swaps, read_blocks
from tallyio_mainnet.source import MainnetTraceSource, sample_dir

__version__ = "0.1.0"

__all__ = [
    "MainnetTraceSource",
    "Swap",
    "block_files",
    "decode_block",
    "decode_swaps",
    "read_blocks",
    "sample_dir",
]
