"""The ``collab`` command: serve, migrate, and administration from scripts.

Anything that stops start-up (a bad setting, a port in use, a database that
does not answer) is printed as one line that names the setting to fix, with
no traceback, and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from collab.accounts.passwords import Passwords
from collab.accounts.service import AccountService
from collab.accounts.throttle import LoginThrottle
from collab.api.errors import ApiError
from collab.clock import wall_clock_ms
from collab.cluster import launcher as cluster_launcher
from collab.config import Config, ConfigError, add_arguments, config_from_args
from collab.ops.drain import DRAIN, Watchdog
from collab.ops.logs import configure as configure_logging
from collab.store import Store, migrate, open_store
from signaling.bus import LocalBus

log = logging.getLogger("collab")


class StartupError(Exception):
    """A failure the user can fix; printed as one line."""


def _settings_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings")
    add_arguments(group)  # type: ignore[arg-type]
    return parent


def build_parser() -> argparse.ArgumentParser:
    settings = _settings_parent()
    parser = argparse.ArgumentParser(
        prog="collab", description="Self-hosted chat, presence and calls."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "serve",
        parents=[settings],
        help="run a node (applies migrations first)",
        description="Run a collab node. Every setting can also come from the environment "
        "(COLLAB_<NAME>) or a TOML file (--config); flags win over the environment, "
        "which wins over the file.",
    )
    commands.add_parser("migrate", parents=[settings], help="apply database migrations")
    cluster = commands.add_parser(
        "cluster",
        help="run Redis, N nodes and a load balancer on this machine (for developers)",
        description="Start a local cluster: a redis-server (unless --redis-url), N `collab "
        "serve` nodes on consecutive ports sharing PostgreSQL and a data directory, and a "
        "small load balancer in front. Ctrl-C stops everything.",
    )
    cluster_launcher.add_arguments(cluster)
    admin = commands.add_parser("admin", help="administration from scripts")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create = admin_commands.add_parser(
        "create-user", parents=[settings], help="create a user with a password from a file"
    )
    create.add_argument("username")
    create.add_argument(
        "--password-file",
        required=True,
        metavar="FILE",
        help="file whose first line is the password ('-' reads standard input)",
    )
    create.add_argument("--admin", action="store_true", help="make the user an administrator")
    create.add_argument("--role", choices=["admin", "member", "guest"], default=None)
    create.add_argument("--display-name", default=None)
    create.add_argument("--email", default=None)
    invite = admin_commands.add_parser(
        "invite", parents=[settings], help="print a single-use invitation link"
    )
    invite.add_argument("--role", choices=["admin", "member", "guest"], default="member")
    invite.add_argument("--hours", type=float, default=None, help="hours the link stays valid")
    return parser


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def _database_error(config: Config, exc: Exception) -> StartupError:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return StartupError(
        f"cannot use the database {_safe_url(config.effective_database_url)}: {reason} "
        "(check setting --database-url)"
    )


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("--tls-cert", f"cannot load certificate and key: {exc}") from None
    return context


async def _settle_garbage_collector(_app: web.Application) -> None:
    """Everything built at start-up lives as long as the process: keep the collector from
    walking it again and again, and collect young objects less often. A node holds many
    long-lived objects (sockets, subscriptions), and full collections over them showed up
    as latency spikes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _ignore_further_signals(watchdog: Watchdog) -> Callable[[web.Application], Awaitable[None]]:
    async def ignore(_app: web.Application) -> None:
        """A second Ctrl-C (or a SIGTERM from a supervisor and its process group) while
        shutting down must not cut the clean-up short; the drain time bounds it anyway."""
        watchdog.arm()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
                loop.add_signal_handler(sig, log.info, "already shutting down")

    return ignore


def _raise_graceful_exit() -> None:
    raise web.GracefulExit


def _drain_on_sigterm(watchdog: Watchdog) -> Callable[[web.Application], Awaitable[None]]:
    """SIGTERM (a supervisor, a rolling restart) drains the node before the normal
    shutdown that Ctrl-C starts at once; both end within --drain-time."""

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def drain_then_exit(task: asyncio.Task[None]) -> None:
            loop.call_soon(_raise_graceful_exit)  # as aiohttp's own signal handler does

        def on_sigterm() -> None:
            watchdog.arm()
            loop.remove_signal_handler(signal.SIGTERM)
            loop.add_signal_handler(signal.SIGTERM, log.info, "already draining")
            app[DRAIN].begin().add_done_callback(drain_then_exit)

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    return install


