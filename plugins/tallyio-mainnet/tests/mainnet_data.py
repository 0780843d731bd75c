"""Where the tests' block data and vectors are (a module of its own: the tests import it by a name
no other plugin's tests use, where two ``conftest`` modules in one run would shadow each other)."""
from __future__ import annotations

import os
from pathlib import Path

from tallyio_mainnet.source import sample_dir

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent
REPO = HERE.parents[2]

# the full 25-block set lives outside the package; the tests fall back to the shipped sample
FULL_BLOCKS = Path(os.environ.get("TALLYIO_MAINNET_BLOCKS",
                                  REPO.parent / "shared" / "data" / "mainnet-blocks"))
BLOCKS_DIR = FULL_BLOCKS if FULL_BLOCKS.is_dir() else sample_dir()
BLOCK_FILES = sorted(p for p in BLOCKS_DIR.glob("*.json") if p.stem.isdigit())
VECTORS = HERE / "data"
REFERENCE = sample_dir() / "expected" / "12775690-sandwiches.json"
