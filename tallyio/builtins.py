"""The built-in plugin: sources, sinks and threshold policies, registered like any other plugin."""
from __future__ import annotations

from tallyio import feeds, sinks
from tallyio.hookspecs import hookimpl


@hookimpl
def register_sources(register):
    register("file", feeds.FileSource)
    register("synthetic", feeds.SyntheticSource)
    register("iterable", feeds.IterableSource)


@hookimpl
def register_sinks(register):
    register("memory", sinks.MemorySink)
    register("jsonl", sinks.JsonlSink)
    register("log", sinks.LogSink)
