"""Settings for a collab node.

One frozen object, filled in this order of precedence: command-line flags,
then ``COLLAB_*`` environment variables, then an optional TOML file, then
defaults. Every setting is declared once (name, type, default, help) so the
``--help`` text, the environment names and the TOML keys can never drift
apart. A bad value raises ``ConfigError`` naming the setting, which the CLI
prints as one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "COLLAB_"


class ConfigError(Exception):
    """A setting has a value collab cannot run with."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"setting {setting}: {message}")
        self.setting = setting


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_port(raw: str) -> int:
    port = _int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("a port is a number from 0 to 65535")
    return port


def _parse_positive_float(raw: str) -> float:
    value = _float(raw)
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _parse_positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _parse_non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _parse_networks(raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


def _parse_database_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0]
    if scheme not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        raise ValueError(
            "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:pass@host/db"
        )
    return raw


def _parse_redis_url(raw: str) -> str:
    if raw and urlsplit(raw).scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("use redis://host:port/0 (or rediss:// for TLS)")
    return raw


def _parse_public_url(raw: str) -> str:
    if not raw:
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(
            "use the address people type in the browser, e.g. https://chat.example.com"
        )
    return raw.rstrip("/")


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("one of debug, info, warning, error")
    return level


def _parse_ice_urls(schemes: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        for item in items:
            scheme, _, rest = item.partition(":")
            if scheme not in schemes or not rest.strip("/"):
                raise ValueError(f"use {' or '.join(s + ':HOST:PORT' for s in schemes)}")
        return items

    return parse


def _parse_optional_ip(raw: str) -> str:
    if raw:
        ipaddress.ip_address(raw)
    return raw


def _setting(
    default: Any, help: str, parse: Callable[[str], Any] = str, metavar: str | None = None
) -> Any:
    return dataclasses.field(
        default=default, metadata={"help": help, "parse": parse, "metavar": metavar}
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a node needs to know at start-up."""

    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8080, "TCP port to listen on", _parse_port)
    data_dir: Path = _setting(
        Path("data"), "directory for the SQLite database and uploads", Path, "DIR"
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL; empty means SQLite in the data dir. "
        "For a cluster: postgresql+asyncpg://user:pass@host/db",
        _parse_database_url,
        "URL",
    )
    redis_url: str = _setting(
        "", "Redis URL for the event bus between nodes; empty means in-process", _parse_redis_url
    )
    public_url: str = _setting(
        "",
        "address users reach this service at (used in invitation links); "
        "empty means http://HOST:PORT",
        _parse_public_url,
        "URL",
    )
    tls_cert: Path | None = _setting(None, "PEM certificate to serve HTTPS directly", Path, "FILE")
    tls_key: Path | None = _setting(None, "PEM private key for --tls-cert", Path, "FILE")
    node_id: str = _setting("", "name of this node in a cluster; empty means host:port")
    log_level: str = _setting("INFO", "debug, info, warning or error", _parse_log_level)
    session_days: float = _setting(
        30.0,
        "days a sign-in session lasts without use (an open socket is use)",
        _parse_positive_float,
    )
    invitation_hours: float = _setting(
        72.0, "default hours an invitation link stays valid", _parse_positive_float
    )
    trusted_proxies: tuple[str, ...] = _setting(
        (),
        "comma-separated networks of reverse proxies whose X-Forwarded-For is believed",
        _parse_networks,
        "NETS",
    )
    metrics_allow_from: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        "comma-separated networks allowed to read /metrics",
        _parse_networks,
        "NETS",
    )
    login_max_failures: int = _setting(
        5, "failed sign-ins per username before back-off starts", _parse_positive_int
    )
    shutdown_timeout: float = _setting(
        10.0,
        "seconds to let open requests finish on shutdown (at most a quarter of --drain-time)",
        _parse_positive_float,
    )
    drain_time: float = _setting(
        20.0,
        "seconds a node stopped with SIGTERM takes at most to move its sockets and calls to "
        "other nodes and exit",
        _parse_positive_float,
        "SECONDS",
    )
    first_run_link: bool = _setting(
        True,
        "print a one-time link to create the first administrator while there are no users "
        "(true on exactly one node of a cluster: each new link revokes the one before)",
        _parse_bool,
        "BOOL",
    )
    upload_max_mb: int = _setting(
        100, "largest file one upload may be, in MB", _parse_positive_int, "MB"
    )
    user_quota_mb: int = _setting(
        10240,
        "total MB each user's uploads may take; 0 means unlimited",
        _parse_non_negative_int,
        "MB",
    )
    idle_minutes: float = _setting(
        10.0,
        "minutes without activity on every device before a user shows as away",
        _parse_positive_float,
        "MINUTES",
    )
    presence_node_ttl: int = _setting(
        30,
        "seconds after a node's last heartbeat before its users are taken offline",
        _parse_positive_int,
        "SECONDS",
    )
    calendar_poll_minutes: float = _setting(
        5.0, "minutes between two reads of a user's calendar address", _parse_positive_float
    )
    calendar_timeout: float = _setting(
        10.0, "seconds a calendar server may take to answer", _parse_positive_float, "SECONDS"
    )
    calendar_max_kb: int = _setting(
        2048, "largest calendar (.ics) accepted, in KB", _parse_positive_int, "KB"
    )
    ws_heartbeat: float = _setting(
        25.0,
        "seconds between WebSocket pings; a socket silent for 1.5 of them is closed",
        _parse_positive_float,
        "SECONDS",
    )
    ws_commands_per_second: float = _setting(
        20.0, "socket commands each user may send per second, on average", _parse_positive_float
    )
    ws_command_burst: float = _setting(
        60.0, "socket commands each user may send in one burst", _parse_positive_float
    )
    call_ring_timeout: float = _setting(
        45.0, "seconds a call rings before it counts as missed", _parse_positive_float, "SECONDS"
    )
    call_rejoin_grace: float = _setting(
        15.0,
        "seconds a participant whose socket closed stays in the call, so a reconnect rejoins",
        _parse_positive_float,
        "SECONDS",
    )
    stun_urls: tuple[str, ...] = _setting(
        (),
        "comma-separated STUN servers handed to callers, e.g. stun:stun.example.com:3478",
        _parse_ice_urls(("stun",)),
        "URLS",
    )
    turn_urls: tuple[str, ...] = _setting(
        (),
        "comma-separated TURN servers (coturn) handed to callers with per-user credentials, "
        "e.g. turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349",
        _parse_ice_urls(("turn", "turns")),
        "URLS",
    )
    turn_secret: str = _setting(
        "", "secret shared with coturn (its static-auth-secret, use-auth-secret)", str, "SECRET"
    )
    turn_ttl: int = _setting(
        43200,
        "seconds a minted TURN credential stays valid; longer than the longest call",
        _parse_positive_int,
        "SECONDS",
    )
    media_public_ip: str = _setting(
        "",
        "IP address the media server advertises to browsers (a node behind NAT or in a "
        "container); empty means its own addresses",
        _parse_optional_ip,
        "IP",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'collab.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_cert else "http"
        host = self.host if self.host not in {"0.0.0.0", "::", ""} else "127.0.0.1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def effective_node_id(self) -> str:
        return self.node_id or f"{self.host}:{self.port}"

    @property
    def uses_tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def secure_cookies(self) -> bool:
        """Mark cookies Secure when browsers reach us over HTTPS, directly or via a proxy."""
        return self.uses_tls or self.effective_public_url.startswith("https://")


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Config)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults stay None so we can tell 'not given'."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with settings (keys as below, with underscores); env COLLAB_CONFIG",
    )
    for field in SETTINGS:
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        shown = "(empty)" if shown in ("", None, ()) else shown
        parser.add_argument(
            _flag(field.name),
            dest=field.name,
            default=None,
            metavar=field.metadata["metavar"] or field.name.upper(),
            help=f"{field.metadata['help']} [env {ENV_PREFIX}{field.name.upper()}; "
            f"default: {shown}]",
        )


def _coerce(field: dataclasses.Field[Any], raw: Any) -> Any:
    parse: Callable[[str], Any] = field.metadata["parse"]
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    if isinstance(raw, list):
        raw = ",".join(str(item) for item in raw)
    text = str(raw).strip()
    if field.default is None and text == "":
        return None
    try:
        return parse(text)
    except (ValueError, TypeError) as exc:
        detail = str(exc) or "invalid value"
        raise ConfigError(
            f"{_flag(field.name)} (env {ENV_PREFIX}{field.name.upper()})",
            f"{text!r} is not valid ({detail})",
        ) from None


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("--config", f"file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML ({exc})") from None
    known = {field.name for field in SETTINGS}
    normalised = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(normalised) - known)
    if unknown:
        raise ConfigError("--config", f"{path} has unknown setting(s): {', '.join(unknown)}")
    return normalised


def build_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Merge flags, environment and TOML (in that order of precedence) into a Config."""
    flags = flags or {}
    env = os.environ if env is None else env
    file_path = config_file or (
        Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None
    )
    from_file = load_toml(file_path) if file_path else {}
    values: dict[str, Any] = {}
    for field in SETTINGS:
        env_name = f"{ENV_PREFIX}{field.name.upper()}"
        if flags.get(field.name) is not None:
            values[field.name] = _coerce(field, flags[field.name])
        elif env_name in env:
            values[field.name] = _coerce(field, env[env_name])
        elif field.name in from_file:
            values[field.name] = _coerce(field, from_file[field.name])
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field checks: things each value alone cannot tell."""
    if (config.tls_cert is None) != (config.tls_key is None):
        missing = "--tls-key" if config.tls_key is None else "--tls-cert"
        raise ConfigError(missing, "--tls-cert and --tls-key must be given together")
    for name in ("tls_cert", "tls_key"):
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(_flag(name), f"file {path} does not exist or is not a file")
    if config.turn_urls and not config.turn_secret:
        raise ConfigError("--turn-secret", "--turn-urls needs --turn-secret to mint credentials")
    if config.data_dir.exists() and not config.data_dir.is_dir():
        raise ConfigError("--data-dir", f"{config.data_dir} exists and is not a directory")


def config_from_args(namespace: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    flags = {field.name: getattr(namespace, field.name, None) for field in SETTINGS}
    config_file = Path(namespace.config) if getattr(namespace, "config", None) else None
    return build_config(flags, env, config_file)


def setting_names() -> Sequence[str]:
    return [field.name for field in SETTINGS]
