import json

import pytest

from tallyio.system import SWITCHES, cli_info, format_info, info, read_topology, require_switches
from tallyio.system._errors import OptimizationUnavailableError

NO_PERM = "no CAP_SYS_NICE and RLIMIT_RTPRIO is 0"


def test_info_on_this_machine():
    d = info()
    assert set(d) == {"topology", "plan", "allocator", "cpu_flags", "switches"}
    assert list(d["switches"]) == list(SWITCHES)
    for name, s in d["switches"].items():
        assert s["mode"] == "auto"
        assert s["state"] in ("active", "inactive", "no effect")
        assert s["active"] is (s["state"] == "active")
        assert s["reason"], name
    # prefetch: no kernel on the engine's hot path reads it, and it says so
    assert d["switches"]["prefetch"]["state"] == "no effect"
    assert "calls neither" in d["switches"]["prefetch"]["reason"]
    # This machine has one NUMA node.
    if len(d["topology"]["nodes"]) == 1:
        assert d["switches"]["numa"] == {"mode": "auto", "available": False, "active": False,
                                         "state": "no effect", "reason": "one NUMA node: binding is a no-op"}
    json.dumps(d)  # plain data all the way down
    text = format_info(d)
    for name in SWITCHES:
        assert name in text
    assert "core plan" in text and "mempool_ingest" in text


def test_modes_off_on_and_errors(tmp_path):
    missing = str(tmp_path / "libjemalloc.so.2")
    d = info({"realtime_priority": "on", "allocator": "on", "numa": "off", "batching": "off"},
             realtime_check=lambda p: NO_PERM, jemalloc_library=missing)
    rt, alloc = d["switches"]["realtime_priority"], d["switches"]["allocator"]
    assert rt["state"] == "error" and rt["reason"] == NO_PERM and not rt["active"]
    assert alloc["state"] == "error" and "does not exist" in alloc["reason"]
    assert d["switches"]["numa"]["state"] == "off" and not d["switches"]["numa"]["active"]
    assert d["switches"]["batching"] == {"mode": "off", "available": True, "active": False, "state": "off",
                                         "reason": "compiled batch drain"}
    with pytest.raises(OptimizationUnavailableError, match="realtime_priority is 'on' but unavailable: no CAP"):
        require_switches(d)
    d = info({"realtime_priority": "auto"}, realtime_check=lambda p: NO_PERM, jemalloc_library=missing)
    assert d["switches"]["realtime_priority"]["state"] == "inactive"
    assert d["switches"]["allocator"]["state"] == "inactive"
    require_switches(d)  # nothing demanded: no error
    d = info({"realtime_priority": "on"}, realtime_check=lambda p: None)
    assert d["switches"]["realtime_priority"]["state"] == "active"


def test_bad_modes():
    with pytest.raises(ValueError, match="modes names switch 'turbo'"):
        info({"turbo": "on"})
    with pytest.raises(ValueError, match=r"modes\['numa'\] must be one of 'auto', 'on', 'off', got 'yes'"):
        info({"numa": "yes"})
    with pytest.raises(ValueError, match="priority must be an integer in 1..99, got 0"):
        info(rt_priority=0)


class FakeSimd:
    def __init__(self, level, levels):
        self._level, self._levels = level, levels

    def level(self):
        return self._level

    def available_levels(self):
        return self._levels


def _not_built():
    raise ImportError("No module named 'tallyio._core.simd'")


def test_simd_switch(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n")
    kw = dict(cpuinfo_path=str(cpuinfo), realtime_check=lambda p: None)
    avx2 = lambda: FakeSimd("avx2", ("scalar", "avx2"))  # noqa: E731
    d = info(simd_loader=avx2, **kw)
    assert d["cpu_flags"] == ["sse4_2", "avx", "avx2", "fma"]
    assert d["switches"]["simd"]["state"] == "active"
    assert d["switches"]["simd"]["reason"] == "level avx2 (no AVX-512)"
    s = info({"simd": "avx512"}, simd_loader=avx2, **kw)["switches"]["simd"]
    assert s["state"] == "error" and s["reason"] == "avx512 asked for, available here: scalar, avx2"
    s = info({"simd": "avx2"}, simd_loader=avx2, **kw)["switches"]["simd"]
    assert s["state"] == "active" and s["reason"] == "level avx2 (forced)"
    s = info(simd_loader=lambda: FakeSimd("scalar", ("scalar",)), **kw)["switches"]["simd"]
    assert s["state"] == "inactive" and "neither AVX2 nor AVX-512" in s["reason"]
    s = info(simd_loader=_not_built, **kw)["switches"]["simd"]
    assert s["state"] == "inactive" and s["reason"] == "simd module not built (CPU supports avx2)"
    s = info({"simd": "on"}, simd_loader=_not_built, **kw)["switches"]["simd"]
    assert s["state"] == "error"
    # The module without available_levels(): forced levels are checked against the CPU flags.
    old = type("Old", (), {"level": staticmethod(lambda: "avx2")})
    s = info({"simd": "avx512"}, simd_loader=lambda: old, **kw)["switches"]["simd"]
    assert s["reason"] == "avx512 asked for, CPU lacks avx512f, avx512bw"


def test_multi_node_machine(fake_sysfs):
    root = fake_sysfs(nodes=2, cpus=32, smt=2)
    d = info(sysfs_root=str(root), realtime_check=lambda p: None)
    assert d["switches"]["numa"]["active"] and "2 NUMA nodes" in d["switches"]["numa"]["reason"]
    assert d["topology"]["physical_cores"] == 16 and d["topology"]["smt"]
    text = format_info(d)
    assert "node 1: cpus 8-15,24-31" in text and "by node:" in text
    t = read_topology(fake_sysfs("one", nodes=1, cpus=2), allowed={0})
    d = info(topology=t, realtime_check=lambda p: None)
    assert not d["switches"]["cpu_affinity"]["active"]
    assert "one allowed CPU" in d["switches"]["cpu_affinity"]["reason"]


def test_cli_info(capsys, fake_sysfs):
    assert cli_info([]) == 0
    out = capsys.readouterr().out
    assert "optimizations:" in out
    root = fake_sysfs(nodes=4, cpus=16)
    assert cli_info(["--json", "--sysfs-root", str(root), "--mode", "numa=on"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["switches"]["numa"]["state"] == "active" and len(d["topology"]["nodes"]) == 4
    assert cli_info(["--mode", "numa=on"]) == (0 if len(read_topology().usable_nodes) > 1 else 1)
    capsys.readouterr()
    assert cli_info(["--mode", "numa"]) == 2
    assert "--mode must be SWITCH=MODE, got 'numa'" in capsys.readouterr().err
    assert cli_info(["--mode", "numa=maybe"]) == 2
    assert "got 'maybe'" in capsys.readouterr().err
    assert cli_info(["--bogus"]) == 2
