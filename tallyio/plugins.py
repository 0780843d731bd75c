"""The plugin manager: built-in plugins, entry points, config-named modules, allow/block lists.

Built-in pieces register through the same hooks as outside plugins (the pytest / tox way), so the
engine has one code path. Plugins are found in three places, in this order:

1. ``DEFAULT_PLUGINS``, the built-in modules;
2. the ``tallyio`` entry-point group of installed distributions (``[plugins] entry_points``);
3. modules named in the config's ``[plugins] modules`` list.

``TALLYIO_PLUGINS_ALLOW`` (comma-separated plugin names: entry-point names or module names) loads
only those outside plugins; ``TALLYIO_PLUGINS_BLOCK`` skips the ones named. After loading,
``check_pending()`` fails loudly on a misspelt hook.
"""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from tallyio import hookspecs
from tallyio.errors import PluginError

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = ("tallyio.builtins", "tallyio.resilience.breaker")
ENTRY_POINT_GROUP = "tallyio"


def _names(var: str) -> set[str] | None:
    v = os.environ.get(var)
    return None if v is None else {n.strip() for n in v.split(",") if n.strip()}


def get_plugin_manager(modules=(), *, entry_points_enabled: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, the entry points and ``modules`` registered."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    allow, block = _names("TALLYIO_PLUGINS_ALLOW"), _names("TALLYIO_PLUGINS_BLOCK") or set()
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name)
    if entry_points_enabled:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in block or (allow is not None and ep.name not in allow):
                log.info("plugin %s skipped by TALLYIO_PLUGINS_ALLOW/BLOCK", ep.name)
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as e:
                raise PluginError(f"entry point {ep.name!r} ({ep.value}) failed to load: {e}") from e
            pm.register(plugin, ep.name)
    for name in modules:
        if name in block or (allow is not None and name not in allow):
            continue
        if pm.get_plugin(name) is not None:
            continue
        try:
            mod = importlib.import_module(name)
        except ImportError as e:
            raise PluginError(f"plugin module {name!r} (from [plugins] modules) cannot be "
                              f"imported: {e}") from e
        pm.register(mod, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"a plugin implements a hook TallyIO does not define: {e}") from e
    return pm


@dataclass
class Registry:
    """What the collection hooks registered, resolved once into plain dicts."""

    processors: dict[str, Any] = field(default_factory=dict)
    threshold_policies: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    sinks: dict[str, Any] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every collection hook once; duplicate names are an error naming both plugins."""
    reg = Registry()
    for kind, hook in (("processors", pm.hook.register_processors),
                       ("threshold_policies", pm.hook.register_threshold_policies),
                       ("sources", pm.hook.register_sources),
                       ("sinks", pm.hook.register_sinks)):
        table = getattr(reg, kind)
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

            def register(name, factory, _table=table, _kind=kind, _plugin=plugin_name):
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_plugin!r} registered a {_kind[:-1]} with an "
                                      f"invalid name {name!r}")
                if not callable(factory):
                    raise PluginError(f"plugin {_plugin!r} registered {_kind[:-1]} {name!r} "
                                      f"with a non-callable factory {factory!r}")
                if name in _table:
                    raise PluginError(f"{_kind[:-1]} {name!r} registered by both "
                                      f"{reg.origin[(_kind, name)]!r} and {_plugin!r}")
                _table[name] = factory
                reg.origin[(_kind, name)] = _plugin

            impl.function(register=register)
    return reg


def describe(pm: pluggy.PluginManager) -> list[dict]:
    """For ``tallyio plugins``: each plugin, where it comes from, and the hooks it implements."""
    dists = {id(p): d for p, d in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: x[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        out.append({
            "name": name,
            "module": getattr(plugin, "__name__", repr(plugin)),
            "file": getattr(plugin, "__file__", None),
            "distribution": f"{dist.project_name} {dist.version}" if dist else
            ("built-in" if name in DEFAULT_PLUGINS else "module"),
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
        })
    return out
