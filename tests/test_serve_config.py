"""The serving config: file, environment and flag precedence, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelpack.serve.__main__ import parse_args
from modelpack.serve.config import ConfigError, ServingConfig, cpu_quota, from_mapping, load


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path / "serving.json",
        {"name": "iris", "version": "1.4.0", "model": "model.onnx", "port": 9000, "record_summary": {"m": 1}},
    )
    env = {"PORT": "9100", "WORKERS": "2", "MODELPACK_INDEX_DIGEST": "sha256:" + "c" * 64}
    config = load(path, env, {"version": "1.5.0", "host": "127.0.0.1", "name": None})
    assert config == ServingConfig(
        name="iris",
        version="1.5.0",
        model="model.onnx",
        port=9100,
        workers=2,
        host="127.0.0.1",
        index_digest="sha256:" + "c" * 64,
        record_summary={"m": 1},
    )
    assert config.model_dir == Path("/models") and config.code_dir == Path("/code")


def test_path_from_env_and_flags_only(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", {"name": "a", "handler": "pkg.mod:Cls", "model_dir": "/srv/m"})
    config = load(None, {"MODELPACK_SERVING_CONFIG": str(path)})
    assert (config.handler, config.model_dir, config.port) == ("pkg.mod:Cls", Path("/srv/m"), 8080)
    flags_only = load(None, {}, {"name": "b", "handler": "h:H"})
    assert flags_only.name == "b"


def test_round_trip_through_json_for_worker_processes() -> None:
    config = ServingConfig(name="x", model="m.onnx", model_dir=Path("/m"), record_summary={"a": [1]})
    assert from_mapping(json.loads(json.dumps(config.to_json())), "test") == config


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "a", "model": "m", "colour": 1}, "unknown key 'colour'"),
        ({"name": "a", "model": "m", "port": "80"}, "'port' must be int"),
        ({"name": "a", "model": "m", "port": True}, "'port' must be int"),
        ({"name": "a", "model": "m", "port": 70000}, "'port' must be 1..65535"),
        ({"model": "m"}, "'name' (the model name served under /v2/models/NAME) is required"),
        ({"name": "a"}, "handler \"onnx\" needs 'model'"),
        ({"name": "a", "handler": "nocolon"}, '\'handler\' must be "onnx" or "module:Class"'),
        ({"name": "a", "model": "m", "inference": "gpu"}, "'inference' must be"),
        ({"name": "a", "model": "m", "workers": -1}, "'workers' must be 1 or more, or 0 for one per CPU"),
        ({"name": "a", "model": "m", "request_log_level": "debug"}, "'request_log_level' must be one of"),
        ({"name": "a", "model": "m", "request_log_sample": 2}, "'request_log_sample' must be 0..1"),
        ({"name": "a", "model": "m", "record_summary": []}, "'record_summary' must be dict"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, data: dict[str, Any], needle: str) -> None:
    path = write(tmp_path / "serving.json", data)
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert str(info.value).startswith(str(path)) and needle in str(info.value)


def test_unreadable_or_missing_config(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load(tmp_path / "bad.json", {})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load(write(tmp_path / "list.json", [1]), {})
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "absent.json", {})
    with pytest.raises(ConfigError, match="cannot be read"):
        load(None, {"MODELPACK_SERVING_CONFIG": str(tmp_path / "absent.json")})
    with pytest.raises(ConfigError, match="environment PORT='http' is not an integer"):
        load(None, {"PORT": "http"}, {"name": "a", "model": "m"})


def test_cli_flags_map_to_config_keys(tmp_path: Path) -> None:
    path, overrides = parse_args(
        [
            "--config",
            str(tmp_path / "c.json"),
            "--name",
            "iris",
            "--port",
            "9",
            "--model-dir",
            "/x",
            "--onnx-threads",
            "1",
        ]
    )
    assert path == tmp_path / "c.json"
    assert overrides["name"] == "iris" and overrides["port"] == 9 and overrides["model_dir"] == "/x"
    assert overrides["onnx_threads"] == 1 and overrides["handler"] is None
    assert set(overrides) <= set(ServingConfig.__dataclass_fields__)


def test_no_config_at_all_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="pass --config FILE, set MODELPACK_SERVING_CONFIG, or give --name"):
        load(None, {}, {})


def test_host_from_env_so_a_host_network_container_binds_loopback(tmp_path: Path) -> None:
    path = write(tmp_path / "serving.json", {"name": "iris", "model": "model.onnx"})
    assert load(path, {}).host == "0.0.0.0"
    assert load(path, {"HOST": "127.0.0.1"}).host == "127.0.0.1"
    assert load(path, {"HOST": "127.0.0.1"}, {"host": "::1"}).host == "::1"  # a flag still wins


@pytest.mark.parametrize(
    ("files", "allowed", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 8, 2),  # cgroup v2: 1.5 CPUs of quota -> 2 workers
        ({"cpu.max": "max 100000\n"}, 3, 3),  # no quota: the CPUs we may run on
        ({"cpu.max": "800000 100000\n"}, 2, 2),  # a quota above the CPUs there are
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4, 4),  # v1, no quota
        ({}, 5, 5),  # no cgroup files at all
    ],
)
def test_default_workers_follow_the_cpu_quota(
    tmp_path: Path, files: dict[str, str], allowed: int, expected: int
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path, allowed) == expected
