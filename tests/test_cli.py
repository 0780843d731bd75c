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
    assert p.returncode == 2 and "--rate must be in [0, 1e8] tx/s (0: the feed's own timing), " \
        "got -5.0" in p.stderr


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


# ---- bad input: one line on stderr naming the flag, file or key, exit 2, before any work ----

def run_main(capsys, *args):
    """The CLI in this process (fast): for errors caught before anything is built."""
    from tallyio.cli import main
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("flag, value, wants", [
    ("--speed", "nan", "in [0, 1e6] (0: as fast as possible, 1: recorded speed)"),
    ("--speed", "inf", "in [0, 1e6] (0: as fast as possible, 1: recorded speed)"),
    ("--speed", "-1", "in [0, 1e6] (0: as fast as possible, 1: recorded speed)"),
    ("--rate", "inf", "in [0, 1e8] tx/s (0: the feed's own timing)"),
    ("--rate", "nan", "in [0, 1e8] tx/s (0: the feed's own timing)"),
    ("--rate", "1e9", "in [0, 1e8] tx/s (0: the feed's own timing)"),
    ("--duration", "-5", "in (0, 1e9] seconds (leave it out to run the feed to its end)"),
    ("--duration", "0", "in (0, 1e9] seconds (leave it out to run the feed to its end)"),
    ("--duration", "nan", "in (0, 1e9] seconds (leave it out to run the feed to its end)"),
    ("--duration", "inf", "in (0, 1e9] seconds (leave it out to run the feed to its end)"),
    ("--interval", "0", "in (0, 3600] seconds"),
    ("--interval", "nan", "in (0, 3600] seconds"),
])
def test_bad_number_flags_are_rejected_before_the_run(capsys, flag, value, wants):
    rc, out, err = run_main(capsys, "run", "-q", flag, value)
    assert rc == 2 and out == ""  # no report: nothing ran
    assert err == f"tallyio run: {flag} must be {wants}, got {float(value)!r}\n"


def test_show_and_repeats_must_be_non_negative(capsys):
    assert run_main(capsys, "run", "-q", "--show", "-1") == (
        2, "", "tallyio run: --show must be >= 0, got -1\n")
    assert run_main(capsys, "bench", "--repeats", "0", "kpi") == (
        2, "", "tallyio bench: --repeats must be >= 1, got 0\n")


def test_json_path_is_checked_before_the_run(capsys, tmp_path):
    missing = tmp_path / "no-such-dir" / "report.json"
    rc, out, err = run_main(capsys, "run", "-q", "--json", str(missing))
    assert (rc, out) == (2, "")
    assert err == f"tallyio run: --json {missing}: cannot write: No such file or directory\n"
    rc, out, err = run_main(capsys, "run", "-q", "--json", str(tmp_path))
    assert (rc, out, err) == (2, "", f"tallyio run: --json {tmp_path}: is a directory, not a file\n")
    rc, out, err = run_main(capsys, "bench", "kpi", "--json", str(missing))
    assert (rc, out) == (2, "") and err.startswith(f"tallyio bench: --json {missing}: cannot write")
    # the check leaves no file behind when the run then fails for another reason
    fresh = tmp_path / "fresh.json"
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nring_capacity = 3\n")
    rc, out, err = run_main(capsys, "run", "-q", "--json", str(fresh), "--config", str(bad))
    assert rc == 2 and not fresh.exists()


