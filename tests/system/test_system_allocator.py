import os
import subprocess
import sys

import pytest

from tallyio.system import (allocator_status, default_malloc_conf, ensure_jemalloc, find_jemalloc, jemalloc_env,
                            live_allocator)
from tallyio.system._errors import OptimizationUnavailableError
from tallyio.system.allocator import REEXEC_MARKER

INSTALLED = find_jemalloc()  # this machine's real jemalloc, or None: both branches are tested


def _maps(tmp_path, *libs):
    p = tmp_path / "maps"
    p.write_text("".join(f"7f00-7f01 r-xp 00000000 08:01 1 {lib}\n" for lib in libs)
                 + "7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n")
    return str(p)


@pytest.fixture
def fake_lib(tmp_path):
    p = tmp_path / "libjemalloc.so.2"
    p.write_bytes(b"\x7fELF")
    return str(p)


@pytest.fixture(autouse=True)
def _no_explicit_library(monkeypatch):
    monkeypatch.delenv("TALLYIO_JEMALLOC", raising=False)
    monkeypatch.delenv(REEXEC_MARKER, raising=False)


def test_live_allocator_from_maps(tmp_path):
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert live_allocator(_maps(tmp_path, libc, "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")) == "jemalloc"
    assert live_allocator(_maps(tmp_path, libc, "/usr/lib/libtcmalloc_minimal.so.4")) == "tcmalloc"
    assert live_allocator(_maps(tmp_path, libc)) == "glibc"
    assert live_allocator(_maps(tmp_path)) == "unknown"
    assert live_allocator(str(tmp_path / "nope")) == "unknown"
    assert live_allocator() in ("glibc", "jemalloc")


def test_find_jemalloc_injected(fake_lib, tmp_path, monkeypatch):
    assert find_jemalloc((str(tmp_path / "missing.so"), fake_lib)) == fake_lib
    assert find_jemalloc(()) is None
    monkeypatch.setenv("TALLYIO_JEMALLOC", fake_lib)
    assert find_jemalloc(()) == fake_lib
    monkeypatch.setenv("TALLYIO_JEMALLOC", str(tmp_path / "missing.so"))
    assert find_jemalloc() is None


def test_malloc_conf_defaults():
    assert default_malloc_conf(8) == ("background_thread:true,metadata_thp:auto,dirty_decay_ms:10000,"
                                      "muzzy_decay_ms:10000,narenas:8")
    assert default_malloc_conf().endswith(f"narenas:{len(os.sched_getaffinity(0))}")
    with pytest.raises(ValueError, match="ncpu must be an integer >= 1, got 0"):
        default_malloc_conf(0)


def test_jemalloc_env(fake_lib, tmp_path):
    env = jemalloc_env({"PATH": "/bin", "LD_PRELOAD": "/opt/libfoo.so"}, library=fake_lib, ncpu=4)
    assert env["LD_PRELOAD"] == f"{fake_lib}:/opt/libfoo.so"
    assert env["MALLOC_CONF"].endswith("narenas:4") and env["PATH"] == "/bin"
    again = jemalloc_env(env, library=fake_lib)
    assert again["LD_PRELOAD"] == env["LD_PRELOAD"]  # not preloaded twice
    mine = jemalloc_env({"MALLOC_CONF": "narenas:1"}, library=fake_lib)
    assert mine["MALLOC_CONF"] == "narenas:1"  # an operator's own tuning wins
    with pytest.raises(OptimizationUnavailableError, match="allocator is 'on' but unavailable: jemalloc library"):
        jemalloc_env({}, library=str(tmp_path / "missing.so"))


def test_ensure_reexecs_with_preload(fake_lib, tmp_path):
    calls = []
    s = ensure_jemalloc("auto", library=fake_lib, argv=["python", "-m", "tallyio", "run"],
                        execve=lambda *a: calls.append(a), maps_path=_maps(tmp_path, "/lib/libc.so.6"), env={})
    (exe, argv, env), = calls
    assert exe == sys.executable and argv == ["python", "-m", "tallyio", "run"]
    assert env["LD_PRELOAD"] == fake_lib and env[REEXEC_MARKER] == "1"
    assert env["MALLOC_CONF"].startswith("background_thread:true")
    assert s.active


