"""Where the block data is: the full 25-block set outside the package, else the sample blocks
shipped with tallyio-mainnet. (Imported by this name, not from conftest: with several plugins'
tests in one run, another plugin's conftest module would shadow this one's.)"""
from __future__ import annotations

import os
from pathlib import Path

from tallyio_mainnet.source import sample_dir

REPO = Path(__file__).resolve().parents[3]
FULL_BLOCKS = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                                  REPO.parent / "shared" / "data" / "mainnet-blocks"))
FULL = FULL_BLOCKS.is_dir()
BLOCKS_DIR = FULL_BLOCKS if FULL else Path(sample_dir())
BLOCK_FILES = sorted((p for p in BLOCKS_DIR.glob("*.json") if p.stem.isdigit()),
                     key=lambda p: int(p.stem))
