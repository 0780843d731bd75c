"""Packaging: the build compiles each extension once and rebuilds what a flag switch changes; the
extras, the Makefile and asv's config agree with pyproject.toml; and (TALLYIO_TEST_PACKAGING=1,
``make test-packaging``, run by CI) ``python -m build`` makes an sdist that builds without Cython
installed beforehand and a lean wheel that works from outside the source tree.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WHEEL_LIMIT = 3_500_000  # bytes; 3.40 MB at b2279f3: the sample feed 2.07 MB, the extensions 1.07 MB

packaging_run = pytest.mark.skipif(
    os.environ.get("TALLYIO_TEST_PACKAGING") != "1",
    reason="builds the sdist and the wheel (about 2 minutes): `make test-packaging`, run by CI")


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TALLYIO_DEBUG", "TALLYIO_SANITIZE",
                        "TALLYIO_MODULES", "TALLYIO_NO_EXTENSIONS")}
    env.update(extra)
    return env


# ---- what the project declares agrees with itself --------------------------------------------

def test_makefile_tests_the_oldest_python_of_requires_python():
    oldest = re.fullmatch(r">=\s*(3\.\d+)", PYPROJECT["project"]["requires-python"]).group(1)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^OLDEST_PYTHON := {re.escape(oldest)}$", makefile, re.M)
    newest = re.search(r"^NEWEST_PYTHON := 3\.(\d+)$", makefile, re.M)
    assert newest and int(newest.group(1)) > int(oldest.split(".")[1])


def test_tomli_backs_tomllib_before_3_11():
    deps = PYPROJECT["project"]["dependencies"]
    assert any(_name(d) == "tomli" and "python_version < '3.11'" in d.replace('"', "'")
               for d in deps), deps


def test_bench_extra_brings_every_peer():
    from tallyio.bench._harness import PEERS
    bench = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["bench"]}
    missing = sorted(set(PEERS.values()) - bench)
    assert not missing, f"`tallyio bench` compares against {missing}, which [bench] does not install"
    assert "prometheus-client" in bench  # `tallyio bench monitoring` scrapes the exporter


def test_missing_peer_is_named_not_a_nan_column(monkeypatch):
    from tallyio.bench import _harness
    monkeypatch.setitem(_harness.PEERS, "tallyio_no_such_peer", "no-such-peer")
    monkeypatch.setattr(_harness, "_told_missing", False)
    table = _harness.format_table([_harness.Comparison(
        "op", ("tallyio thing", 10.0), [("peer (not installed)", float("nan")), ("dict", 20.0)])])
    assert "nan" not in table
    assert "not installed" in table and "pip install 'tallyio[bench]'" in table
    assert "no-such-peer" in table
    assert "2.00x" in table


def test_asv_builds_and_installs_the_wheel_with_the_plugins():
    conf = json.loads((ROOT / "asv_bench/asv.conf.json").read_text())
    build = " ".join(conf["build_command"])
    install = " ".join(conf["install_command"])
    project_pin = next(r for r in PYPROJECT["build-system"]["requires"] if _name(r) == "setuptools")
    assert project_pin.replace(" ", "") in build.split(), (project_pin, build)
    assert "-w {build_cache_dir}" in build
    assert "{wheel_file}" in install
    # the plugins the engine finds through the `tallyio` entry points (the KPIs' strategies, the
    # mainnet source); a library plugin without any is not needed by the suite
    plugins = sorted(Path(p).parent.name for p in glob.glob(str(ROOT / "plugins/*/pyproject.toml"))
                     if "tallyio" in tomllib.loads(Path(p).read_text())["project"].get("entry-points", {}))
    assert {"tallyio-arbitrage", "tallyio-sandwich"} <= set(plugins), plugins
    for p in plugins:
        assert f"{{build_dir}}/plugins/{p}" in install, f"asv does not install plugins/{p}"
        assert p in " ".join(conf["uninstall_command"])


# ---- one build per change -----------------------------------------------------------------------

def test_one_build_per_change_and_flag_switches_rebuild(tmp_path):
    """`make build`'s step on one small extension (clock): built once, a second build compiles
    nothing, TALLYIO_DEBUG=1 rebuilds it with line tracing and debug info, and switching back
    rebuilds it stripped."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "tallyio", src / "tallyio",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "data"))
    for f in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    inplace = src / "tallyio/_core"

    def build(**env):
        p = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                           env=_clean_env(TALLYIO_MODULES="clock", **env), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        return "building 'tallyio._core.clock' extension" in p.stdout + p.stderr

    def so() -> bytes:
        (path,) = inplace.glob("clock.*.so")
        return path.read_bytes()

    assert build()
    release = so()
    assert b".debug_info" not in release and b".symtab" not in release  # -g0, stripped
    assert not build(), "a second build with nothing changed compiled again"
    assert build(TALLYIO_DEBUG="1"), "TALLYIO_DEBUG=1 after a release build did not rebuild"
    assert b".debug_info" in so()
    generated = src / "build/cython" / sys.implementation.cache_tag
    assert "__Pyx_TraceLine(" in (generated / "debug/tallyio/_core/clock.c").read_text()
    assert not build(TALLYIO_DEBUG="1")
    assert build(), "a release build after a debug one did not rebuild"
    assert so() == release
    assert "__Pyx_TraceLine(" not in (generated / "release/tallyio/_core/clock.c").read_text()
    assert not list(inplace.glob("*.c")), "generated C in the source tree"


