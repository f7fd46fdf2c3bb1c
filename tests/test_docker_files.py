"""The Docker deployment, checked without a Docker engine.

No engine runs on our machines, so the compose file, the .env.example and the
Dockerfile are parsed and checked against the settings ``collab serve`` really
has, and the image's command (and its health check) are run here as they
would run in the container, on loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import free_port, wait_for_port

DOCKER = Path(__file__).resolve().parent.parent / "docker"
NODES = ("collab-1", "collab-2")
ENV_NAME = re.compile(r"\b(COLLAB_[A-Z0-9_]+)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def help_settings() -> set[str]:
    """Every COLLAB_* name that `collab serve --help` documents."""
    result = subprocess.run(
        [sys.executable, "-m", "collab", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "1000"},
    )
    names = set(re.findall(r"env (COLLAB_[A-Z0-9_]+)", result.stdout))
    assert {"COLLAB_HOST", "COLLAB_TURN_SECRET", "COLLAB_CONFIG"} <= names
    return names


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def _dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def _exec_form(instruction: str) -> list[str]:
    """The JSON array of the last ``instruction`` line (CMD, or HEALTHCHECK's CMD)."""
    text = _dockerfile().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(instruction)]
    assert lines, f"no {instruction} in the Dockerfile"
    return json.loads(lines[-1][lines[-1].index("[") :])


def test_services_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", *NODES, "coturn", "caddy"} <= set(services)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in compose["volumes"]
    for name in ("redis", "postgres"):
        assert services[name]["healthcheck"]["test"]


def test_nodes_share_data_expose_port_and_check_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    node_ids = set()
    for name in NODES:
        node = services[name]
        assert node["build"]["dockerfile"] == "docker/Dockerfile"
        assert node["env_file"] == ".env"
        env = node["environment"]
        assert env["COLLAB_PORT"] == "8080" and env["COLLAB_HOST"] == "0.0.0.0"
        assert "8080" in node["expose"]
        assert "uploads:/data" in node["volumes"] and env["COLLAB_DATA_DIR"] == "/data"
        assert env["COLLAB_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in env["COLLAB_DATABASE_URL"]
        assert env["COLLAB_REDIS_URL"] == "redis://redis:6379/0"
        assert "http://127.0.0.1:8080/healthz" in " ".join(node["healthcheck"]["test"])
        for dependency in ("postgres", "redis"):
            assert node["depends_on"][dependency]["condition"] == "service_healthy"
        node_ids.add(env["COLLAB_NODE_ID"])
    assert node_ids == set(NODES)
    caddyfile = (DOCKER / "Caddyfile").read_text()
    assert "reverse_proxy collab-1:8080 collab-2:8080" in caddyfile
    assert "health_uri /healthz" in caddyfile
    caddy = services["caddy"]
    assert "443:443" in caddy["ports"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert {n: {"condition": "service_healthy"} for n in NODES} == caddy["depends_on"]


def test_every_variable_is_a_real_setting_and_every_setting_is_listed(
    compose: dict[str, Any], help_settings: set[str]
) -> None:
    used = set(ENV_NAME.findall((DOCKER / "compose.yaml").read_text()))
    listed = {name for name in _env_example() if name.startswith("COLLAB_")}
    assert used - help_settings == set()
    assert listed - help_settings == set()
    assert help_settings - listed == set()
    for name in NODES:
        assert set(compose["services"][name]["environment"]) <= help_settings


def test_turn_secret_is_shared_by_coturn_and_the_nodes(compose: dict[str, Any]) -> None:
    command = compose["services"]["coturn"]["command"]
    assert "--use-auth-secret" in command
    secret = [arg for arg in command if arg.startswith("--static-auth-secret=")]
    assert len(secret) == 1 and "${COLLAB_TURN_SECRET" in secret[0]
    env = _env_example()
    assert env["COLLAB_TURN_SECRET"]  # the nodes read it from .env (env_file)
    assert env["COLLAB_TURN_URLS"].startswith("turn:")
    for name in NODES:
        assert "COLLAB_TURN_SECRET" not in compose["services"][name]["environment"]


def test_dockerfile_runs_as_a_user_with_a_health_check_and_serves() -> None:
    text = _dockerfile()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert "COLLAB_PORT=8080" in text and "COLLAB_DATA_DIR=/data" in text
    assert "/healthz" in " ".join(_exec_form("HEALTHCHECK"))
    assert _exec_form("CMD") == ["collab", "serve", "--host", "0.0.0.0"]


@pytest.fixture
def image_command(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The image's CMD as the container runs it, with loopback for 0.0.0.0."""
    port = free_port()
    command = _exec_form("CMD")
    binary = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert binary, "the collab script is not installed next to this Python"
    args = [binary, *("127.0.0.1" if arg == "0.0.0.0" else arg for arg in command[1:])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    # The image's ENV: data dir and port (COLLAB_PORT, which the health check reads too).
    env |= {"COLLAB_DATA_DIR": str(tmp_path / "data"), "COLLAB_PORT": str(port)}
    process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_image_command_serves_and_its_health_check_passes(
    image_command: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = image_command
    wait_for_port(port, timeout=30)
    health = _exec_form("HEALTHCHECK")
    assert health[0] == "python"
    checked = subprocess.run(
        [sys.executable, *health[1:]],
        env={**os.environ, "COLLAB_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert checked.returncode == 0, checked.stderr
    assert process.poll() is None
