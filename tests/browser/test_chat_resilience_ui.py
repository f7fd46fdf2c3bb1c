"""The chat screen when the connection goes away: reconnecting, catching up, the outbox.

Grace's socket is cut (``SocketCutter``, as a flaky network would) or the
server restarts while Ada goes on writing. When Grace is back she must see
every message exactly once, and what she wrote while offline, shown as
waiting, must arrive exactly once for both of them.

"Exactly once" is counted twice: when the message shows, and again after a
later message has arrived behind it (the socket delivers in order, so a
duplicate of an earlier message would be there by then).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from playwright.sync_api import Locator, Page, expect

from tests.browser.chat_fixtures import Person, SocketCutter, create_channel, create_member
from tests.browser.chat_steps import (
    PENDING,
    composer,
    message,
    pending,
    post_message,
    send,
    wait_for_chat,
)
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    SERVER_DOWN,
    CheckA11y,
    Server,
    SignedInPage,
)

Shot = Callable[..., None]
# The client retries with back-off (0.5 s, 1 s, 2 s, 4 s, ... with jitter):
# after a few seconds offline the next attempt may be up to 8 s away.
RECONNECT_TIMEOUT_MS = 15_000


def arrange(server: Server) -> tuple[Person, dict]:
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    general = create_channel(admin, "general", [grace])
    return grace, general


def banner(page: Page) -> Locator:
    """The connection banner at the top of the conversation."""
    return (
        page.get_by_role("main")
        .get_by_role("status")
        .filter(has_text=re.compile(r"offline|Reconnecting|Connected again"))
    )


def each_shown_once(page: Page, texts: Iterable[str], timeout: float = 5000) -> None:
    for text in texts:
        expect(message(page, text)).to_have_count(1, timeout=timeout)
    expect(page.locator(PENDING)).to_have_count(0)


def still_once(page: Page, texts: Iterable[str]) -> None:
    """Counted now, without waiting: nothing came twice in the meantime."""
    counts = {text: message(page, text).count() for text in texts}
    assert counts == dict.fromkeys(counts, 1), counts


def test_a_cut_connection_catches_up_and_sends_what_waited(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    grace_page = signed_in_page(grace)
    cutter = SocketCutter(grace_page)
    grace_page.goto(f"/#/chat/{general['id']}")
    wait_for_chat(grace_page)
    cutter.wait_for_opened(1)
    send(ada, "#general", "Before the cut")
    expect(message(grace_page, "Before the cut")).to_have_count(1)

    cutter.cut()
    expect(banner(grace_page)).to_contain_text(re.compile(r"You are offline|Reconnecting"))
    written_by_ada = [f"Written by Ada while Grace is offline, number {n}" for n in (1, 2, 3)]
    for text in written_by_ada:
        send(ada, "#general", text)
        expect(message(ada, text)).to_have_count(1)

    # Offline, Grace can still write: the message waits, the box stays usable.
    box = composer(grace_page, "#general")
    expect(box).to_be_editable()
    send(grace_page, "#general", "Grace wrote this offline")
    waiting = pending(grace_page, "Grace wrote this offline")
    expect(waiting).to_contain_text("Waiting for the connection…")
    expect(banner(grace_page)).to_contain_text("1 message waits to be sent.")
    expect(box).to_be_focused()
    box.fill("a draft goes on")
    expect(box).to_have_value("a draft goes on")
    box.fill("")
    expect(message(grace_page, "Written by Ada")).to_have_count(0)
    shot(grace_page, "resilience-offline")

    cutter.restore()
    everything = ["Before the cut", *written_by_ada, "Grace wrote this offline"]
    each_shown_once(grace_page, everything, timeout=RECONNECT_TIMEOUT_MS)
    each_shown_once(ada, everything)
    expect(banner(grace_page)).to_contain_text("Connected again.")
    assert cutter.opened >= 2
    shot(grace_page, "resilience-caught-up")

    send(ada, "#general", "A last one after the reconnect")
    expect(message(grace_page, "A last one after the reconnect")).to_have_count(1)
    still_once(grace_page, everything)
    still_once(ada, [*everything, "A last one after the reconnect"])
    expect(banner(grace_page)).to_be_hidden()


def test_what_waits_in_the_outbox_survives_a_reload_while_offline(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    grace_page = signed_in_page(grace)
    cutter = SocketCutter(grace_page)
    grace_page.goto(f"/#/chat/{general['id']}")
    wait_for_chat(grace_page)
    cutter.wait_for_opened(1)

    cutter.cut()
    send(grace_page, "#general", "Written before the reload")
    expect(pending(grace_page, "Written before the reload")).to_be_visible()
    grace_page.reload()
    # Still offline after the reload: the message is still there, still waiting.
    expect(pending(grace_page, "Written before the reload")).to_contain_text(
        "Waiting for the connection…"
    )
    shot(grace_page, "resilience-outbox-after-reload")

    cutter.restore()
    each_shown_once(grace_page, ["Written before the reload"], timeout=RECONNECT_TIMEOUT_MS)
    each_shown_once(ada, ["Written before the reload"])
    send(ada, "#general", "Got it")
    expect(message(grace_page, "Got it")).to_have_count(1)
    still_once(grace_page, ["Written before the reload"])
    still_once(ada, ["Written before the reload"])


def test_a_server_restart_loses_and_repeats_nothing(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}", tolerate=[SERVER_DOWN])
    grace_page = signed_in_page(grace, goto=f"/#/chat/{general['id']}", tolerate=[SERVER_DOWN])
    for page in (ada, grace_page):
        wait_for_chat(page)
    send(ada, "#general", "Before the restart")
    expect(message(grace_page, "Before the restart")).to_have_count(1)

    assert server.stop() == 0
    for page in (ada, grace_page):
        expect(banner(page)).to_contain_text(re.compile(r"You are offline|Reconnecting"))
    # Both write while the server is away; both messages wait.
    send(ada, "#general", "Ada wrote this while the server was down")
    send(grace_page, "#general", "Grace wrote this while the server was down")
    expect(pending(ada, "Ada wrote this while the server was down")).to_be_visible()
    expect(pending(grace_page, "Grace wrote this while the server was down")).to_be_visible()
    shot(grace_page, "resilience-server-down")

    server.start()
    # Ada posts at once over REST, whether or not Grace is back yet.
    ada_api = server.api().login(ADMIN_USERNAME, ADMIN_PASSWORD)
    post_message(ada_api, general["id"], "Posted right after the restart")
    everything = [
        "Before the restart",
        "Ada wrote this while the server was down",
        "Grace wrote this while the server was down",
        "Posted right after the restart",
    ]
    for page in (ada, grace_page):
        each_shown_once(page, everything, timeout=RECONNECT_TIMEOUT_MS)
    shot(grace_page, "resilience-server-back")

    send(grace_page, "#general", "All good on my side")
    for page in (ada, grace_page):
        expect(message(page, "All good on my side")).to_have_count(1)
        still_once(page, everything)
    # The server stored each exactly once: a fresh load shows the same.
    grace_page.reload()
    each_shown_once(grace_page, [*everything, "All good on my side"])
    still_once(grace_page, [*everything, "All good on my side"])


def test_the_offline_conversation_passes_axe(
    server: Server, signed_in_page: SignedInPage, shot: Shot, axe: CheckA11y
) -> None:
    grace, general = arrange(server)
    post_message(server.api().login(ADMIN_USERNAME, ADMIN_PASSWORD), general["id"], "Hello")
    grace_page = signed_in_page(grace)
    cutter = SocketCutter(grace_page)
    grace_page.goto(f"/#/chat/{general['id']}")
    expect(message(grace_page, "Hello")).to_be_visible()
    cutter.wait_for_opened(1)
    cutter.cut()
    send(grace_page, "#general", "Written while offline")
    expect(pending(grace_page, "Written while offline")).to_contain_text(
        "Waiting for the connection…"
    )
    expect(banner(grace_page)).to_contain_text("1 message waits to be sent.")
    shot(grace_page, "resilience-offline-axe", full_page=False)
    axe(grace_page, "chat-offline")
