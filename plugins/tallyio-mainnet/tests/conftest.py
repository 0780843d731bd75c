"""Make the plugin packages importable before they are installed (the block data: mainnet_data)."""
from __future__ import annotations

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
