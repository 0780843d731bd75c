"""Make the plugin and this directory's helpers importable before the plugin is installed (the
block data locations are in ethereum_data.py)."""
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
