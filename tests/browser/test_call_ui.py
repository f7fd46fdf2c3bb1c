"""Calls in real browsers: two Chromium pages (two people) call each other through
the node's media server.

Chromium runs with fake devices (a synthetic camera picture and a beeping
microphone), a fake screen picker, loopback ICE candidates and no autoplay
gesture rule (../shared/notes/browser-webrtc-testing.md has the facts these
rest on). What each page receives is read from its own connections'
``getStats()`` through a test hook: ``window.__collabCall`` is the CallSession
of the call on screen (web/js/call.js), with ``subscribe`` (what the page
receives) and ``publish`` (what it sends) RTCPeerConnections.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.browser.chat_fixtures import Person, SocketCutter, create_channel, create_member
from tests.browser.chat_steps import open_room, wait_for_chat
from tests.browser.conftest import (
    ADMIN_USERNAME,
    CHROMIUM,
    CHROMIUM_ARGS,
    CheckA11y,
    Server,
    SignedInPage,
)

Shot = Callable[..., None]
CALL_ARGS = [
    *CHROMIUM_ARGS,
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]
MEDIA_TIMEOUT_MS = 15000

# Inbound RTP per participant and kind, from the page's subscribe connection:
# {participant: {"audio": {...}, "video": [{source, framesDecoded}, ...]}}.
INBOUND_STATS = """
async () => {
    const session = window.__collabCall;
    if (!session || !session.subscribe) return null;
    const stats = await session.subscribe.getStats();
    const out = {};
    for (const report of stats.values()) {
        if (report.type !== 'inbound-rtp') continue;
        const info = session.subTracks[report.mid];
        if (!info) continue;
        const entry = (out[info.participant] ??= {audio: null, video: []});
        if (report.kind === 'audio') {
            entry.audio = {samples: report.totalSamplesReceived ?? 0};
        } else {
            entry.video.push({source: info.source, frames: report.framesDecoded ?? 0});
        }
    }
    return out;
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """This module's Chromium: the conftest one plus what calls need (fake media)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CALL_ARGS)
        yield chromium
        chromium.close()


def call_page(
    signed_in_page: SignedInPage, server: Server, user: Person | str, **options: Any
) -> Page:
    page = signed_in_page(user, **options)
    page.context.grant_permissions(["camera", "microphone"], origin=server.url)
    page.goto("/#/chat")
    wait_for_chat(page)
    return page


def inbound(page: Page) -> dict[str, Any]:
    return page.evaluate(INBOUND_STATS) or {}


def wait_for_media(page: Page, others: int, videos_each: int = 1) -> dict[str, Any]:
    """Wait until audio and ``videos_each`` videos from each of ``others`` people
    arrive and are decoded, with frames still rising; returns the last stats."""
    first: dict[str, Any] = {}
    deadline_ms = MEDIA_TIMEOUT_MS
    waited = 0
    while waited < deadline_ms:
        stats = inbound(page)
        complete = len(stats) >= others and all(
            entry["audio"]
            and entry["audio"]["samples"] > 0
            and len(entry["video"]) >= videos_each
            and all(video["frames"] > 0 for video in entry["video"])
            for entry in stats.values()
        )
        if complete and first:
            rising = all(
                sum(v["frames"] for v in stats[p]["video"])
                > sum(v["frames"] for v in first[p]["video"])
                and stats[p]["audio"]["samples"] > first[p]["audio"]["samples"]
                for p in first
                if p in stats
            )
            if rising:
                return stats
        if complete and not first:
            first = stats
        page.wait_for_timeout(250)
        waited += 250
    raise AssertionError(f"media did not arrive on {page.url}: {inbound(page)}")


def system_message(page: Page, text: str | re.Pattern[str]) -> Locator:
    """A system line of the open conversation (call started, call ended...)."""
    return page.locator("ol.msgs > li.msg--system .msg--system__text", has_text=text)


def arrange(server: Server) -> tuple[Person, dict[str, Any]]:
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    general = create_channel(admin, "general", [grace], topic="Calls welcome")
    return grace, general


def test_video_call_ring_accept_media_share_mute_and_end(
    server: Server, signed_in_page: SignedInPage, shot: Shot, axe: CheckA11y
) -> None:
    grace, _ = arrange(server)
    ada = call_page(signed_in_page, server, ADMIN_USERNAME)
    grace_page = call_page(signed_in_page, server, grace)
    for page in (ada, grace_page):
        open_room(page, "Channel general", "#general")

    # Ada starts a video call: the pre-join check shows her camera first.
    ada.get_by_role("button", name="Start a video call").click()
    check = ada.get_by_role("dialog", name="Start a video call")
    expect(check.get_by_label("Your camera preview")).to_be_visible()
    expect(check.get_by_label("Microphone", exact=True)).to_be_enabled()
    shot(ada, "call-prejoin", full_page=False)
    check.get_by_role("button", name="Start call").click()
    call_view = ada.get_by_role("region", name="Call in #general")
    expect(call_view).to_be_visible()
    expect(call_view).to_contain_text("Ringing Grace Hopper")

    # Grace is rung; the ring dialog names the caller.
    ring = grace_page.get_by_role("dialog", name="Ada Lovelace is calling")
    expect(ring).to_be_visible()
    expect(ring).to_contain_text("Video call in #general")
    axe(grace_page, "call-ring", include="dialog.modal")
    shot(grace_page, "call-ring", full_page=False)
    ring.get_by_role("button", name="Accept with video").click()
    expect(ring).to_have_count(0)
    grace_view = grace_page.get_by_role("region", name="Call in #general")
    expect(grace_view).to_be_visible()

    # Both receive the other's audio and video, decoded, frames rising.
    wait_for_media(ada, others=1)
    wait_for_media(grace_page, others=1)
    for page in (ada, grace_page):
        expect(page.locator(".tile")).to_have_count(2)
        expect(page.locator(".tile:not(.tile--mine) video")).to_be_visible()
    expect(call_view).to_contain_text("2 people")
    # The fake microphones beep: the media server hears speech and says so.
    expect(ada.locator(".tile--speaking")).not_to_have_count(0, timeout=MEDIA_TIMEOUT_MS)

    # Grace mutes: Ada sees the mute icon on Grace's tile.
    mute = grace_view.get_by_role("button", name="Mute")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "true")
    grace_tile = call_view.get_by_role("listitem", name=re.compile(r"^Grace Hopper, muted"))
    expect(grace_tile).to_be_visible()
    expect(grace_tile.locator(".tile__muted")).to_be_visible()

    # Grace shares her screen: Ada gets a second video from her, on the stage.
    share = grace_view.get_by_role("button", name="Share screen")
    share.click()
    expect(share).to_have_attribute("aria-pressed", "true")
    wait_for_media(ada, others=1, videos_each=2)
    expect(ada.locator(".call__stage video")).to_be_visible()
    expect(call_view).to_contain_text("Grace Hopper is sharing the screen")
    ada.wait_for_function(
        "() => document.querySelector('.call__stage video').videoWidth > 0",
        timeout=MEDIA_TIMEOUT_MS,
    )
    axe(ada, "call-view", include=".call")
    shot(ada, "call-desktop", full_page=False)
    ada.emulate_media(color_scheme="dark")
    shot(ada, "call-desktop-dark", full_page=False)
    ada.emulate_media(color_scheme="light")
    ada.set_viewport_size({"width": 375, "height": 740})
    expect(call_view.get_by_role("button", name="Chat")).to_be_visible()
    shot(ada, "call-phone", full_page=False)
    call_view.get_by_role("button", name="Chat").click()
    expect(ada.get_by_role("heading", level=1, name="#general")).to_be_visible()
    shot(ada, "call-phone-chat", full_page=False)
    ada.set_viewport_size({"width": 1280, "height": 800})

    # Grace stops sharing; then leaves; Ada is alone, leaves, and the call ends.
    share.click()
    expect(ada.locator(".call__stage")).to_be_hidden()
    grace_view.get_by_role("button", name="Leave").click()
    expect(grace_view).to_have_count(0)
    expect(ada.locator(".tile")).to_have_count(1)
    call_view.get_by_role("button", name="Leave").click()
    expect(call_view).to_have_count(0)
    for page in (ada, grace_page):
        expect(system_message(page, "Ada Lovelace started a video call")).to_have_count(1)
        ended = system_message(
            page, re.compile(r"^Call ended after .* with Ada Lovelace and Grace Hopper")
        )
        expect(ended).to_have_count(1)
        expect(page.get_by_role("button", name="Start a call")).to_be_visible()


def test_three_people_decline_with_text_join_late_and_rejoin_after_a_drop(
    server: Server, signed_in_page: SignedInPage, shot: Shot
) -> None:
    admin = server.create_first_admin(display_name="Ada Lovelace")
    grace = create_member(admin, "grace", display_name="Grace Hopper")
    linus = create_member(admin, "linus", display_name="Linus Torvalds")
    create_channel(admin, "general", [grace, linus])
    ada = call_page(signed_in_page, server, ADMIN_USERNAME)
    grace_page = signed_in_page(grace)
    grace_page.context.grant_permissions(["camera", "microphone"], origin=server.url)
    cutter = SocketCutter(grace_page)
    grace_page.goto("/#/chat")
    wait_for_chat(grace_page)
    linus_page = call_page(signed_in_page, server, linus)
    for page in (ada, grace_page, linus_page):
        open_room(page, "Channel general", "#general")

    ada.get_by_role("button", name="Start a video call").click()
    ada.get_by_role("dialog", name="Start a video call").get_by_role(
        "button", name="Start call"
    ).click()
    call_view = ada.get_by_role("region", name="Call in #general")

    # Linus declines with a quick text; Ada reads it in the call view.
    ring = linus_page.get_by_role("dialog", name="Ada Lovelace is calling")
    ring.get_by_role("button", name="Decline with a message…").click()
    ring.get_by_role("button", name="Can't talk, in a meeting").click()
    expect(ring).to_have_count(0)
    expect(call_view).to_contain_text("Linus Torvalds declined: “Can't talk, in a meeting”")

    grace_page.get_by_role("dialog", name="Ada Lovelace is calling").get_by_role(
        "button", name="Accept with video"
    ).click()
    # Linus changes his mind and joins the ongoing call from the room header.
    join = linus_page.get_by_role("button", name="Join call")
    expect(join).to_be_visible()
    join.click()
    linus_page.get_by_role("dialog", name="Join the call").get_by_role(
        "button", name="Join call"
    ).click()
    for page in (ada, grace_page, linus_page):
        wait_for_media(page, others=2)
        expect(page.locator(".tile")).to_have_count(3)
    shot(ada, "call-three", full_page=False)

    # Grace's network drops; within the grace period she is back in the call
    # (call.join again) and everyone receives her again.
    cutter.cut()
    expect(grace_page.get_by_role("region", name="Call in #general")).to_contain_text(
        "reconnecting", ignore_case=True
    )
    cutter.restore()
    expect(grace_page.get_by_role("region", name="Call in #general")).to_contain_text(
        "3 people", timeout=15000
    )
    for page in (ada, grace_page, linus_page):
        wait_for_media(page, others=2)
    expect(ada.locator(".tile")).to_have_count(3)

    for page in (grace_page, linus_page, ada):
        page.get_by_role("region", name="Call in #general").get_by_role(
            "button", name="Leave"
        ).click()
    expect(system_message(ada, re.compile(r"^Call ended after"))).to_have_count(1)
