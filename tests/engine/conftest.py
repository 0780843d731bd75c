import os
import sys
import types

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # engine_helpers, under --import-mode=importlib

from engine_helpers import CountingProcessor, Recorder
from tallyio.hookspecs import hookimpl
from tallyio.plugins import get_plugin_manager


@pytest.fixture
def make_pm():
    """A plugin manager with the built-ins plus a test plugin; returns (pm, recorder)."""

    def make(**procs):
        rec = Recorder()
        plugin = types.SimpleNamespace()

        def register_processors(register):
            for name, cls in (procs or {"counting": CountingProcessor}).items():
                def factory(_cls=cls, _name=name, **opts):
                    inst = _cls(**opts)
                    rec.instances[_name] = inst
                    return inst
                register(name, factory)

        def engine_started(engine):
            rec.events.append(("started", engine))

        def engine_stopped(engine, report):
            rec.events.append(("stopped", report))

        def breaker_state_changed(name, old, new):
            rec.events.append(("breaker", name, old, new))

        def batch_done(stats):
            rec.events.append(("batch", stats))

        for fn in (register_processors, engine_started, engine_stopped, breaker_state_changed,
                   batch_done):
            setattr(plugin, fn.__name__, hookimpl(fn))
        pm = get_plugin_manager(entry_points_enabled=False)
        pm.register(plugin, "test-plugin")
        return pm, rec

    return make


