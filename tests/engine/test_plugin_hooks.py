"""One test per hook in tallyio/hookspecs.py, plugin discovery, and the meta-test that keeps the
contract honest (every hook documented in docs/plugin_hooks.md and tested here)."""
import os
import textwrap
import types

import pytest

from engine_helpers import CountingProcessor, FailingProcessor, rows
from tallyio import Engine, PluginError, hookimpl, hookspecs
from tallyio.feeds import IterableSource
from tallyio.plugins import collect, describe, get_plugin_manager

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FAST = {"batching": {"batch_size": 64, "max_age": 3600.0}}


def plugin(**hooks):
    ns = types.SimpleNamespace()
    for name, fn in hooks.items():
        setattr(ns, name, hookimpl(fn))
    return ns


def manager(*plugins):
    pm = get_plugin_manager(entry_points_enabled=False)
    for i, p in enumerate(plugins):
        pm.register(p, f"test-plugin-{i}")
    return pm


def hook_names():
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "tallyio_spec"))


def test_every_hook_is_documented_and_tested():
    doc = open(os.path.join(ROOT, "docs", "plugin_hooks.md")).read()
    here = open(__file__).read()
    assert len(hook_names()) >= 9
    for name in hook_names():
        assert f"## {name}" in doc, f"hook {name} is not documented in docs/plugin_hooks.md"
        assert f"def test_hook_{name}(" in here, f"hook {name} has no test_hook_{name} here"


def test_hook_register_processors():
    pm = manager(plugin(register_processors=lambda register: register("counting", CountingProcessor)))
    report = Engine(FAST, plugin_manager=pm).run(IterableSource([rows(500)]))
    assert report.processors["counting"]["rows"] == 500


def test_hook_register_threshold_policies():
    class Fixed:
        def __init__(self, ms=2.0):
            self.ns = int(ms * 1e6)

        def threshold_ns(self, window, current_ns):
            return self.ns

    pm = manager(plugin(register_processors=lambda register: register("counting", CountingProcessor),
                        register_threshold_policies=lambda register: register("fixed", Fixed)))
    cfg = dict(FAST, breaker={"policy": "fixed", "policy_options": {"ms": 2.5}})
    eng = Engine(cfg, plugin_manager=pm)
    eng.run(IterableSource([rows(100)]))
    assert eng.slots[0].breaker.threshold == pytest.approx(0.0025)
    with pytest.raises(Exception, match="policy 'nope' is not registered"):
        Engine(dict(FAST, breaker={"policy": "nope"}), plugin_manager=pm).start()


def test_hook_register_sources(tmp_path):
    class DemoSource:
        def __init__(self, path, **opts):
            self.n = int(open(path).read())
            self.metadata = {"from": "demo"}

        @staticmethod
        def accepts(path):
            return str(path).endswith(".demo")

        def __iter__(self):
            yield rows(self.n)

    feed = tmp_path / "x.demo"
    feed.write_text("321")
    pm = manager(plugin(register_sources=lambda register: register("demo", DemoSource),
                        register_processors=lambda register: register("counting", CountingProcessor)))
    eng = Engine(FAST, plugin_manager=pm)
    report = eng.run(str(feed))
    assert report.processed == 321 and eng.slots[0].proc.meta == {"from": "demo"}


def test_hook_register_sinks():
    got = []

    class ListSink:
        def __init__(self, prefix=""):
            self.prefix = prefix

        def emit(self, ops):
            got.extend((self.prefix, o.kind) for o in ops)

    pm = manager(plugin(register_sinks=lambda register: register("list", ListSink),
                        register_processors=lambda register: register("counting", CountingProcessor)))
    cfg = dict(FAST, sinks={"names": ["list"], "options": {"list": {"prefix": ">"}}})
    Engine(cfg, plugin_manager=pm).run(IterableSource([rows(300)]))
    assert got.count((">", "test")) == 3 and got.count((">", "flushed")) == 1


def test_hook_engine_started():
    seen = []
    pm = manager(plugin(engine_started=lambda engine: seen.append(engine._state)))
    Engine(FAST, plugin_manager=pm).run(IterableSource([rows(10)]))
    assert seen == ["running"]


def test_hook_engine_stopped():
    seen = []
    pm = manager(plugin(engine_stopped=lambda engine, report: seen.append(report.processed)))
    Engine(FAST, plugin_manager=pm).run(IterableSource([rows(10)]))
    assert seen == [10]