def test_plugins_with_a_bad_config(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[plugins]\nmodules = 3\n")
    rc, out, err = run_main(capsys, "plugins", "--config", str(bad))
    assert (rc, out) == (2, "")
    assert err == f"tallyio plugins: {bad}: [plugins] modules must be of type list, got 3\n"


def _sample_blocks(tmp_path, truncate=None):
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    for f in sorted(os.listdir(SAMPLE_BLOCKS)):
        if f.endswith(".json"):
            with open(os.path.join(SAMPLE_BLOCKS, f), "rb") as fh:
                data = fh.read()
            if f == truncate:
                data = data[:3000]
            (blocks / f).write_bytes(data)
    return blocks


SAMPLE_BLOCKS = os.path.join(ROOT, "plugins", "tallyio-mainnet", "tallyio_mainnet", "data")
TRUNCATED = "13323642.json"


def _bad_inputs(tmp_path):
    """(name, args, what stderr must say): each of the issue's probes."""
    header = tmp_path / "header.csv"
    header.write_text("arrival_ns,protocol,token_in,token_out,amount_in\n")
    sample = os.path.join(ROOT, "tallyio", "data", "sample_feed.npz")
    cut = tmp_path / "cut.npz"
    with open(sample, "rb") as f:
        cut.write_bytes(f.read()[:5000])
    noise = tmp_path / "noise.npy"
    noise.write_bytes(os.urandom(2048))
    big = tmp_path / "big.toml"
    big.write_text("[engine]\nring_capacity = 1099511627776\n")
    jsonl = tmp_path / "jsonl.toml"
    jsonl.write_text('[sinks]\nnames = ["jsonl"]\n')
    fail = tmp_path / "fail.toml"
    fail.write_text('[source]\noptions = { on_bad_file = "fail" }\n')
    blocks = _sample_blocks(tmp_path, truncate=TRUNCATED)
    min_profit = tmp_path / "min_profit.toml"
    min_profit.write_text('[processors.arbitrage]\nmin_profit = "abc"\n')
    source_option = tmp_path / "source_option.toml"
    source_option.write_text("[source]\noptions = { bogus = 1 }\n")
    sink_option = tmp_path / "sink_option.toml"
    sink_option.write_text('[sinks]\nnames = ["memory"]\n[sinks.options.memory]\nbogus = 1\n')
    return {
        "csv_header_only": (["--feed", str(header)], f"{header}: an empty feed (no rows)"),
        "truncated_npz": (["--feed", str(cut)], f"{cut}: not a .npz file (not a zip archive)"),
        "random_npy": (["--feed", str(noise)], f"{noise}: not a .npy array"),
        "ring_capacity": (["--config", str(big)],
                          f"{big}: [engine] ring_capacity must be a power of two in [2, 2**24], "
                          f"got 1099511627776"),
        "jsonl_no_path": (["--config", str(jsonl)], "jsonl sink: path must name a file"),
        "mainnet_fail": (["--feed", str(blocks), "--config", str(fail)],
                         f"{blocks / TRUNCATED}: not valid JSON: Unterminated string"),
        "min_profit": (["--config", str(min_profit)],
                       "[processors.arbitrage]: bad options {'min_profit': 'abc'}: min_profit must "
                       "be an int >= 0, got 'abc'"),
        "source_option": (["--config", str(source_option)],
                          "[source] file: bad options {'bogus': 1}: "),
        "sink_option": (["--config", str(sink_option)],
                        "[sinks] options.memory: bad options {'bogus': 1}: "),
    }


@pytest.mark.parametrize("probe", ["csv_header_only", "truncated_npz", "random_npy",
                                   "ring_capacity", "jsonl_no_path", "mainnet_fail", "min_profit",
                                   "source_option", "sink_option"])
def test_bad_input_is_one_line_exit_2(tmp_path, probe):
    args, says = _bad_inputs(tmp_path)[probe]
    p = tallyio("run", "--quiet", *args)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr.startswith("tallyio run: ") and p.stderr.count("\n") == 1, p.stderr
    assert says in p.stderr


def test_bad_block_file_is_skipped_named_and_the_rest_read(tmp_path):
    blocks = _sample_blocks(tmp_path, truncate=TRUNCATED)
    out = tmp_path / "r.json"
    p = tallyio("run", "--feed", str(blocks), "--quiet", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    [warning] = [line for line in p.stderr.splitlines() if "WARNING" in line]
    assert f"{blocks / TRUNCATED}: not valid JSON" in warning and "skipped" in warning
    d = json.loads(out.read_text())
    # every swap of the three good sample blocks, none of the bad one's
    from tallyio_mainnet.source import MainnetTraceSource
    good = [f for f in sorted(blocks.iterdir()) if f.name != TRUNCATED]
    assert len(good) == 3
    want = sum(len(chunk) for f in good for chunk in MainnetTraceSource(f))
    assert want > 0 and d["ingested"] == want
    assert d["rejected"] == {"bad_block_file": 1}  # counted among the rejected reasons
    assert "bad_block_file=1" in p.stdout


BROKEN_SINK = '''
from tallyio import hookimpl


class BrokenSink:
    def emit(self, opportunities):
        raise OSError("disk full")


@hookimpl
def register_sinks(register):
    register("broken", BrokenSink)
'''


def test_failing_sink_is_logged_once_and_counted(tmp_path):
    (tmp_path / "broken_sink.py").write_text(BROKEN_SINK)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[plugins]\nmodules = ["broken_sink"]\n[sinks]\nnames = ["memory", "broken"]\n'
                   '[optimizations]\ncircuit_breaker = "off"\n')
    out = tmp_path / "r.json"
    p = tallyio("run", "--config", str(cfg), "--quiet", "--json", str(out),
                PYTHONPATH=str(tmp_path))
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["sink_errors"] > 1  # one per batch with opportunities...
    assert p.stderr.count("Traceback") == 1  # ...logged once
    assert p.stderr.count("sink broken failed") == 1 and "disk full" in p.stderr
