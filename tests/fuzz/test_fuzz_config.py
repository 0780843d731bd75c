"""Fuzz the config loader: whatever a TOML file and the TALLYIO__ environment hold,
``load_config`` returns a config that validates again unchanged, or raises a ``ConfigError``
naming the file (or the environment variable) in one line; never anything else.

Examples per fuzzer: ``TALLYIO_FUZZ_EXAMPLES`` (default 200; CI's fuzz step runs 10,000).
"""
import json
import math
import os
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tallyio.config import SCHEMA, from_dict, load_config
from tallyio.errors import ConfigError

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("TALLYIO_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "docs", "examples", "deploy.toml"), "rb") as _f:
    DEPLOY = _f.read()

SCALARS = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["auto", "on", "off", "spsc", "mpmc", "block", "drop", "avx2", "static",
                     "memory", "jsonl", "live", "replay", 0, 1, 2, 3, 256, 1 << 16, 1 << 24,
                     1 << 40, -1, 0.0, 1e-3, 0.5, 3600.0, 1e9]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


def toml_document(data: dict) -> str:
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = top[:]
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def config_data(draw):
    """Sections and keys mostly from the schema, values of any TOML type."""
    data = {}
    for section in draw(st.lists(st.sampled_from([*SCHEMA, "nosuch"]), max_size=4, unique=True)):
        if draw(st.integers(0, 19)) == 0:
            data[section] = draw(SCALARS)  # a section that is not a table
            continue
        keys = [*SCHEMA.get(section, {}), "bogus"] if section != "processors" else ["arbitrage", "x"]
        data[section] = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(keys), max_size=4,
                                                                unique=True))}
    return data


@st.composite
def mutated_deploy(draw):
    data = bytearray(DEPLOY)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"[", b"]", b"=", b'"', b"\n", b"-", b"9" * 30,
                                                  b"nan", b"\xff", b"{", b"1e999", b"0x"]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
    return bytes(data)


ENV_KEYS = [f"TALLYIO__{s.upper()}__{k.upper()}" for s, keys in SCHEMA.items() for k in keys]
ENVS = st.dictionaries(st.sampled_from(ENV_KEYS + ["TALLYIO__X", "TALLYIO__ENGINE__NOPE",
                                                   "TALLYIO__PROCESSORS__A", "OTHER"]),
                       st.one_of(SCALARS.map(toml_value), st.text(max_size=10),
                                 st.sampled_from(["[" * 5000, "{a=", "'x'"])), max_size=2)



@given(content=st.one_of(config_data().map(lambda d: toml_document(d).encode("utf-8",
                                                                               "surrogatepass")),
                         mutated_deploy(), st.binary(max_size=64)),
       env=st.one_of(st.just({}), ENVS))
@FUZZ
def test_fuzz_config(workdir, put, content, env):
    path = workdir / "c.toml"
    put(path, content)
    try:
        cfg = load_config(path, env=env)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message
        assert message.startswith((f"{path}: ", "environment")), message
        event("ConfigError: " + re.sub(r"[\d'(].*", "", message.split(": ", 1)[1])[:40])
        return
    event("a valid config")
    # what loaded validates again, unchanged
    again = from_dict({s: dict(t) for s, t in cfg.items()}, "again", env={})
    assert again == cfg
