"""The chat screen of web/ with two people in two browsers: conversations, search, safety.

Ada (the admin) and Grace each have their own browser context against a real
node. What one does, the other must see: direct messages started from the
"New message" dialog, a channel's messages with edits, deletions, reactions,
replies and files, search, and text that looks like markup rendered as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.browser.chat_fixtures import BrowserApi, Person, create_channel, create_member
from tests.browser.chat_steps import (
    composer,
    create_dm,
    has_no_horizontal_overflow,
    message,
    message_action,
    open_room,
    post_message,
    send,
    sidebar_room,
    spoken,
    tiny_png,
    upload_file,
    wait_for_chat,
)
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, CheckA11y, Server, SignedInPage

OpenPage = Callable[..., Page]
Shot = Callable[..., None]
FILE_BYTES = "Minutes of the meeting\n\u00e9t\u00e9 \u2713\n".encode() + bytes(range(256))
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_LINK = "javascript:alert(1)"
PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1280, "height": 800}


def arrange(server: Server) -> tuple[Person, dict]:
    """Ada (admin), Grace (member) and #general with both of them in it."""
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    general = create_channel(admin, "general", [grace], topic="Anything and everything")
    return grace, general


def test_sign_in_and_direct_messages_both_ways(
    server: Server,
    open_page: OpenPage,
    signed_in_page: SignedInPage,
    shot: Shot,
    axe: CheckA11y,
) -> None:
    grace, _ = arrange(server)
    ada = open_page()
    ada.goto("/")
    expect(ada.get_by_role("heading", name="Sign in to collab")).to_be_visible()
    axe(ada, "chat-sign-in")
    ada.get_by_label("Username").fill(ADMIN_USERNAME)
    ada.get_by_label("Password").fill(ADMIN_PASSWORD)
    ada.get_by_role("button", name="Sign in").click()
    expect(ada).to_have_url(re.compile(r"#/chat$"))
    expect(ada.get_by_role("heading", level=1, name="Welcome, Ada Lovelace")).to_be_visible()
    wait_for_chat(ada)
    shot(ada, "chat-welcome")

    # New message: the user picker finds Grace by part of her name.
    ada.get_by_role("main").get_by_role("button", name="New message").click()
    dialog = ada.get_by_role("dialog", name="New message")
    picker = dialog.get_by_role("combobox", name="To")
    expect(picker).to_be_focused()
    picker.fill("hop")
    option = dialog.get_by_role("option", name=re.compile("Grace Hopper"))
    expect(option).to_have_count(1)
    shot(ada, "chat-new-message", full_page=False)
    option.click()
    expect(dialog.get_by_role("list", name="Chosen: To")).to_contain_text("Grace Hopper")
    dialog.get_by_role("button", name="Start conversation").click()
    expect(dialog).to_have_count(0)
    expect(ada).to_have_url(re.compile(r"#/chat/\d+$"))
    expect(ada.get_by_role("heading", level=1, name="Grace Hopper")).to_be_visible()
    expect(composer(ada, "Grace Hopper")).to_be_focused()
    send(ada, "Grace Hopper", "Hello Grace, lunch at noon?")
    expect(message(ada, "Hello Grace, lunch at noon?")).to_have_count(1)

    # Grace, in her own browser, has one unread direct message from Ada.
    grace_page = signed_in_page(grace, goto="/#/chat")
    wait_for_chat(grace_page)
    row = sidebar_room(grace_page, "Ada Lovelace")
    expect(row).to_have_accessible_name(spoken("Ada Lovelace", "available", "1 unread"))
    expect(row.locator(".side-badge")).to_have_text("1")
    shot(grace_page, "chat-dm-unread")
    open_room(grace_page, "Ada Lovelace", "Ada Lovelace")
    expect(message(grace_page, "Hello Grace, lunch at noon?")).to_have_count(1)
    # Reading it clears the badge.
    expect(row).to_have_accessible_name(spoken("Ada Lovelace", "available"))
    send(grace_page, "Ada Lovelace", "Noon works. See you there!")

    expect(message(ada, "Noon works. See you there!")).to_have_count(1)
    expect(message(grace_page, "Noon works. See you there!")).to_have_count(1)
    shot(ada, "chat-dm-ada")
    shot(grace_page, "chat-dm-grace")


