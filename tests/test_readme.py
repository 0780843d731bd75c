"""The README works verbatim in any clone: every command of its fenced ``sh`` blocks runs (the long
ones are listed in EXCLUDED, with the reason, and only checked for what they name), and every path
and link it gives exists in the repository.

The commands run from the repository root with the venv running these tests standing in for
``.venv`` (so ``make test-pythons`` checks them on each Python), one at a time.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Commands not run here, with the reason; their paths, make targets and tallyio arguments are
# still checked (test_excluded_commands_name_what_exists).
EXCLUDED = {
    "make test": "the suite this test belongs to",
    ".venv/bin/tallyio bench": "every peer comparison: minutes (tests/bench cover each area)",
    ".venv/bin/tallyio bench kpi": "the KPI runs: minutes",
    ".venv/bin/tallyio bench --ab memory_pool": "fresh processes, repeats: minutes",
    "make bench": "the asv suite: minutes",
    "cd asv_bench && ../.venv/bin/asv run --python=same": "the full asv suite: tens of minutes",
    "cd asv_bench && ../.venv/bin/asv run HEAD~5..HEAD && ../.venv/bin/asv publish":
        "builds five commits in fresh virtualenvs",
    "cd asv_bench && ../.venv/bin/asv continuous HEAD~1 HEAD": "builds two commits in fresh virtualenvs",
    "TALLYIO_DEBUG=1 make build":
        "rebuilds every extension this session has loaded (tests/test_packaging.py switches the "
        "flags of one extension in a copy)",
    "TALLYIO_SANITIZE=1 make build": "rebuilds every extension this session has loaded",
    "make test-pythons": "the suite twice more, on 3.10 and 3.13: CI runs it (.ci/run)",
    "make test-packaging": "builds the sdist and the wheel: CI runs it (.ci/run)",
    "make dist": "builds the sdist and the wheel (make test-packaging does, in CI)",
}

# What the quick commands must print besides exiting 0: the bundled sample feed's planted answer.
SAMPLE_ANSWER = ("arbitrage/arbitrage: 20", "sandwich/sandwich_opportunity: 10")
EXPECT = {
    "make run": SAMPLE_ANSWER,
    ".venv/bin/tallyio run": SAMPLE_ANSWER,
    ".venv/bin/tallyio run --speed 1": SAMPLE_ANSWER,
    ".venv/bin/tallyio run --feed plugins/tallyio-mainnet/tallyio_mainnet/data": ("opportunities",),
    ".venv/bin/tallyio plugins": ("processors: arbitrage", "mainnet-trace"),
}

# Paths the README names that are not in a clone, with the reason.
OUTSIDE = {"../shared/data/mainnet-blocks/": "the full block set of this workspace, beside the clone"}
# Build outputs the README names: they exist once built.
GENERATED = ("build/", "dist/", ".venv")


def _commands() -> list[str]:
    """Every command line of the README's ``sh`` blocks, its trailing comment stripped."""
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S):
        for line in block.splitlines():
            cmd = re.sub(r"\s+#\s.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                out.append(" ".join(cmd.split()))
    return out


COMMANDS = _commands()
RUN = [c for c in COMMANDS if c not in EXCLUDED]


def _venv() -> tuple[str, bool]:
    """(the path that stands in for ``.venv``, whether it is inside the repository)."""
    prefix = Path(sys.prefix).resolve()
    try:
        return str(prefix.relative_to(ROOT)), True
    except ValueError:
        return str(prefix), False


def _localize(cmd: str) -> str:
    """``cmd`` with the venv running the tests in place of ``.venv``."""
    venv, inside = _venv()

    def sub(m):
        lead = m.group(1)
        if not inside and lead.endswith("../"):
            lead = lead[:-3]
        return f"{lead}{venv}/"
    return re.sub(r"(^|\s|\.\./)\.venv/", sub, cmd)


def _env() -> dict:
    env = dict(os.environ)
    # a clean make, not one inheriting the jobserver or the variables of a `make test` above
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    env["VENV"] = _venv()[0]
    env.pop("PYTHONPATH", None)
    return env


def test_readme_has_the_first_commands_first():
    assert COMMANDS[:2] == ["make run", "make test"]


def test_every_exclusion_is_a_readme_command():
    stale = sorted(set(EXCLUDED) - set(COMMANDS))
    assert not stale, f"EXCLUDED lists commands the README no longer has: {stale}"


def test_commands_are_quick_enough_to_run():
    assert RUN, "no README command left to run"
    assert set(EXPECT) <= set(RUN)


@pytest.mark.parametrize("cmd", RUN)
def test_readme_command_runs(cmd):
    if cmd.startswith("make") or " make " in cmd:
        if not _venv()[1]:
            pytest.skip("the tests run outside the repository's venvs: make would build a new .venv")
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
    report = ROOT / "report.json"
    had_report = report.exists()
    try:
        p = subprocess.run(_localize(cmd), shell=True, cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, f"{cmd!r} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        for want in EXPECT.get(cmd, ()):
            assert want in p.stdout, f"{cmd!r} did not print {want!r}:\n{p.stdout[-3000:]}"
        if "--json report.json" in cmd:
            assert json.loads(report.read_text()), "report.json is empty"
            if shutil.which("git") and (ROOT / ".git").exists():
                ignored = subprocess.run(["git", "check-ignore", "-q", "report.json"], cwd=ROOT)
                assert ignored.returncode == 0, ".gitignore does not cover report.json"
    finally:
        if not had_report and report.exists():
            report.unlink()


def _path_tokens(cmd: str) -> list[tuple[str, Path]]:
    """(token, where it points) for every token of ``cmd`` that names a path, following ``cd``."""
    out, cwd = [], ROOT
    for part in cmd.split("&&"):
        words = shlex.split(_localize(part))
        if words[:1] == ["cd"]:
            cwd = cwd / words[1]
            out.append((words[1], cwd))
            continue
        for w in words:
            if "/" in w and not w.startswith("-") and "=" not in w:
                out.append((w, cwd / w))
    return out


@pytest.mark.parametrize("cmd", sorted(EXCLUDED))
def test_excluded_commands_name_what_exists(cmd):
    if cmd not in COMMANDS:
        pytest.skip("not in the README (test_every_exclusion_is_a_readme_command says so)")
    for token, path in _path_tokens(cmd):
        assert path.exists(), f"{cmd!r}: {token} does not exist ({path})"
    words = shlex.split(cmd.split("&&")[-1])
    words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        for t in words[1:]:
            assert t in targets, f"{cmd!r}: the Makefile has no target {t}"
    elif words[0].endswith("/tallyio"):
        from tallyio.cli import build_parser
        build_parser().parse_args(words[1:])  # exits (SystemExit) on arguments it does not take


def _readme_paths() -> list[str]:
    """Every relative link target, and every backticked path (a token with a '/'), of the README."""
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    ticks = [t for t in re.findall(r"`([^`\s]+)`", text) if "/" in t]
    out = []
    for p in links + ticks:
        if re.match(r"^[a-z]+://", p) or p.startswith("#"):
            continue
        if re.search(r"[*|<>=]", p) or p.startswith(GENERATED):
            continue  # a pattern, an alternative, an assignment, or a build output
        out.append(p.split("#")[0])
    return sorted(set(out))


@pytest.mark.parametrize("path", _readme_paths())
def test_readme_path_exists(path):
    if path in OUTSIDE:
        # named as lying outside the repository, and said so next to it
        line = next(ln for ln in README.read_text().splitlines() if path in ln)
        assert "beside the clone" in line, (path, OUTSIDE[path])
        return
    assert not path.startswith("../"), f"{path} points outside the repository"
    assert (ROOT / path).exists(), f"the README names {path}, which is not in the repository"


def test_attribution_lists_the_bundled_blocks():
    """The bundled mainnet blocks' ATTRIBUTION.md (linked from the README) lists every file there."""
    data = ROOT / "plugins/tallyio-mainnet/tallyio_mainnet/data"
    listed = set(re.findall(r"^\| `([^`]+)` \|", (data / "ATTRIBUTION.md").read_text(), re.M))
    present = {str(p.relative_to(data)) for p in data.rglob("*.json")}
    assert listed == present
