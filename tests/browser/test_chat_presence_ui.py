"""Presence and notifications on the chat screen, seen from two browsers.

Grace sets her status in the dialog behind the sidebar's status button; Ada
must see it where people look for it: the direct conversation's header, the
sidebar's dot and the conversation's list of people. On do-not-disturb Grace
gets no desktop notification but still sees her unread count go up; once
she is available again, a mention notifies her.

Desktop notifications are counted with a stand-in for the browser's
``Notification`` (``NOTIFICATION_STUB``), installed before the app loads and
reporting the permission as granted, so the app's own preference (on by
default when the permission is granted) lets it notify.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.browser.chat_fixtures import Person, create_channel, create_member
from tests.browser.chat_steps import (
    NOTIFICATION_STUB,
    create_dm,
    message,
    open_room,
    send,
    sidebar_room,
    spoken,
    wait_for_chat,
)
from tests.browser.conftest import ADMIN_USERNAME, CheckA11y, Server, SignedInPage

Shot = Callable[..., None]
# How long a status change may take to reach the other browser.
PRESENCE_TIMEOUT_MS = 4000


def arrange(server: Server) -> tuple[Person, dict, dict, dict]:
    """Ada and Grace, a DM between them, #general and #random with both."""
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    general = create_channel(admin, "general", [grace])
    random = create_channel(admin, "random", [grace])
    dm = create_dm(admin, grace.username)
    return grace, general, random, dm


def status_button(page: Page) -> Locator:
    return page.get_by_role("button", name=re.compile(r"\(change your status\)$"))


def choice(dialog: Locator, label: str) -> Locator:
    """A status radio button. (Its name runs on with its hint: "Busy Show as busy, ...".)"""
    return dialog.get_by_role("radio", name=re.compile(rf"^{re.escape(label)}\b"))


def choose(dialog: Locator, label: str) -> None:
    """Click a status choice where a person clicks it: its visible label."""
    dialog.locator(".status-choice__label").get_by_text(label, exact=True).click()
    expect(choice(dialog, label)).to_be_checked()


def set_status(page: Page, label: str, shot: Shot | None = None, name: str = "") -> Locator:
    """Choose a status in the status dialog and save it; returns the dialog."""
    status_button(page).click()
    dialog = page.get_by_role("dialog", name="Set your status")
    expect(dialog).to_be_visible()
    choose(dialog, label)
    if shot is not None:
        shot(page, name, full_page=False)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(status_button(page)).to_contain_text(label)
    return dialog


def notified(page: Page) -> list[dict]:
    return page.evaluate("window.notified")


def test_busy_and_a_custom_status_reach_the_other_person(
    server: Server, signed_in_page: SignedInPage, shot: Shot, axe: CheckA11y
) -> None:
    grace, general, _, dm = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{dm['id']}")
    grace_page = signed_in_page(grace, goto=f"/#/chat/{general['id']}")
    wait_for_chat(grace_page)

    header = ada.locator(".conv__subtitle")
    row = sidebar_room(ada, "Grace Hopper")
    expect(header).to_have_text("Available")
    expect(row).to_have_accessible_name(spoken("Grace Hopper", "available"))

    # Grace opens the dialog from her status button in the sidebar's footer.
    status_button(grace_page).click()
    dialog = grace_page.get_by_role("dialog", name="Set your status")
    expect(choice(dialog, "Available")).to_be_checked()
    expect(choice(dialog, "Available")).to_be_focused()
    choose(dialog, "Busy")
    expect(dialog.get_by_label("How long to show “Busy”")).to_be_visible()
    dialog.get_by_role("group", name="Common emoji").get_by_role(
        "button", name="Headphones"
    ).click()
    dialog.get_by_label("Text", exact=True).fill("Deep in a code review")
    shot(grace_page, "presence-status-dialog", full_page=False)
    axe(grace_page, "presence-status-dialog")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(status_button(grace_page)).to_contain_text("Deep in a code review")
    expect(status_button(grace_page)).to_have_attribute("data-status", "busy")

    # Ada sees it within a few seconds: header, sidebar dot and the people list.
    expect(header).to_contain_text("Busy", timeout=PRESENCE_TIMEOUT_MS)
    expect(header).to_contain_text("🎧")
    expect(header).to_contain_text("Deep in a code review")
    expect(row).to_have_accessible_name(spoken("Grace Hopper", "busy", then_more=True))
    expect(row.locator(".presence-dot")).to_have_attribute("data-status", "busy")
    ada.get_by_role("button", name="People: 2").click()
    people = ada.get_by_role("complementary", name="People in this conversation")
    grace_in_list = people.get_by_role("listitem").filter(has_text="Grace Hopper")
    expect(grace_in_list).to_contain_text("Busy")
    expect(grace_in_list.get_by_role("img", name="Busy")).to_be_visible()
    expect(people.get_by_role("listitem").filter(has_text="Ada Lovelace (you)")).to_contain_text(
        "Available"
    )
    shot(ada, "presence-busy-seen-by-ada")
    shot(grace_page, "presence-busy-grace")

    # Back to available: the custom status stays until it is cleared.
    set_status(grace_page, "Available")
    expect(header).to_contain_text("Available", timeout=PRESENCE_TIMEOUT_MS)
    expect(row).to_have_accessible_name(spoken("Grace Hopper", "available", then_more=True))
    expect(grace_in_list.get_by_role("img", name="Available")).to_be_visible()