def test_channel_messages_edit_delete_react_reply_and_a_file(
    server: Server, signed_in_page: SignedInPage, shot: Shot, tmp_path
) -> None:
    grace, _ = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto="/#/chat")
    grace_page = signed_in_page(grace, goto="/#/chat")
    for page in (ada, grace_page):
        wait_for_chat(page)
        open_room(page, "Channel general", "#general")

    send(ada, "#general", "The build is red again")
    send(ada, "#general", "Who broke it?")
    send(ada, "#general", "Never mind, my typo")
    for page in (ada, grace_page):
        expect(message(page, "Never mind, my typo")).to_have_count(1)

    # Edit from the message's toolbar: Grace sees the new text, marked as edited.
    message_action(ada, "The build is red again", "Edit")
    editor = ada.get_by_role("textbox", name="Edit message")
    expect(editor).to_be_focused()
    editor.fill("The build is green again")
    editor.press("Enter")
    expect(editor).to_have_count(0)
    edited = message(grace_page, "The build is green again")
    expect(edited).to_contain_text("(edited)")
    expect(message(grace_page, "The build is red again")).to_have_count(0)

    # Up in the empty composer edits the last own message.
    composer(ada, "#general").press("ArrowUp")
    editor = ada.get_by_role("textbox", name="Edit message")
    expect(editor).to_have_value("Never mind, my typo")
    editor.fill("Never mind, it was my typo")
    editor.press("Enter")
    expect(message(grace_page, "Never mind, it was my typo")).to_contain_text("(edited)")

    # Delete, after the confirmation: gone for both, a tombstone in its place.
    message_action(ada, "Who broke it?", "Delete")
    confirm = ada.get_by_role("dialog", name="Delete this message?")
    expect(confirm).to_be_visible()
    shot(ada, "chat-delete-confirm", full_page=False)
    confirm.get_by_role("button", name="Delete").click()
    for page in (ada, grace_page):
        expect(page.get_by_text("Who broke it?")).to_have_count(0)
        expect(page.locator("ol.msgs").get_by_text("This message was deleted.")).to_have_count(1)

    # Grace reacts from the toolbar's picker; Ada sees who reacted.
    message_action(grace_page, "The build is green again", "Add a reaction")
    grace_page.get_by_role("dialog", name="Choose a reaction").get_by_role(
        "button", name="React with 🎉"
    ).click()
    mine = message(grace_page, "The build is green again").get_by_role(
        "button", name=re.compile(r"^🎉 1: you\.")
    )
    expect(mine).to_have_attribute("aria-pressed", "true")
    theirs = message(ada, "The build is green again").get_by_role(
        "button", name="🎉 1: @grace. React too"
    )
    expect(theirs).to_have_attribute("aria-pressed", "false")
    theirs.click()
    expect(
        message(grace_page, "The build is green again").get_by_role(
            "button", name=re.compile(r"^🎉 2: ")
        )
    ).to_be_visible()

    # Grace replies; both see the quote of Ada's message above the reply.
    message_action(grace_page, "Never mind, it was my typo", "Reply")
    reply_bar = grace_page.locator(".composer__reply")
    expect(reply_bar).to_contain_text("Replying to Ada Lovelace: Never mind, it was my typo")
    expect(composer(grace_page, "#general")).to_be_focused()
    send(grace_page, "#general", "Happens to all of us")
    expect(reply_bar).to_be_hidden()
    for page in (ada, grace_page):
        quote = message(page, "Happens to all of us").get_by_role(
            "button", name=re.compile(r"^Replying to Ada Lovelace:? Never mind, it was my typo")
        )
        expect(quote).to_be_visible()

    # Ada shares a file with the composer's file input; Grace downloads the same bytes.
    notes = tmp_path / "minutes.bin"
    notes.write_bytes(FILE_BYTES)
    ada.locator(".composer input[type=file]").set_input_files(notes)
    expect(ada.locator(".composer .upload--done")).to_contain_text("minutes.bin")
    send(ada, "#general", "Minutes attached")
    link = message(grace_page, "Minutes attached").get_by_role("link", name="Download minutes.bin")
    expect(link).to_be_visible()
    with grace_page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "minutes.bin"
    assert download.value.path().read_bytes() == FILE_BYTES
    href = link.get_attribute("href")
    assert href
    response = grace_page.context.request.get(server.url + href if href.startswith("/") else href)
    assert response.ok
    assert response.body() == FILE_BYTES

    # Seen from both sides: messages, an edit, a deletion, reactions, a reply, a file.
    shot(ada, "chat-channel-ada")
    shot(grace_page, "chat-channel-grace")