# ---- the sdist and the wheel --------------------------------------------------------------------

def _tree(pattern: str) -> set[str]:
    return {str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / pattern))}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """``python -m build``: the sdist, then the wheel built from that sdist, each in an isolated
    environment holding only the build requirements (so Cython comes from them, not from here)."""
    assert importlib.util.find_spec("build"), "the `build` package is missing (the test extra has it)"
    out = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       env=_clean_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    (sdist,) = out.glob("tallyio-*.tar.gz")
    (wheel,) = out.glob("tallyio-*.whl")
    return sdist, wheel


@packaging_run
def test_sdist_holds_the_sources_not_generated_files(dist):
    import tarfile
    sdist, _ = dist
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    need = {"setup.py", "pyproject.toml", "README.md", "tallyio/py.typed",
            "tallyio/data/sample_feed.npz"}
    for pattern in ("tallyio/_core/*.pyx", "tallyio/_core/*.pxd", "tallyio/_core/*.pyi",
                    "tallyio/_core/include/tallyio/*.h"):
        need |= _tree(pattern)
    assert not need - names, sorted(need - names)
    generated = [n for n in names if n.endswith((".c", ".so", ".o"))]
    assert not generated, generated


@packaging_run
def test_wheel_is_lean_and_complete(dist):
    """What check-wheel-contents checks, and what this project needs."""
    _, wheel = dist
    size = wheel.stat().st_size
    print(f"wheel {wheel.name}: {size / 1e6:.2f} MB")
    assert size <= WHEEL_LIMIT, f"{wheel.name} is {size / 1e6:.2f} MB"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = z.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        sos = {n: z.read(n) for n in names if n.endswith(".so")}
    assert len(names) == len(set(names)), "duplicate files"
    assert {n.split("/")[0] for n in names} == {"tallyio", wheel.name.split("-")[0] + "-"
                                                + wheel.name.split("-")[1] + ".dist-info"}
    junk = [n for n in names if n.endswith((".c", ".pyx", ".pyc", ".o")) or "__pycache__" in n]
    assert not junk, junk
    recorded = {line.split(",")[0] for line in record.splitlines() if line}
    assert recorded == set(names)
    # every extension, stripped; and what users of it need: stubs, .pxd, headers, py.typed, data
    modules = {Path(p).stem for p in _tree("tallyio/_core/*.pyx")}
    built = {Path(n).name.split(".")[0] for n in sos}
    assert built == modules, (sorted(modules - built), sorted(built - modules))
    for n, data in sos.items():
        assert b".debug_info" not in data and b".symtab" not in data, f"{n} carries debug info"
    need = {"tallyio/py.typed", "tallyio/data/sample_feed.npz"}
    for pattern in ("tallyio/_core/*.pyi", "tallyio/_core/*.pxd", "tallyio/_core/include/tallyio/*.h",
                    "tallyio/*.pyi"):
        need |= _tree(pattern)
    assert not need - set(names), sorted(need - set(names))
    assert re.search(r"^Requires-Dist: tomli.*python_version < \"3\.11\"", metadata, re.M), metadata
    assert "tallyio = tallyio.cli:main" in entry_points


@packaging_run
def test_wheel_installs_and_runs_outside_the_tree(dist, tmp_path):
    """The wheel in a fresh venv (its dependencies from the index), the example strategy plugins
    beside it, then `tallyio info` and a short `tallyio run` from a directory outside the tree."""
    _, wheel = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = _clean_env()

    def run(*args, timeout=300):
        p = subprocess.run([str(a) for a in args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=timeout)
        assert p.returncode == 0, f"{args}: {p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        return p.stdout

    run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
        ROOT / "plugins/tallyio-arbitrage", ROOT / "plugins/tallyio-sandwich")
    where = run(py, "-c", "import tallyio, tallyio._core.ring; print(tallyio.__file__)").strip()
    assert Path(where).is_relative_to(venv), where
    tallyio = venv / "bin" / "tallyio"
    run(tallyio, "info")
    out = run(tallyio, "run", "--duration", "1")
    assert "arbitrage/arbitrage: 20" in out, out[-3000:]
    assert "sandwich/sandwich_opportunity: 10" in out, out[-3000:]