def test_do_not_disturb_silences_notifications_but_not_the_unread_count(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general, random, _ = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    grace_page = signed_in_page(grace)
    grace_page.context.add_init_script(NOTIFICATION_STUB)
    # Grace reads #random: the direct conversation and #general are elsewhere.
    grace_page.goto(f"/#/chat/{random['id']}")
    wait_for_chat(grace_page)
    assert grace_page.evaluate("Notification.permission") == "granted"
    assert notified(grace_page) == []

    set_status(grace_page, "Do not disturb", shot, "presence-dnd-dialog")
    expect(status_button(grace_page)).to_have_attribute("data-status", "dnd")

    # Ada writes to her directly and mentions her: the counts rise, silently.
    open_room(ada, "Grace Hopper", "Grace Hopper")
    send(ada, "Grace Hopper", "Are you free for a call?")
    dm_row = sidebar_room(grace_page, "Ada Lovelace")
    expect(dm_row).to_have_accessible_name(spoken("Ada Lovelace", "available", "1 unread"))
    expect(dm_row.locator(".side-badge")).to_have_text("1")
    open_room(ada, "Channel general", "#general")
    send(ada, "#general", "@grace the release is blocked on you")
    general_row = sidebar_room(grace_page, "Channel general")
    expect(general_row).to_have_accessible_name(spoken("Channel general", "1 mention", "1 unread"))
    expect(general_row.locator(".side-badge--mention")).to_have_text("1")
    expect(grace_page).to_have_title(re.compile(r"^\(2\) "))
    shot(grace_page, "presence-dnd-unread")

    # Available again, the next mention notifies. Events come in order on the
    # socket: one notification in all means the two before it made none.
    set_status(grace_page, "Available")
    send(ada, "#general", "@grace never mind, it is unblocked")
    expect(general_row).to_have_accessible_name(spoken("Channel general", "2 mentions", "2 unread"))
    grace_page.wait_for_function("() => window.notified.length > 0")
    shot(grace_page, "presence-available-notified")
    assert notified(grace_page) == [
        {
            "title": "Ada Lovelace mentioned you in #general",
            "body": "@grace never mind, it is unblocked",
            "tag": f"collab-{general['id']}",
        }
    ]
    # The unread messages are all there when she opens the rooms.
    open_room(grace_page, "Channel general", "#general")
    expect(message(grace_page, "the release is blocked on you")).to_have_count(1)
    expect(general_row).to_have_accessible_name(spoken("Channel general"))
    open_room(grace_page, "Ada Lovelace", "Ada Lovelace")
    expect(message(grace_page, "Are you free for a call?")).to_have_count(1)
    expect(grace_page).not_to_have_title(re.compile(r"^\("))
