"""TallyIO plugin for real Ethereum pending transactions: router calldata decoded into
``TX_DTYPE`` swap rows (``calldata``) and replayed exactly against mined blocks (``replay``)."""
from tallyio_ethereum.calldata import SIDE_DTYPE, Decoded, decode_transactions

__all__ = ["SIDE_DTYPE", "Decoded", "decode_transactions"]
