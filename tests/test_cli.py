"""The command line, run as a user runs it: a subprocess."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TALLYIO__OPTIMIZATIONS__ALLOCATOR="off")  # no re-exec under jemalloc here


def tallyio(*args, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "tallyio", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=dict(ENV, **env))


def test_run_bundled_sample_writes_the_report(tmp_path):
    out = tmp_path / "report.json"
    # breakers off: on a loaded CI machine a slow batch could open one and skip planted swaps
    p = tallyio("run", "--json", str(out), "--quiet", TALLYIO__OPTIMIZATIONS__CIRCUIT_BREAKER="off")
    assert p.returncode == 0, p.stderr
    assert "end to end" in p.stdout and "opportunities" in p.stdout
    d = json.loads(out.read_text())
    assert d["ingested"] == 30_000
    accounted = d["processed"] + sum(v for k, v in d["rejected"].items()
                                     if k in ("expired", "duplicate"))
    assert accounted == 30_000
    assert {"arbitrage", "sandwich"} <= set(d["processors"])
    kinds = [o["kind"] for o in d["opportunities"]]
    # exactly what tallyio.synthetic planted in the sample: 20 arbitrages, 10 sandwiches
    assert kinds.count("arbitrage") == 20 and kinds.count("sandwich_opportunity") == 10


def test_run_mainnet_blocks_directory():
    blocks = os.path.join(ROOT, "plugins", "tallyio-mainnet", "tallyio_mainnet", "data")
    p = tallyio("run", "--feed", blocks, "--quiet")
    assert p.returncode == 0, p.stderr
    assert "sandwich/sandwich" in p.stdout  # block 12775690's published sandwich


def test_run_errors_are_clear(tmp_path):
    p = tallyio("run", "--feed", str(tmp_path / "missing.npz"), "--quiet")
    assert p.returncode == 2 and "does not exist" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[batching]\nbatch_size = 0\n")
    p = tallyio("run", "--config", str(bad))
    assert p.returncode == 2 and f"{bad}: [batching] batch_size must be >= 1, got 0" in p.stderr
    p = tallyio("run", "--rate", "-5")
    assert p.returncode == 2 and "--rate must be >= 0 tx/s, got -5" in p.stderr


def test_info_and_plugins():
    p = tallyio("info", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d["switches"]) >= {"circuit_breaker", "cpu_affinity", "simd", "allocator"}
    p = tallyio("plugins", "--json")
    d = json.loads(p.stdout)
    assert d["registered"]["processors"] == {"arbitrage": "arbitrage", "sandwich": "sandwich"}
    assert "mainnet-trace" in d["registered"]["sources"]


def test_bench_rejects_unknown_area():
    p = tallyio("bench", "nosuch")
    assert p.returncode == 2 and "unknown area 'nosuch'" in p.stderr
    p = tallyio("bench", "--ab", "warp_drive", "--repeats", "1")
    assert p.returncode == 2 and "switch must be one of" in p.stderr


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_drains_and_reports(tmp_path, signame):
    import signal
    import time
    out = tmp_path / "r.json"
    # a paced synthetic feed long enough to still be running when the signal comes
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nkind = "synthetic"\nrate = 20000.0\noptions = { n = 400000 }\n')
    proc = subprocess.Popen([sys.executable, "-m", "tallyio", "run", "--config", str(cfg), "--json",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV)
    deadline = time.monotonic() + 300
    line = ""
    while "processed=" not in line and time.monotonic() < deadline:  # wait for the first progress line
        line = proc.stderr.readline()
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    d = json.loads(out.read_text())
    assert 0 < d["ingested"] < 400_000  # stopped early...
    assert d["processed"] + d["rejected"].get("expired", 0) + d["rejected"].get("duplicate", 0) \
        == d["ingested"]  # ...and drained everything it had accepted
    assert "draining and stopping" in stderr
