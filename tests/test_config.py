"""Deployment config: defaults, validation naming key and file, environment overrides."""
import sys

import pytest

from tallyio import ConfigError, load_config
from tallyio.config import OPTIMIZATIONS, from_dict


def test_defaults_validate():
    cfg = load_config(env={})
    assert cfg["batching"]["batch_size"] == 256
    assert set(cfg["optimizations"]) == set(OPTIMIZATIONS)
    assert cfg.switch("realtime_priority") == "off" and cfg.switch("simd") == "auto"


def test_file_roundtrip(tmp_path):
    p = tmp_path / "deploy.toml"
    p.write_text("""
[engine]
ring_capacity = 1024
[batching]
batch_size = 128
batch_timeout = 0.0005
[optimizations]
simd = "avx2"
cpu_affinity = "off"
[processors.arbitrage]
min_profit = 10
""")
    cfg = load_config(p, env={})
    assert cfg["engine"]["ring_capacity"] == 1024
    assert cfg["batching"]["batch_timeout"] == 0.0005
    assert cfg.switch("simd") == "avx2" and cfg.switch("cpu_affinity") == "off"
    assert cfg["processors"] == {"arbitrage": {"min_profit": 10}}
    assert cfg.source == str(p)


@pytest.mark.parametrize("toml, message", [
    ("[engine]\nring_capacity = 1000", r"\[engine\] ring_capacity must be a power of two in \[2, 2\*\*24\], got 1000"),
    # a typo'd size is a config error, not a MemoryError traceback at start
    ("[engine]\nring_capacity = 1099511627776",
     r"\[engine\] ring_capacity must be a power of two in \[2, 2\*\*24\], got 1099511627776"),
    ("[engine]\ndedup_capacity = 2147483648",
     r"\[engine\] dedup_capacity must be in \[1, 2\*\*24\], got 2147483648"),
    ("[sinks]\noptions = { jsonl = 3 }", r"\[sinks\] options must be a table of per-sink tables .*got \{'jsonl': 3\}"),
    ("[engine]\nbogus = 1", r"unknown key \[engine\] 'bogus'"),
    ("[nosuch]\nx = 1", r"unknown section \[nosuch\]"),
    ("[batching]\nbatch_size = \"big\"", r"\[batching\] batch_size must be of type int, got 'big'"),
    ("[batching]\nbatch_size = true", r"\[batching\] batch_size must be >= 1, got True"),
    ("[batching]\nbatch_timeout = -1.0", r"batch_timeout must be in \[0, 60\] seconds, got -1.0"),
    ("[batching]\nmax_age = nan", r"max_age must be finite"),
    ("[optimizations]\nnuma = \"yes\"", r"\[optimizations\] numa must be one of auto, on, off, got 'yes'"),
    ("[optimizations]\nsimd = \"sse9\"", r"simd must be one of auto, on, off, scalar, avx2, avx512"),
    ("[engine]\nring_capacity = 64\n[batching]\nbatch_size = 128", r"batch_size must be <= \[engine\] ring_capacity \(64\), got 128"),
    ("[processors]\narbitrage = 3", r"\[processors.arbitrage\] must be a table"),
    ("engine = 3", r"\[engine\] must be a table"),
    ("[monitoring]\nport = 70000", r"\[monitoring\] port must be in \[0, 65535\], got 70000"),
])
def test_errors_name_key_and_file(tmp_path, toml, message):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(p, env={})
    assert str(p) in str(e.value)


def test_not_toml_and_missing(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[engine\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p, env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize("content, message", [
    (b"[engine]\nring_kind = '\xff'\n", "not valid TOML: 'utf-8' codec can't decode byte 0xff"),
    (b"v = " + b"[" * 100_000, "not valid TOML: nested too deeply"),
])
def test_undecodable_config_is_a_config_error(tmp_path, content, message):
    p = tmp_path / "x.toml"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(p, env={})
    assert str(e.value).startswith(f"{p}: ")


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: cannot read the config file: Is a directory"):
        load_config(tmp_path, env={})


def test_environment_value_nested_too_deeply_is_a_string():
    with pytest.raises(ConfigError, match=r"\[batching\] batch_size must be of type int, got '\[\[\["):
        load_config(env={"TALLYIO__BATCHING__BATCH_SIZE": "[" * 100_000})


def test_environment_overrides(tmp_path):
    env = {"TALLYIO__BATCHING__BATCH_SIZE": "512", "TALLYIO__OPTIMIZATIONS__SIMD": "scalar",
           "TALLYIO__SOURCE__PATH": "feeds/x.npz", "UNRELATED": "1"}
    cfg = load_config(env=env)
    assert cfg["batching"]["batch_size"] == 512
    assert cfg.switch("simd") == "scalar"  # a bare word is taken as a string
    assert cfg["source"]["path"] == "feeds/x.npz"
    with pytest.raises(ConfigError, match="environment TALLYIO__BATCHING__BATCH_SIZE: .* got 0"):
        load_config(env={"TALLYIO__BATCHING__BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="does not name \\[section\\] key"):
        load_config(env={"TALLYIO__BATCHING": "1"})
    with pytest.raises(ConfigError, match="unknown key \\[batching\\] 'nope'"):
        load_config(env={"TALLYIO__BATCHING__NOPE": "1"})


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        from_dict({"engine": {"ring_capacity": 3}})


def test_example_deploy_config_is_valid_and_complete():
    """docs/examples/deploy.toml lists every key with its default."""
    import os
    from tallyio.config import SCHEMA, defaults
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "deploy.toml")
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    cfg = load_config(path, env={})
    d = defaults()
    for section, keys in SCHEMA.items():
        if section == "processors":
            continue
        assert set(raw[section]) == set(keys), section
        for key in keys:
            assert cfg[section][key] == d[section][key], (section, key)
