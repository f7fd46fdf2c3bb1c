"""What a person does on the chat screen, as the chat UI's browser tests say it.

Each step goes through the page as a person would (roles and accessible
names from web/js/chat/), so a renamed button fails here, in one place.
Arranging (people, rooms, messages a test only needs to exist) goes over the
API with ``chat_fixtures`` instead.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.browser.chat_fixtures import ApiCaller, BrowserApi

# A message of the conversation the server has stored (not one still in the outbox).
STORED = "ol.msgs > li.msg:not(.msg--pending)"
PENDING = "ol.msgs > li.msg--pending"
# Stubs the browser's Notification before the app loads: permission granted,
# and every notification the app makes is counted in window.notified.
NOTIFICATION_STUB = """
(() => {
    window.notified = [];
    class CountingNotification {
        constructor(title, options = {}) {
            window.notified.push({title, body: options.body ?? null, tag: options.tag ?? null});
            this.onclick = null;
        }
        close() {}
        static get permission() { return "granted"; }
        static requestPermission(callback) {
            callback?.("granted");
            return Promise.resolve("granted");
        }
    }
    window.Notification = CountingNotification;
})();
"""


def composer(page: Page, room_label: str) -> Locator:
    """The message box of a conversation, by the label it has ("Message #general")."""
    return page.get_by_role("textbox", name=f"Message {room_label}", exact=True)


def send(page: Page, room_label: str, text: str) -> None:
    """Write ``text`` in the composer and press Enter."""
    box = composer(page, room_label)
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def message(page: Page, text: str | re.Pattern[str]) -> Locator:
    """Stored messages whose text contains ``text`` (tests use unique texts)."""
    return page.locator(STORED).filter(has=page.locator(".msg__body", has_text=text))


def pending(page: Page, text: str | re.Pattern[str]) -> Locator:
    """Messages still waiting in the outbox whose text contains ``text``."""
    return page.locator(PENDING).filter(has=page.locator(".msg__body", has_text=text))


def message_action(page: Page, text: str, action: str) -> None:
    """Hover a message and click one of its toolbar's buttons ("Edit", "Reply", ...)."""
    item = message(page, text)
    item.hover()
    item.get_by_role("toolbar", name="Message actions").get_by_role("button", name=action).click()


def sidebar_room(page: Page, name: str) -> Locator:
    """A conversation's link in the sidebar; its accessible name starts with ``name``."""
    side = page.get_by_role("navigation", name="Conversations")
    return side.get_by_role("link", name=re.compile(rf"^{re.escape(name)}\s*(,|$)"))


def spoken(*parts: str, then_more: bool = False) -> re.Pattern[str]:
    """An accessible name made of ``parts`` joined by commas, as the sidebar's rows
    say "Grace Hopper, busy, 1 unread". (A browser may put a space before a comma
    where visible and visually hidden text meet; that is not a difference.)
    ``then_more``: other words may follow (a custom status's emoji, say)."""
    joined = r"\s*,\s*".join(re.escape(part) for part in parts)
    return re.compile(f"^{joined}" + (r"\b" if then_more else "$"))


def open_room(page: Page, sidebar_name: str, heading: str) -> None:
    sidebar_room(page, sidebar_name).click()
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()


def wait_for_chat(page: Page) -> None:
    """The chat screen has its conversation list and its socket is up."""
    side = page.get_by_role("navigation", name="Conversations")
    expect(side.get_by_role("heading", name="Channels")).to_be_attached()
    # The status button shows the user's own presence once the server sent it.
    expect(page.locator(".status-button")).not_to_have_attribute("data-status", "unknown")


def post_message(caller: ApiCaller, room_id: int, body: str, **extra: Any) -> dict[str, Any]:
    """Store a message over REST as ``caller`` (arranging a conversation's history)."""
    path = f"/api/v1/rooms/{room_id}/messages"
    status, answer = caller.call("POST", path, {"body": body, **extra})
    assert status == 201, (status, answer)
    return answer["message"]


def upload_file(api: BrowserApi, room_id: int, name: str, data: bytes) -> dict[str, Any]:
    """Upload a file to a room over REST as the browser context (to attach with ``files``)."""
    response = api.request.post(
        f"{api.base_url}/api/v1/rooms/{room_id}/files",
        multipart={"file": {"name": name, "mimeType": "application/octet-stream", "buffer": data}},
        headers={"X-CSRF-Token": api.csrf_token, "Origin": api.base_url},
    )
    assert response.status == 201, (response.status, response.text())
    return response.json()["file"]


def tiny_png(width: int = 48, height: int = 32, rgb: tuple[int, int, int] = (37, 99, 235)) -> bytes:
    """A small one-colour PNG, made here so the tests need no image library."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def create_dm(caller: ApiCaller, username: str) -> dict[str, Any]:
    status, answer = caller.call("POST", "/api/v1/rooms", {"kind": "dm", "members": [username]})
    assert status in (200, 201), (status, answer)
    return answer["room"]


def has_no_horizontal_overflow(page: Page, selector: str) -> None:
    """The element (a scroller or a list) is not wider inside than its box."""
    sizes = page.locator(selector).evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert sizes[0] <= sizes[1], f"{selector} overflows: scrollWidth {sizes[0]} > {sizes[1]}"
