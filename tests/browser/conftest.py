"""Real server, real Chromium: fixtures for the browser tests of ``web/``.

Each test gets a fresh ``collab serve`` process with its own data directory,
so the first-run link is always there and no test depends on another.
One Chromium serves all the tests of a module; each page gets its own context
(its own cookies), so two contexts are two browsers of two people or devices.

For the chat UI's tests: ``server.restart()`` (the browser sees its server go
away and come back), ``signed_in_page`` (a context signed in without the UI),
``axe`` (accessibility check of a page) and, in ``chat_fixtures``, people and
rooms made over the API and ``SocketCutter`` (drops the page's WebSocket).

The app's Content-Security-Policy forbids ``eval``, and Playwright evaluates an
expression string with it while ``page.wait_for_function`` polls: pass a
function (``"() => window.ready"``), never a bare expression (``"window.ready"``
fails with an EvalError). ``page.evaluate`` and ``expect`` are not affected.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.request import HTTPCookieProcessor, Request, build_opener, urlopen

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from tests.browser.chat_fixtures import MEMBER_PASSWORD, BrowserApi, Person

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
FIRST_RUN = re.compile(
    r"No users yet\. Open this one-time link to create the first administrator "
    r"\(valid 24 hours\): (?P<url>\S+)"
)
START_TIMEOUT_S = 20.0
AXE_SOURCE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
AXE_BLOCKING = frozenset({"serious", "critical"})

ADMIN_USERNAME = "ada"
ADMIN_PASSWORD = "analytical-engine-1843"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One ``collab serve`` on a fixed port and data directory.

    It can be stopped and started again (``stop``, ``start``, ``restart``) on the
    same address and data, so a browser sees its server go away and come back
    with everything it had: the sessions, users and rooms live in ``data_dir``.
    """

    url: str
    data_dir: Path
    process: subprocess.Popen[str] | None = None
    _lines: list[str] = field(default_factory=list)
    _first_run: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None
    first_run_link: str = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        """Everything every run of the server wrote to stderr, in order."""
        return "".join(self._lines)

    def read_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._lines.append(line)
            match = FIRST_RUN.search(line)
            if match and not self.first_run_link:
                self.first_run_link = match.group("url")
                self._first_run.set()

    def wait_first_run_link(self, timeout: float) -> str:
        if not self._first_run.wait(timeout):
            raise AssertionError(f"no first-run link in the server log:\n{self.log()}")
        return self.first_run_link

    def start(self) -> None:
        """Run ``collab serve`` and wait until it answers ``/healthz``.

        A start forgets the last run's first-run link: while the data directory
        has no users each start revokes it and prints a new one (wait for it
        with ``wait_first_run_link``); once it has users, none is printed.
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        self.first_run_link = ""
        self._first_run.clear()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collab",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                # SIGTERM still drains (sockets told, closed with 4000), in a second
                # rather than the default's few: every test stops its server.
                "--drain-time",
                "4",
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(
            target=self.read_stderr, args=(self.process,), name="collab-stderr", daemon=True
        )
        self._reader.start()
        _wait_healthy(self)

    def stop(self, timeout: float = 15.0) -> int:
        """Stop the server as a supervisor would (SIGTERM) and wait for it to exit.

        Its sockets close with 1001 (going away) and the port is free again for
        ``start``. Returns the exit code: 0 after a clean shutdown, -9 when it did
        not stop within ``timeout`` and was killed (assert on it where it matters).
        """
        process = self.process
        assert process is not None, "never started"
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return process.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def api(self) -> ApiClient:
        return ApiClient(self.url)

    def create_first_admin(
        self, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD, **extra: str
    ) -> ApiClient:
        """Use the first-run link over HTTP (not the UI): the admin most tests start from."""
        code = self.first_run_link.rsplit("/", 1)[-1]
        client = self.api()
        status, body = client.call(
            "POST",
            f"/api/v1/invitations/{code}/accept",
            {"username": username, "password": password, **extra},
        )
        assert status == 201, body
        return client


class ApiClient:
    """A small HTTP client with its own cookie jar, for arranging what a test needs."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.opener = build_opener(HTTPCookieProcessor(CookieJar()))
        self.csrf: str | None = None
        self.token = token

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict | None]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except HTTPError as error:
            status, raw = error.code, error.read()
        payload = json.loads(raw) if raw else None
        if isinstance(payload, dict) and payload.get("csrf_token"):
            self.csrf = payload["csrf_token"]
        return status, payload

    def login(self, username: str, password: str) -> ApiClient:
        status, body = self.call(
            "POST", "/api/v1/login", {"username": username, "password": password}
        )
        assert status == 200, body
        return self


