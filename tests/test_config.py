"""Settings: precedence, validation and the help text."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.cli import build_parser
from collab.config import SETTINGS, Config, ConfigError, build_config


def test_defaults() -> None:
    config = build_config({}, {}, None)
    assert config == Config()
    assert config.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert config.effective_database_url.endswith("/data/collab.db")
    assert config.effective_public_url == "http://127.0.0.1:8080"
    assert config.redis_url == ""


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    toml = tmp_path / "collab.toml"
    toml.write_text('port = 7000\nhost = "0.0.0.0"\nlog-level = "debug"\nnode_id = "file"\n')
    env = {"COLLAB_PORT": "7100", "COLLAB_NODE_ID": "env"}
    config = build_config({"port": "7200"}, env, toml)
    assert config.port == 7200
    assert config.node_id == "env"
    assert config.host == "0.0.0.0"
    assert config.log_level == "DEBUG"
    assert config.effective_public_url == "http://127.0.0.1:7200"


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('redis_url = "redis://127.0.0.1:6380/0"\ntrusted_proxies = ["10.0.0.0/8"]\n')
    config = build_config({}, {"COLLAB_CONFIG": str(toml)}, None)
    assert config.redis_url == "redis://127.0.0.1:6380/0"
    assert config.trusted_proxies == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    ("flags", "env", "names"),
    [
        ({"port": "eighty"}, {}, "--port"),
        ({"port": "70000"}, {}, "--port"),
        ({}, {"COLLAB_PORT": "-1"}, "COLLAB_PORT"),
        ({"database_url": "mysql://x"}, {}, "--database-url"),
        ({"redis_url": "http://x"}, {}, "--redis-url"),
        ({"public_url": "chat.example.com"}, {}, "--public-url"),
        ({"session_days": "0"}, {}, "--session-days"),
        ({"trusted_proxies": "10.0.0.0/8,banana"}, {}, "--trusted-proxies"),
        ({"log_level": "loud"}, {}, "--log-level"),
        ({"tls_cert": "/nonexistent.pem"}, {}, "--tls-key"),
        ({"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"}, {}, "--tls-cert"),
    ],
)
def test_bad_settings_name_the_setting(
    flags: dict[str, str], env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(flags, env, None)
    message = str(caught.value)
    assert names in message
    assert "\n" not in message


def test_bad_config_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config({}, {}, broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config({}, {}, unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config({}, {}, tmp_path / "missing.toml")


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ConfigError, match="--data-dir"):
        build_config({"data_dir": str(afile)}, {}, None)


def test_help_lists_every_setting_with_its_default() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = serve.format_help()
    for field in SETTINGS:
        flag = "--" + field.name.replace("_", "-")
        assert flag in text, flag
        assert f"COLLAB_{field.name.upper()}" in "".join(text.split()), field.name
    assert text.count("default:") == len(SETTINGS)