def serve(config: Config) -> None:
    context = _ssl_context(config)
    # Imported here: the application (the media stack above all) takes about a second
    # to import, which migrate, create-user, invite and --help do not need.
    from collab.app import create_app

    app = create_app(config)
    watchdog = Watchdog(config.drain_time)
    app.on_shutdown.insert(0, _ignore_further_signals(watchdog))
    app.on_startup.append(_settle_garbage_collector)
    app.on_startup.append(_drain_on_sigterm(watchdog))
    bound = f"{'https' if context else 'http'}://{config.host}:{config.port}"
    public = config.effective_public_url
    log.info(
        "collab listening on %s%s (node %s, database %s, bus %s)",
        bound,
        f", reached at {public}" if public.rstrip("/") != bound else "",
        config.effective_node_id,
        _safe_url(config.effective_database_url),
        "redis" if config.redis_url else "in-process",
    )
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            ssl_context=context,
            # The drain phase takes up to half the drain time; leave a quarter for clean-up.
            shutdown_timeout=min(config.shutdown_timeout, config.drain_time / 4),
            access_log=None,
            print=None,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen on {config.host}:{config.port}: the address is in use "
                "(choose another with --port, or stop the other process)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(
                f"cannot listen on {config.host}: this machine has no such address "
                "(check setting --host)"
            ) from None
        if isinstance(exc, ConnectionRefusedError | TimeoutError) or exc.errno in {
            errno.ECONNREFUSED,
            errno.EHOSTUNREACH,
        }:
            raise _database_error(config, exc) from None
        raise
    except (OperationalError, DBAPIError) as exc:
        raise _database_error(config, exc) from None


async def _migrate(config: Config) -> str | None:
    store = open_store(config.effective_database_url)
    try:
        await migrate.upgrade(store)
        return await migrate.current_revision(store)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise _database_error(config, exc) from None
    finally:
        await store.close()


def _read_password(path: str) -> str:
    if path == "-":
        text = sys.stdin.readline()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise StartupError(f"cannot read --password-file {path}: {exc.strerror}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


async def _with_accounts(config: Config) -> tuple[AccountService, Store]:
    store = open_store(config.effective_database_url)
    try:
        await migrate.upgrade(store)
    except (OperationalError, DBAPIError, OSError) as exc:
        await store.close()
        raise _database_error(config, exc) from None
    accounts = AccountService(
        store,
        LocalBus(),
        Passwords(),
        LoginThrottle(store, wall_clock_ms, config.login_max_failures),
        wall_clock_ms,
        session_ttl_ms=0,
        invitation_ttl_ms=int(config.invitation_hours * 3600 * 1000),
        public_url=config.effective_public_url,
    )
    return accounts, store


async def _create_user(config: Config, args: argparse.Namespace) -> str:
    password = _read_password(args.password_file)
    role = "admin" if args.admin else (args.role or "member")
    accounts, store = await _with_accounts(config)
    try:
        user = await accounts.create_user(
            username=args.username,
            password=password,
            display_name=args.display_name,
            email=args.email,
            role=role,
        )
    finally:
        await store.close()
    return f"created {user.role} '{user.username}' (id {user.id})"


async def _invite(config: Config, args: argparse.Namespace) -> str:
    accounts, store = await _with_accounts(config)
    try:
        _, code = await accounts.create_invitation(
            None, role=args.role, expires_in_hours=args.hours
        )
    finally:
        await store.close()
    return accounts.invitation_url(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "cluster":
        configure_logging("INFO")
        try:
            cluster_launcher.run(args)
        except cluster_launcher.ClusterError as exc:
            print(f"collab: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        config = config_from_args(args)
        configure_logging(config.log_level)
        if args.command == "serve":
            serve(config)
        elif args.command == "migrate":
            revision = asyncio.run(_migrate(config))
            print(f"database {_safe_url(config.effective_database_url)} is at {revision}")
        elif args.admin_command == "create-user":
            print(asyncio.run(_create_user(config, args)))
        elif args.admin_command == "invite":
            print(asyncio.run(_invite(config, args)))
    except ConfigError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"collab: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"collab: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