def arrange_busy_conversation(server: Server, ada: Page, grace: Person, general: dict) -> None:
    """#general with what a conversation shows: text, an edit, a deletion, a
    link, a mention, reactions, a reply, a file and an image (over REST)."""
    ada_api = BrowserApi.of(ada.context, server.url)
    grace_api = server.api().login(grace.username, grace.password)
    room = general["id"]
    first = post_message(ada_api, room, "Release notes are in the wiki: https://example.org/notes")
    post_message(ada_api, room, "Draft, please ignore")
    status, _ = ada_api.call("DELETE", f"/api/v1/messages/{first['id'] + 1}")
    assert status == 200
    edit = {"body": first["body"] + " (v2)"}
    status, _ = ada_api.call("PATCH", f"/api/v1/messages/{first['id']}", edit)
    assert status == 200
    for caller, emoji in ((grace_api, "👍"), (ada_api, "👍"), (grace_api, "🎉")):
        status, _ = caller.call("PUT", f"/api/v1/messages/{first['id']}/reactions/{quote(emoji)}")
        assert status == 200
    post_message(grace_api, room, "Thanks @ada, reading them now", reply_to=first["id"])
    report = upload_file(ada_api, room, "report.txt", b"All tests pass.\n")
    picture = upload_file(ada_api, room, "chart.png", tiny_png())
    post_message(ada_api, room, "The report and a chart", files=[report["id"], picture["id"]])
    post_message(grace_api, room, "`make test` is green for me too")
    # A direct conversation in the sidebar, with an unread message.
    dm = create_dm(ada_api, grace.username)
    post_message(grace_api, dm["id"], "Coffee later?")


@pytest.mark.parametrize(
    ("view", "viewport"),
    [
        ("conversation", "desktop"),
        ("conversation", "phone"),
        ("search", "desktop"),
    ],
)
def test_busy_conversation_and_search_pass_axe(
    server: Server, signed_in_page: SignedInPage, shot: Shot, axe: CheckA11y, view, viewport
) -> None:
    grace, general = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, **(PHONE if viewport == "phone" else DESKTOP))
    arrange_busy_conversation(server, ada, grace, general)
    ada.goto(f"/#/chat/{general['id']}")
    expect(message(ada, "is green for me too")).to_be_visible()
    expect(ada.locator(".msg-image img")).to_have_js_property("complete", True)
    expect(message(ada, "reading them now").locator(".msg__quote")).to_be_visible()
    if view == "search":
        ada.get_by_role("button", name="Search this conversation").click()
        ada.get_by_role("main").get_by_role("searchbox", name="Search messages").fill("report")
        expect(ada.locator(".search-view__results > li")).to_have_count(1)
        expect(ada.locator(".search-view__results mark")).to_have_text("report")
    else:
        # The toolbar and the hover colours are part of what is checked.
        message(ada, "The report and a chart").hover()
    shot(ada, f"chat-axe-{view}-{viewport}", full_page=False)
    axe(ada, f"chat-{view}-{viewport}")


