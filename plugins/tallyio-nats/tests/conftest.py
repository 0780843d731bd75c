"""A real nats-server (JetStream, file storage) per test, started on 127.0.0.1 and stopped after;
the single-engine reference run of the bundled feed."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tallyio.engine import DEFAULT_FEED, Engine
from tallyio_nats.gather import single_engine
from tallyio_nats.server import NatsServer

# the helper module (shards) importable under --import-mode=importlib
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def nats_server(tmp_path):
    log = open(tmp_path / "nats-server.log", "wb")
    srv = NatsServer(tmp_path / "store", log=log)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        log.close()


@pytest.fixture(scope="session")
def feed_rows():
    source = Engine()._resolve_source(DEFAULT_FEED)
    return np.concatenate(list(source)), source.metadata


@pytest.fixture(scope="session")
def reference(feed_rows):
    """One engine over the whole bundled feed, keyed like the shards' results."""
    rows, _ = feed_rows
    report = Engine().run(DEFAULT_FEED)
    assert report.complete and report.opportunities_total == len(report.opportunities) > 0
    return single_engine(report.opportunities, rows)
