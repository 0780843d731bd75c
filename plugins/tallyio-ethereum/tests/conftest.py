"""Make the plugin and this directory's helpers importable before the plugin is installed (the
block data locations are in ethereum_data.py), and the recorded chain the live tests serve."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent
PLUGINS = PLUGIN.parent
REPO = PLUGINS.parent

for p in (HERE, PLUGIN, PLUGINS / "tallyio-mainnet"):
    if p.is_dir() and str(p) not in sys.path:
        sys.path.insert(0, str(p))
if (REPO / "tallyio").is_dir() and str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def chain():
    """The recorded blocks as the test node serves them (``rpc_server.Chain``)."""
    from ethereum_data import BLOCK_FILES
    from rpc_server import recorded_chain
    return recorded_chain(BLOCK_FILES)


@pytest.fixture(scope="session")
def reference(chain):
    """The decoder's rows for the whole pending stream: what a live source must yield."""
    from tallyio_ethereum.calldata import decode_transactions
    return decode_transactions(chain.stream)
