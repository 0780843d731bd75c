"""Make the plugin importable before it is installed, and locate the block data."""
from __future__ import annotations

import os
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

from tallyio_mainnet.source import sample_dir  # noqa: E402

# the full 25-block set lives outside the package; the tests fall back to the shipped sample
FULL_BLOCKS = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                                  REPO.parent / "shared" / "data" / "mainnet-blocks"))
FULL = FULL_BLOCKS.is_dir()
BLOCKS_DIR = FULL_BLOCKS if FULL else Path(sample_dir())
BLOCK_FILES = sorted((p for p in BLOCKS_DIR.glob("*.json") if p.stem.isdigit()),
                     key=lambda p: int(p.stem))
