"""Make the plugin packages importable before they are installed, and locate the block data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent
PLUGINS = PLUGIN.parent
REPO = PLUGINS.parent

# HERE: the tests' helper modules (blocks, vectors, mev_reference) under --import-mode=importlib
for p in (HERE, PLUGIN, PLUGINS / "tallyio-sandwich", PLUGINS / "tallyio-arbitrage"):
    if p.is_dir() and str(p) not in sys.path:
        sys.path.insert(0, str(p))
if (REPO / "tallyio").is_dir() and str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from tallyio_mainnet.source import sample_dir  # noqa: E402

# the full 25-block set lives outside the package; the tests fall back to the shipped sample
FULL_BLOCKS = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                                  REPO.parent / "shared" / "data" / "mainnet-blocks"))
BLOCKS_DIR = FULL_BLOCKS if FULL_BLOCKS.is_dir() else sample_dir()
BLOCK_FILES = sorted(p for p in BLOCKS_DIR.glob("*.json") if p.stem.isdigit())
VECTORS = HERE / "data"
REFERENCE = sample_dir() / "expected" / "12775690-sandwiches.json"
