"""A real nats-server (JetStream, file storage) per test, started on 127.0.0.1 and stopped after;
the single-engine reference run of the bundled feed."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tallyio.engine import DEFAULT_FEED, Engine
from tallyio_nats.gather import single_engine
from tallyio_nats.server import NatsServer

TALLYIO = os.path.join(os.path.dirname(sys.executable), "tallyio")
TIMEOUT = 120  # seconds: generous, a loaded two-core machine


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


def engine(url: str, partitions: str) -> subprocess.Popen:
    """``tallyio run --source URL --partitions P``: one engine process, the real command line."""
    return subprocess.Popen([TALLYIO, "run", "-q", "--show", "0", "--source", url,
                             "--partitions", partitions],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(procs) -> list[str]:
    """Wait for every engine; each must exit 0. Their output."""
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=TIMEOUT)
        outs.append(out.decode(errors="replace"))
        assert p.returncode == 0, outs[-1][-3000:]
    return outs