def test_ensure_when_already_live_does_not_exec(fake_lib, tmp_path):
    calls = []
    s = ensure_jemalloc("on", library=fake_lib, execve=lambda *a: calls.append(a),
                        maps_path=_maps(tmp_path, "/lib/libc.so.6", "/lib/libjemalloc.so.2"))
    assert s.active and s.allocator == "jemalloc" and calls == []


def test_ensure_missing_auto_on_off(tmp_path, caplog):
    missing = str(tmp_path / "missing.so")
    maps = _maps(tmp_path, "/lib/libc.so.6")
    calls = []
    s = ensure_jemalloc("auto", library=missing, execve=lambda *a: calls.append(a), maps_path=maps)
    assert not s.active and s.allocator == "glibc" and "does not exist" in s.reason and calls == []
    assert any("jemalloc not active" in r.getMessage() for r in caplog.records)
    with pytest.raises(OptimizationUnavailableError, match="allocator is 'on' but unavailable"):
        ensure_jemalloc("on", library=missing, execve=lambda *a: calls.append(a), maps_path=maps)
    s = ensure_jemalloc("off", library=missing, execve=lambda *a: calls.append(a), maps_path=maps)
    assert not s.active and s.reason == "off in config" and calls == []
    with pytest.raises(ValueError, match="allocator mode must be 'auto', 'on' or 'off', got 1"):
        ensure_jemalloc(1)


def test_ensure_does_not_loop_when_preload_fails(fake_lib, tmp_path):
    maps = _maps(tmp_path, "/lib/libc.so.6")
    calls = []
    env = {REEXEC_MARKER: "1"}
    s = ensure_jemalloc("auto", library=fake_lib, execve=lambda *a: calls.append(a), maps_path=maps, env=env)
    assert not s.active and "still live" in s.reason and calls == []
    with pytest.raises(OptimizationUnavailableError, match="still live"):
        ensure_jemalloc("on", library=fake_lib, execve=lambda *a: calls.append(a), maps_path=maps, env=env)


def test_allocator_status(fake_lib, tmp_path):
    maps = _maps(tmp_path, "/lib/libc.so.6")
    assert allocator_status("auto", library=fake_lib, maps_path=maps).active
    s = allocator_status("auto", library=str(tmp_path / "x.so"), maps_path=maps)
    assert not s.active and "does not exist" in s.reason
    assert allocator_status("off", library=fake_lib, maps_path=maps).reason == "off in config"


def _child(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


CHILD = ("import os; from tallyio.system import ensure_jemalloc, live_allocator\n"
         "s = ensure_jemalloc({mode!r})\n"
         "print(s.allocator, s.active, live_allocator(), os.environ.get('MALLOC_CONF', '-'))\n")


def test_real_child_process():
    """The real thing, whichever way this machine is: a child started with jemalloc_env runs
    jemalloc; without jemalloc installed, building the env is the clear error."""
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    if INSTALLED:
        r = _child("from tallyio.system import live_allocator; print(live_allocator())", jemalloc_env(base))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["jemalloc"]
    else:
        with pytest.raises(OptimizationUnavailableError, match="jemalloc is not installed"):
            jemalloc_env(base)


def test_real_reexec():
    """ensure_jemalloc in a fresh interpreter: re-executes into jemalloc where it is installed,
    says so and carries on where it is not; 'on' without it exits with the error."""
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    r = _child(CHILD.format(mode="auto"), base)
    assert r.returncode == 0, r.stderr
    allocator, active, live, conf = r.stdout.split()
    if INSTALLED:
        assert (allocator, active, live) == ("jemalloc", "True", "jemalloc")
        assert conf.startswith("background_thread:true")
    else:
        assert (allocator, active, live, conf) == ("glibc", "False", "glibc", "-")
        assert "jemalloc is not installed" in r.stderr
    missing = dict(base, TALLYIO_JEMALLOC="/nonexistent/libjemalloc.so.2")
    r = _child(CHILD.format(mode="on"), missing)
    assert r.returncode != 0
    assert "OptimizationUnavailableError: allocator is 'on' but unavailable: jemalloc library" in r.stderr
