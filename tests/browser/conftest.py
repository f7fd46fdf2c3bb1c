"""Real server, real Chromium: fixtures for the browser tests of ``web/``.

Each test gets a fresh ``collab serve`` process with its own data directory,
so the first-run link is always there and no test depends on another.
One Chromium serves all the tests of a module; each page gets its own context
(its own cookies), so two contexts are two browsers of two people or devices.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import HTTPCookieProcessor, Request, build_opener, urlopen

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

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

ADMIN_USERNAME = "ada"
ADMIN_PASSWORD = "analytical-engine-1843"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    _lines: list[str] = field(default_factory=list)
    _first_run: threading.Event = field(default_factory=threading.Event)
    first_run_link: str = ""

    def log(self) -> str:
        return "".join(self._lines)

    def read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line)
            match = FIRST_RUN.search(line)
            if match and not self.first_run_link:
                self.first_run_link = match.group("url")
                self._first_run.set()

    def wait_first_run_link(self, timeout: float) -> str:
        if not self._first_run.wait(timeout):
            raise AssertionError(f"no first-run link in the server log:\n{self.log()}")
        return self.first_run_link

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
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"collab serve exited with {server.process.returncode}:\n{server.log()}"
            )
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
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collab",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    srv = Server(url=f"http://127.0.0.1:{port}", process=process)
    reader = threading.Thread(target=srv.read_stderr, name="collab-stderr", daemon=True)
    reader.start()
    try:
        _wait_healthy(srv)
        srv.wait_first_run_link(timeout=5)
        yield srv
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
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


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[Callable[..., Page]]:
    """Open a page in a new browser context (own cookies) on the test's server."""
    contexts = []
    problems: dict[Page, PageProblems] = {}

    def open_(width: int = 1280, height: int = 800, clipboard: bool = False) -> Page:
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

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not _EXPECTED_CONSOLE.match(message.text):
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