def test_search_finds_a_message_and_opens_it_in_its_room(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    grace_api = server.api().login(grace.username, grace.password)
    ada = signed_in_page(ADMIN_USERNAME)
    ada_api = BrowserApi.of(ada.context, server.url)
    # The match is old: more than a page of history (50) came after it.
    target = post_message(grace_api, general["id"], "The quarterly zebra report is ready")
    for n in range(60):
        post_message(ada_api if n % 2 else grace_api, general["id"], f"Chatter number {n}")
    dm = create_dm(ada_api, grace.username)
    post_message(ada_api, dm["id"], "Did you see the zebra crossing plans?")
    ada.goto(f"/#/chat/{general['id']}")
    wait_for_chat(ada)
    expect(message(ada, "Chatter number 59")).to_be_visible()
    results = ada.locator(".search-view__results > li")

    # The search in the conversation's header is limited to that conversation.
    ada.get_by_role("button", name="Search this conversation").click()
    expect(ada.get_by_role("heading", level=1, name="Search")).to_be_visible()
    query = ada.get_by_role("main").get_by_role("searchbox", name="Search messages")
    expect(query).to_be_focused()
    expect(ada.get_by_label("Only in #general")).to_be_checked()
    query.fill("zebra")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("The quarterly zebra report is ready")

    # The sidebar's box searches everywhere.
    box = ada.get_by_role("navigation", name="Conversations").get_by_role(
        "searchbox", name="Search messages"
    )
    box.fill("zebra")
    box.press("Enter")
    expect(ada.get_by_role("heading", level=1, name="Search")).to_be_visible()
    expect(results).to_have_count(2)
    expect(ada.get_by_text("2 results, newest first")).to_be_visible()
    # Newest first; the matched word is marked.
    expect(results.nth(0)).to_contain_text("Did you see the zebra crossing plans?")
    expect(results.nth(1)).to_contain_text("#general")
    expect(results.nth(1)).to_contain_text("Grace Hopper")
    expect(results.nth(1).locator("mark")).to_have_text("zebra")
    shot(ada, "chat-search-results")

    # A result opens its message in its room, loading older history as needed.
    results.nth(1).get_by_role("link").click()
    expect(ada).to_have_url(re.compile(rf"#/chat/{general['id']}/{target['seq']}$"))
    expect(ada.get_by_role("heading", level=1, name="#general")).to_be_visible()
    found = ada.locator(f"#msg-{target['seq']}")
    expect(found).to_contain_text("The quarterly zebra report is ready")
    expect(found).to_be_focused()
    expect(found).to_have_class(re.compile(r"\bis-highlighted\b"))
    shot(ada, "chat-search-opened", full_page=False)
    expect(found).to_be_in_viewport()


def test_markup_links_and_long_words_are_inert_text(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    grace_page = signed_in_page(grace, goto=f"/#/chat/{general['id']}", **PHONE)
    anchor = '<a href="javascript:alert(1)">click me</a>'
    long_word = "x" * 3000
    mixed = f"see https://example.org/ok and {XSS_LINK}"
    for text in (long_word, XSS_IMG, XSS_LINK, anchor, mixed):
        send(ada, "#general", text)

    for page, name in ((ada, "desktop"), (grace_page, "phone")):
        expect(message(page, mixed)).to_have_count(1)
        expect(message(page, long_word)).to_have_count(1)
        # Markup is shown as the text it is, and makes no element.
        expect(message(page, XSS_IMG).locator(".msg__body")).to_have_text(XSS_IMG)
        expect(message(page, anchor).locator(".msg__body")).to_have_text(anchor)
        assert page.locator("ol.msgs img").count() == 0
        assert page.locator("ol.msgs a").filter(has_text="click me").count() == 0
        # Only http(s) addresses become links; javascript: never does.
        assert page.locator("a[href^='javascript' i]").count() == 0
        bare = message(page, re.compile(r"^javascript:alert\(1\)$"))
        expect(bare).to_have_count(1)
        expect(bare.get_by_role("link")).to_have_count(0)
        links = message(page, "example.org/ok").get_by_role("link")
        expect(links).to_have_count(1)
        expect(links).to_have_attribute("href", "https://example.org/ok")
        # The long word wraps inside the conversation: nothing scrolls sideways.
        has_no_horizontal_overflow(page, ".conv__scroller")
        has_no_horizontal_overflow(page, "ol.msgs")
        has_no_horizontal_overflow(page, "html")
        box = message(page, long_word).locator(".msg__body").bounding_box()
        scroller = page.locator(".conv__scroller").bounding_box()
        assert box and scroller
        assert box["x"] + box["width"] <= scroller["x"] + scroller["width"]
        shot(page, f"chat-inert-text-{name}", full_page=False)
    # (open_page fails the test if an alert() or any page error happened.)


def test_phone_drawer_picks_a_room_and_sends(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    ada_api = server.api().login(ADMIN_USERNAME, ADMIN_PASSWORD)
    dm = create_dm(ada_api, grace.username)
    post_message(ada_api, dm["id"], "Are you on the train?")
    post_message(ada_api, general["id"], "Standup moved to 10:30")
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    phone = signed_in_page(grace, goto=f"/#/chat/{dm['id']}", **PHONE)

    expect(phone.get_by_role("heading", level=1, name="Ada Lovelace")).to_be_visible()
    expect(message(phone, "Are you on the train?")).to_be_visible()
    side = phone.get_by_role("navigation", name="Conversations")
    expect(side).to_be_hidden()
    has_no_horizontal_overflow(phone, "html")
    shot(phone, "chat-phone-dm", full_page=False)

    phone.get_by_role("button", name="Open the conversation list").click()
    expect(side).to_be_visible()
    expect(sidebar_room(phone, "Channel general")).to_be_in_viewport()
    shot(phone, "chat-phone-drawer", full_page=False)
    sidebar_room(phone, "Channel general").click()
    expect(side).to_be_hidden()
    expect(phone).to_have_url(re.compile(rf"#/chat/{general['id']}$"))
    expect(phone.get_by_role("heading", level=1, name="#general")).to_be_visible()
    expect(message(phone, "Standup moved to 10:30")).to_be_visible()

    box = composer(phone, "#general")
    expect(box).to_be_in_viewport()
    box.fill("On my way, 5 minutes late")
    phone.get_by_role("button", name="Send message").click()
    expect(message(phone, "On my way, 5 minutes late")).to_be_in_viewport()
    expect(message(ada, "On my way, 5 minutes late")).to_have_count(1)
    has_no_horizontal_overflow(phone, "html")
    shot(phone, "chat-phone-sent", full_page=False)

    # The drawer closes again with the backdrop, as well as by picking a room.
    phone.get_by_role("button", name="Open the conversation list").click()
    expect(side).to_be_visible()
    phone.mouse.click(360, 330)
    expect(side).to_be_hidden()


def test_phone_welcome_screen_can_open_the_conversation_list(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    arrange(server)
    phone = signed_in_page(ADMIN_USERNAME, goto="/#/chat", **PHONE)
    expect(phone.get_by_role("heading", level=1, name="Welcome, Ada Lovelace")).to_be_visible()
    shot(phone, "chat-phone-welcome", full_page=False)
    phone.get_by_role("button", name="Open the conversation list").click()
    side = phone.get_by_role("navigation", name="Conversations")
    expect(side).to_be_visible()
    open_room(phone, "Channel general", "#general")
    # The account menu lives in the drawer too.
    phone.get_by_role("button", name="Open the conversation list").click()
    phone.get_by_role("button", name="Account menu for Ada Lovelace").click()
    expect(phone.get_by_role("link", name="Change password")).to_be_in_viewport()


def test_keyboard_reaches_a_plain_messages_actions(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    grace, general = arrange(server)
    grace_api = server.api().login(grace.username, grace.password)
    for text in ("First plain message", "Second plain message", "Third plain message"):
        post_message(grace_api, general["id"], text)
    ada = signed_in_page(ADMIN_USERNAME, goto=f"/#/chat/{general['id']}")
    expect(message(ada, "Third plain message")).to_be_visible()

    # Tab from the message list lands on the newest message; arrows move between them.
    ada.get_by_role("log", name="Messages").focus()
    ada.keyboard.press("Tab")
    expect(message(ada, "Third plain message")).to_be_focused()
    ada.keyboard.press("ArrowUp")
    ada.keyboard.press("ArrowUp")
    first = message(ada, "First plain message")
    expect(first).to_be_focused()
    # Its actions are next in the tab order, shown while focus is inside it.
    toolbar = first.get_by_role("toolbar", name="Message actions")
    ada.keyboard.press("Tab")
    expect(toolbar.get_by_role("button", name="Add a reaction")).to_be_focused()
    ada.keyboard.press("Tab")
    expect(toolbar.get_by_role("button", name="Reply")).to_be_focused()
    expect(toolbar).to_be_visible()
    shot(ada, "chat-keyboard-actions", full_page=False)
    ada.keyboard.press("Enter")
    expect(ada.locator(".composer__reply")).to_contain_text(
        "Replying to Grace Hopper: First plain message"
    )
    expect(composer(ada, "#general")).to_be_focused()
    ada.keyboard.type("Answering with the keyboard only")
    ada.keyboard.press("Enter")
    answer = message(ada, "Answering with the keyboard only")
    expect(answer.locator(".msg__quote")).to_contain_text("First plain message")
    # Still one message at a time in the tab order, not every one of them.
    expect(ada.locator("ol.msgs li.msg[tabindex='0']")).to_have_count(1)
