"""The micro tables of docs/ come from the committed results file: every ``bench:`` block has an
entry there, regenerating changes nothing, and no page quotes a timing by hand outside a
generated block. Nothing here is timed."""
import json
import math
import pathlib

import pytest

from tallyio.bench import AREAS, docs
from tallyio.bench._harness import Comparison, Timing, comparison_dict, micro_results, ns_per_op

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "micro.json"
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]

# Hand-written timings that are not `tallyio bench` comparisons, with why each may stay until its
# own results file exists. Keyed by page and the line's first cell; a new stray line still fails.
KNOWN = {
    # one mainnet block's replay timings (plugins/tallyio-mainnet)
    ("docs/mainnet_replay.md", "JSON load"),
    ("docs/mainnet_replay.md", "`find_sandwiches`"),
    ("docs/mainnet_replay.md", "`find_cyclic_arbitrages`"),
}


def _rel(p):
    return str(p.relative_to(ROOT))


def _micro():
    with open(RESULTS, encoding="utf-8") as f:
        return json.load(f)


def test_the_committed_results_file_is_a_micro_file_with_its_provenance():
    r = _micro()
    assert r["kind"] == "micro"
    meta = r["meta"]
    for key in ("started", "finished", "machine", "loadavg_before", "loadavg_after",
                "steal_fraction", "noisy"):
        assert key in meta, key
    assert meta["machine"].get("commit")
    for area, entry in r["areas"].items():
        assert area in AREAS
        for c in entry["comparisons"]:
            for d in [c["subject"]] + c["peers"]:
                if d.get("not_installed"):
                    continue
                assert d["trials"] and d["min"] <= d["median"] <= d["max"]
                assert d["ns"] == pytest.approx(d["min"])
                assert d["ratio"] is None or d["ratio"] == pytest.approx(d["ns"] / c["subject"]["ns"])


def test_every_bench_block_has_an_entry_in_the_committed_file():
    areas = _micro()["areas"]
    seen = 0
    for page in PAGES:
        for area, match in docs.bench_markers(page.read_text(encoding="utf-8")):
            seen += 1
            assert area in areas, f"{_rel(page)}: bench:{area} has no entry in {_rel(RESULTS)}"
            if match is not None:
                assert any(match.lower() in c["operation"].lower()
                           for c in areas[area]["comparisons"]), (_rel(page), area, match)
    assert seen >= len(AREAS)  # every area is shown somewhere (performance.md has them all)


def test_regenerating_the_docs_changes_nothing():
    changed = docs.regenerate([str(RESULTS)], [str(ROOT / "docs"), str(ROOT / "README.md")],
                              write=False)
    assert not changed, ("out of date; run `" + docs.REGEN + "`: "
                         + ", ".join(_rel(pathlib.Path(p)) for p in changed))


def test_no_page_quotes_a_timing_outside_a_generated_block():
    stray = []
    for page in PAGES:
        for n, line in docs.stray_measurements(page.read_text(encoding="utf-8")):
            first = line.strip().strip("|").split("|")[0].strip()
            if (_rel(page), first) not in KNOWN:
                stray.append(f"{_rel(page)}:{n}: {line.strip()[:100]}")
    assert not stray, "hand-written timings (put them in a bench: block):\n" + "\n".join(stray)


@pytest.mark.parametrize("line", [
    "| allocate+release 64 B | 143 / 259 ns | 133 / 140 |",
    "| flood, time per item | 6.95 us | 9.63 us | 1.39x |",
    "| paced: P50 / P99 | 141 µs / 205 µs | 214 / 301 |",
    "cache get, hit (int64 value)       tallyio.StateCache.get                   67.7        1.00x",
])
def test_the_check_catches_hand_tables(line):
    assert docs.stray_measurements(f"# page\n\n{line}\n")


def test_the_check_catches_a_numeric_column_in_ns():
    doc = "| what | ns per pending swap |\n| --- | --- |\n| apply | 42 |\n"
    assert [n for n, _ in docs.stray_measurements(doc)] == [3]


@pytest.mark.parametrize("line", [
    "| P99 latency | < 1 ms | the plan's target |",
    "| spin | `spin` = 50 µs after the last row | a core |",
    "| `small` | 64 B (one cache line) | 1000 | 64 KB |",
    "the engine spins 50 us, then yields",
])
def test_the_check_leaves_targets_and_prose(line):
    assert not docs.stray_measurements(f"| a | b | c |\n| --- | --- | --- |\n{line}\n")


def test_generated_blocks_are_exempt_and_idempotent():
    r = {"kind": "micro", "meta": {"machine": {"commit": "abc"}, "quick": True},
         "areas": {"core": {"comparisons": [comparison_dict(Comparison(
             "op", ("tallyio x", Timing(10.0, [10.0, 12.0, 11.0])),
             [("peer", Timing(30.0, [30.0, 31.0])), ("gone", math.nan)]))]}}}
    doc = "# P\n<!-- bench:core:begin -->\nold\n<!-- bench:core:end -->\ntail\n"
    new = docs.update_micro(doc, r)
    assert docs.update_micro(new, r) == new
    assert "| op | tallyio x | 10.0 | 11.0 (10.0–12.0) | 1.00x |" in new
    assert "| peer | 30.0 | 30.5 (30.0–31.0) | 3.00x |" in new
    assert "not installed" in new and new.endswith("<!-- bench:core:end -->\ntail\n")
    assert not docs.stray_measurements(new)
    with pytest.raises(KeyError):
        docs.update_micro("<!-- bench:pool:begin -->\n<!-- bench:pool:end -->\n", r)


def test_a_missing_area_fails_and_writes_nothing(tmp_path):
    res = tmp_path / "m.json"
    res.write_text(json.dumps({"kind": "micro", "meta": {}, "areas": {}}))
    page = tmp_path / "p.md"
    page.write_text("<!-- bench:core:begin -->\n<!-- bench:core:end -->\n")
    assert docs.main([str(res), "--docs", str(tmp_path)]) == 1
    assert page.read_text() == "<!-- bench:core:begin -->\n<!-- bench:core:end -->\n"


def test_micro_results_records_every_trial_and_the_load():
    calls = iter([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0], [0.5, 0.5, 0.5]])

    def runner(area, quick):
        t = ns_per_op(lambda: None, repeat=3, number=10)
        return [Comparison(f"{area} op", ("tallyio", t), [("peer", t * 2)])]

    shown = []
    r = micro_results(["core", "cache"], quick=True, runner=runner,
                      load=lambda: next(calls), on_area=lambda a, c: shown.append(a))
    assert shown == ["core", "cache"]
    assert r["kind"] == "micro" and r["meta"]["quick"] is True
    assert r["meta"]["loadavg_before"] == [1.0, 1.0, 1.0]
    assert r["meta"]["loadavg_after"] == [0.5, 0.5, 0.5]
    assert r["areas"]["core"]["loadavg_before"] == [2.0, 2.0, 2.0]
    sub = r["areas"]["core"]["comparisons"][0]["subject"]
    assert len(sub["trials"]) == 3 and sub["trials_recorded"] and sub["ns"] == min(sub["trials"])
    peer = r["areas"]["core"]["comparisons"][0]["peers"][0]
    assert peer["trials_recorded"] is False and peer["ratio"] == pytest.approx(2.0)
    json.dumps(r)