def _wait_healthy(server: Server) -> None:
    process = server.process
    assert process is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"collab serve exited with {process.returncode}:\n{server.log()}")
        try:
            with urlopen(f"{server.url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(
        f"collab serve did not answer /healthz in {START_TIMEOUT_S} s:\n{server.log()}"
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh node with an empty data directory; ``server.restart()`` keeps both."""
    srv = Server(url=f"http://127.0.0.1:{_free_port()}", data_dir=tmp_path)
    try:
        srv.start()
        srv.wait_first_run_link(timeout=5)
        yield srv
    finally:
        if srv.process is not None:
            srv.stop()
    assert "unhandled error" not in srv.log(), srv.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module's tests.

    Module, not session, scope: Playwright's sync API keeps its event loop
    marked as running in this thread while it is open, which would break
    every asyncio test that pytest runs after the browser tests.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageProblems:
    """What a page must never do: throw, break the CSP, or pop up a dialog."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


# Resources the app fetches and expects to fail (a 401 from /api/v1/me when
# signed out, a 4xx the screen shows) are logged by Chromium; they are not faults.
_EXPECTED_CONSOLE = re.compile(
    r"^Failed to load resource: the server responded with a status of 4\d\d"
)
# What Chromium logs while the server is down (``server.stop()``): pass it as
# ``open_page(tolerate=[SERVER_DOWN])`` in tests that take the server away.
SERVER_DOWN = re.compile(
    r"^Failed to load resource: net::ERR_CONNECTION_REFUSED"
    r"|^WebSocket connection to '\S+' failed"
)


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[Callable[..., Page]]:
    """Open a page in a new browser context (own cookies) on the test's server.

    ``tolerate``: patterns (``re.search``) of console errors this page may log
    without failing the test, e.g. ``SERVER_DOWN`` around a restart.
    """
    contexts = []
    problems: dict[Page, PageProblems] = {}

    def open_(
        width: int = 1280,
        height: int = 800,
        clipboard: bool = False,
        tolerate: Iterable[str | re.Pattern[str]] = (),
    ) -> Page:
        context = browser.new_context(
            base_url=server.url,
            viewport={"width": width, "height": height},
            locale="en-GB",
            timezone_id="UTC",
            permissions=["clipboard-read", "clipboard-write"] if clipboard else [],
        )
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        seen = problems[page] = PageProblems()
        allowed = [_EXPECTED_CONSOLE, *(re.compile(p) for p in tolerate)]

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not any(p.search(message.text) for p in allowed):
                seen.errors.append(f"console: {message.text}")

        def on_dialog(dialog: Dialog) -> None:
            seen.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
        page.on("dialog", on_dialog)
        return page

    yield open_
    for context in contexts:
        context.close()
    for seen in problems.values():
        assert not seen.errors, seen.errors
        assert not seen.dialogs, seen.dialogs


class SignedInPage(Protocol):
    def __call__(
        self,
        user: Person | str,
        password: str | None = None,
        *,
        goto: str | None = None,
        **page_options: Any,
    ) -> Page: ...


@pytest.fixture
def signed_in_page(open_page: Callable[..., Page], server: Server) -> SignedInPage:
    """Open a page (``open_page``, so its problems fail the test) whose context is
    already signed in as ``user``, without the sign-in screen.

    The password defaults to the person's, ``ADMIN_PASSWORD`` for the admin and
    ``MEMBER_PASSWORD`` otherwise. The page stays blank unless ``goto`` is
    given, so a test can route its WebSocket (``SocketCutter``) before the app
    loads. ``BrowserApi.of(page.context, server.url)`` makes REST calls as it.
    """

    def open_(
        user: Person | str,
        password: str | None = None,
        *,
        goto: str | None = None,
        **page_options: Any,
    ) -> Page:
        if isinstance(user, Person):
            username, password = user.username, password or user.password
        else:
            username = user
            default = ADMIN_PASSWORD if user == ADMIN_USERNAME else MEMBER_PASSWORD
            password = password or default
        page = open_page(**page_options)
        BrowserApi.sign_in(page.context, server.url, username, password)
        if goto is not None:
            page.goto(goto)
        return page

    return open_


class CheckA11y(Protocol):
    def __call__(self, page: Page, name: str, *, include: str | None = None) -> dict[str, Any]: ...


@pytest.fixture(scope="session")
def axe() -> CheckA11y:
    """Check a page against WCAG 2.0 and 2.1, levels A and AA, with axe-core.

    ``axe(page, name)`` writes axe's whole result to tests/artifacts/axe-<name>.json
    and fails the test on every serious or critical violation; minor and moderate
    ones are only in the file. ``include`` limits the check to one CSS selector's
    part of the page. Returns axe's result.
    """
    return make_axe_checker(AXE_SOURCE)


def make_axe_checker(source_path: Path) -> CheckA11y:
    """The ``axe`` fixture's check, with axe-core read from ``source_path``.

    A missing axe-core fails (not skips) the test: a skipped accessibility check
    looks like a passed one in a busy test report.

    axe is injected with CDP evaluation (``page.evaluate``), which the page's
    Content-Security-Policy does not govern: the app forbids inline scripts and
    ``eval``, and the check must not weaken the page it checks (no
    ``bypass_csp``, no script tags).
    """
    if not source_path.exists():
        pytest.fail(
            f"{source_path} is missing: run `make test` once, which installs "
            "axe-core (npm ci --prefix tests/browser --no-audit --no-fund).",
            pytrace=False,
        )
    source = source_path.read_text(encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def check_a11y(page: Page, name: str, *, include: str | None = None) -> dict[str, Any]:
        # A navigation drops the injected script; inject again whenever it is gone.
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(source)
        results: dict[str, Any] = page.evaluate(
            """([include, tags]) => axe.run(
                include === null ? document : {include: [include]},
                {runOnly: {type: "tag", values: tags}},
            )""",
            [include, list(AXE_TAGS)],
        )
        path = ARTIFACTS / f"axe-{name}.json"
        path.write_text(json.dumps(results, indent=2), encoding="utf-8")
        blocking = [v for v in results["violations"] if v["impact"] in AXE_BLOCKING]
        if blocking:
            pytest.fail(_describe_violations(name, blocking, path), pytrace=False)
        return results

    return check_a11y


def _describe_violations(name: str, violations: list[dict[str, Any]], path: Path) -> str:
    lines = [f"axe: {len(violations)} serious or critical violation(s) on {name!r}:"]
    for violation in violations:
        nodes = violation["nodes"]
        targets = ", ".join(" ".join(map(str, node["target"])) for node in nodes[:3])
        more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']}\n"
            f"    {len(nodes)} element(s): {targets}{more}\n"
            f"    {violation['helpUrl']}"
        )
    lines.append(f"Full result: {path.relative_to(REPO)}")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def shot() -> Callable[..., None]:
    """Save a screenshot of the page as tests/artifacts/<name>.png.

    Whole page by default, from the top (so the sticky header is where a
    person sees it); ``full_page=False`` for what is on screen, e.g. a dialog.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str, *, full_page: bool = True) -> None:
        if full_page:
            page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(
            path=str(ARTIFACTS / f"{name}.png"), full_page=full_page, animations="disabled"
        )

    return take