def test_hook_breaker_state_changed():
    events = []
    pm = manager(plugin(register_processors=lambda register: register("failing", FailingProcessor),
                        breaker_state_changed=lambda name, old, new: events.append((name, old, new))))
    cfg = {"batching": {"batch_size": 8, "max_age": 3600.0}, "breaker": {"failure_threshold": 2}}
    report = Engine(cfg, plugin_manager=pm).run(IterableSource([rows(8)] * 10, chunk=8))
    assert events[0] == ("failing", "closed", "open")
    assert report.processors["failing"]["errors"] == 2  # the breaker refused the rest
    assert report.rejected["breaker_open:failing"] == 8 * 10 - 16


def test_hook_batch_done():
    seen = []
    pm = manager(plugin(batch_done=lambda stats: seen.append(stats["size"])))
    cfg = dict(FAST, engine={"observer_sample_every": 1})
    report = Engine(cfg, plugin_manager=pm).run(IterableSource([rows(640)]))
    assert sum(seen) == 640 and len(seen) == report.batches


def test_hook_metrics_collected():
    import threading
    got = threading.Event()
    pm = manager(plugin(metrics_collected=lambda metrics: got.set()))
    eng = Engine(dict(FAST, monitoring={"interval": 0.02}), plugin_manager=pm).start()
    try:
        assert got.wait(30)
    finally:
        eng.stop()


def test_a_raising_observer_is_contained():
    def boom(engine):
        raise RuntimeError("observer bug")

    pm = manager(plugin(engine_started=boom))
    eng = Engine(FAST, plugin_manager=pm)
    report = eng.run(IterableSource([rows(10)]))
    assert report.processed == 10 and eng.observer_errors == 1


def test_modules_from_config_and_describe(tmp_path, monkeypatch):
    mod = tmp_path / "my_strategy_plugin.py"
    mod.write_text(textwrap.dedent('''
        import tallyio

        class Proc:
            name = "mine"
            def process(self, batch):
                return None

        @tallyio.hookimpl
        def register_processors(register):
            register("mine", Proc)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = get_plugin_manager(["my_strategy_plugin"], entry_points_enabled=False)
    assert "mine" in collect(pm).processors
    d = {p["name"]: p for p in describe(pm)}
    assert d["my_strategy_plugin"]["hooks"] == ["register_processors"]
    assert d["tallyio.builtins"]["distribution"] == "built-in"
    with pytest.raises(PluginError, match="'no_such_module' \\(from \\[plugins\\] modules\\) cannot be imported"):
        get_plugin_manager(["no_such_module"], entry_points_enabled=False)


def test_misspelt_hook_fails_loudly(tmp_path, monkeypatch):
    (tmp_path / "typo_plugin.py").write_text(textwrap.dedent('''
        import tallyio

        @tallyio.hookimpl
        def register_procesors(register):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="does not define"):
        get_plugin_manager(["typo_plugin"], entry_points_enabled=False)


def test_duplicate_names_name_both_plugins():
    pm = manager(plugin(register_processors=lambda register: register("x", CountingProcessor)),
                 plugin(register_processors=lambda register: register("x", CountingProcessor)))
    with pytest.raises(PluginError, match="processor 'x' registered by both 'test-plugin-0' and 'test-plugin-1'"):
        collect(pm)
    with pytest.raises(PluginError, match="non-callable factory"):
        collect(manager(plugin(register_sinks=lambda register: register("s", 3))))


def test_entry_points_allow_and_block_lists(monkeypatch):
    from tallyio.plugins import ENTRY_POINT_GROUP
    from importlib.metadata import entry_points
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"arbitrage", "sandwich", "mainnet"} <= names  # the example plugins are installed
    monkeypatch.setenv("TALLYIO_PLUGINS_BLOCK", "sandwich")
    assert "sandwich" not in collect(get_plugin_manager()).processors
    monkeypatch.delenv("TALLYIO_PLUGINS_BLOCK")
    monkeypatch.setenv("TALLYIO_PLUGINS_ALLOW", "arbitrage")
    reg = collect(get_plugin_manager())
    assert set(reg.processors) == {"arbitrage"}
    assert "file" in reg.sources  # built-ins are always there


def test_open_breaker_hands_the_batch_to_on_skipped():
    class Stateful(FailingProcessor):
        def __init__(self):
            super().__init__()
            self.kept_up = 0

        def on_skipped(self, batch):
            self.kept_up += len(batch)

    made = []

    def factory():
        made.append(Stateful())
        return made[-1]

    pm = manager(plugin(register_processors=lambda register: register("stateful", factory)))
    cfg = {"batching": {"batch_size": 8, "max_age": 3600.0}, "breaker": {"failure_threshold": 2}}
    report = Engine(cfg, plugin_manager=pm).run(IterableSource([rows(8)] * 10, chunk=8))
    assert made[0].kept_up == report.rejected["breaker_open:stateful"] == 64
