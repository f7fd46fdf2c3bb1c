"""The sign-in and account screens of web/, driven in real Chromium against a real node.

Signing in lands on the chat (#/chat), whose empty screen greets the user by
name; there the account menu is a compact button at the top of the sidebar,
and on the account pages it is in the top bar.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ApiClient, Server

SESSION_ENDED = "Your session has ended. Please sign in again."
XSS_NAME = "<img src=x onerror=alert(1)>"
OpenPage = Callable[..., Page]
Shot = Callable[..., None]


def sign_in(page: Page, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/#/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"#/chat$"))


def open_account_menu(page: Page) -> None:
    page.get_by_role("button", name=re.compile("^Account menu")).click()
    expect(page.locator("#account-menu")).to_be_visible()


def go_via_menu(page: Page, link: str) -> None:
    open_account_menu(page)
    page.locator("#account-menu").get_by_role("link", name=link).click()


def fill_new_account(
    page: Page, username: str, display_name: str, password: str, confirm: str
) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Display name").fill(display_name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password").fill(confirm)


def test_first_run_link_sets_up_the_admin_and_lands_on_the_chat(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    page = open_page()
    page.goto(server.first_run_link)
    heading = page.get_by_role("heading", name="Create the first administrator account")
    expect(heading).to_be_visible()
    expect(page.get_by_text("This link works once")).to_be_visible()
    shot(page, "invite-first-admin")

    # The client checks the confirmation before asking the server.
    fill_new_account(page, "ada", "Ada Lovelace", ADMIN_PASSWORD, "something-else-1")
    page.get_by_role("button", name="Create administrator account").click()
    expect(page.get_by_text("The passwords do not match.")).to_be_visible()
    expect(page.get_by_label("Confirm password")).to_have_attribute("aria-invalid", "true")
    shot(page, "invite-first-admin-mismatch")

    page.get_by_label("Confirm password").fill(ADMIN_PASSWORD)
    page.get_by_label("Confirm password").press("Enter")
    expect(page).to_have_url(re.compile(r"#/chat$"))
    expect(page.get_by_role("heading", level=1, name="Welcome, Ada Lovelace")).to_be_visible()
    expect(
        page.get_by_text("Pick a conversation from your list, or start a new one.")
    ).to_be_visible()
    main = page.get_by_role("main")
    expect(main.get_by_role("button", name="New message")).to_be_visible()
    expect(main.get_by_role("button", name="Browse channels")).to_be_visible()
    shot(page, "home")

    # The account menu is the compact button at the top of the chat's sidebar.
    sidebar = page.get_by_role("navigation", name="Conversations")
    toggle = sidebar.get_by_role("button", name="Account menu for Ada Lovelace")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    menu = page.locator("#account-menu")
    expect(menu).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(menu.get_by_text("@ada")).to_be_visible()
    expect(menu.get_by_text("Administrator")).to_be_visible()
    links = menu.get_by_role("navigation", name="Account").get_by_role("link")
    expect(links).to_have_text(
        [
            "Chat",
            "Status and notifications",
            "Change password",
            "API tokens",
            "Users and invitations",
        ]
    )
    expect(menu.get_by_role("link", name="Chat")).to_have_attribute("aria-current", "page")
    expect(menu.get_by_role("link", name="Chat")).to_be_focused()
    shot(page, "home-account-menu")
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(toggle).to_be_focused()

    # On an account page the menu is in the top bar, and leads back to the chat.
    go_via_menu(page, "Status and notifications")
    expect(page).to_have_url(re.compile(r"#/account/status$"))
    expect(
        page.get_by_role("banner").get_by_role("button", name="Account menu for Ada Lovelace")
    ).to_be_visible()
    go_via_menu(page, "Chat")
    expect(page).to_have_url(re.compile(r"#/chat$"))
    expect(page.get_by_role("heading", level=1, name="Welcome, Ada Lovelace")).to_be_visible()

    # The account really exists on the server with that role and password.
    status, body = server.api().login("ada", ADMIN_PASSWORD).call("GET", "/api/v1/me")
    assert status == 200
    assert body["user"]["role"] == "admin"
    assert body["user"]["display_name"] == "Ada Lovelace"

    # The link is spent: a second visit says so instead of showing the form.
    other = open_page()
    other.goto(server.first_run_link)
    expect(other.get_by_role("heading", name="Invitation link already used")).to_be_visible()
    expect(other.get_by_label("Username")).to_have_count(0)
    shot(other, "invite-used")


def test_sign_out_then_wrong_and_right_password(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    page = open_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in to collab")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    shot(page, "sign-in")

    sign_in(page)
    open_account_menu(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"#/sign-in$"))
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    # Signed out on the server too: a reload stays on sign-in, and so does the chat.
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to collab")).to_be_visible()
    page.goto("/#/chat")
    expect(page).to_have_url(re.compile(r"#/sign-in$"))

    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The username or password is not right.")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Password")).to_be_focused()
    shot(page, "sign-in-wrong-password")

    # Hold the next sign-in request to see the button while it is in flight.
    held: list[Route] = []
    page.route("**/api/v1/login", lambda route: held.append(route))
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Password").press("Enter")
    busy = page.get_by_role("button", name="Signing in…")
    expect(busy).to_be_disabled()
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/api/v1/login")

    expect(page).to_have_url(re.compile(r"#/chat$"))
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()
    # The old address of the signed-in home leads to the chat.
    page.goto("/#/home")
    expect(page).to_have_url(re.compile(r"#/chat$"))
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()


def test_too_many_attempts_show_the_wait(server: Server, open_page: OpenPage, shot: Shot) -> None:
    server.create_first_admin()
    page = open_page()
    page.goto("/#/sign-in")
    page.get_by_label("Username").fill("mallory")
    page.get_by_label("Password").fill("guess-number-eight")

    # Five failures are free; the sixth blocks the username for 1 s and the
    # seventh, after that, for 2 s: long enough for the screen to show it.
    guesser = server.api()
    statuses = [
        guesser.call("POST", "/api/v1/login", {"username": "mallory", "password": f"guess-{i}"})[0]
        for i in range(6)
    ]
    assert statuses == [401] * 6
    time.sleep(1.05)
    status, _ = guesser.call("POST", "/api/v1/login", {"username": "mallory", "password": "g-7"})
    assert status == 401

    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    wait = re.compile(r"^Too many sign-in attempts\. Try again in [12] seconds?\.$")
    expect(alert).to_have_text(wait)
    expect(page.get_by_role("button", name="Sign in")).to_be_disabled()
    shot(page, "sign-in-rate-limited")
    expect(page.get_by_text("You can try again now.")).to_be_visible(timeout=4000)
    expect(page.get_by_role("button", name="Sign in")).to_be_enabled()


def test_guest_invitation_made_in_the_ui_is_accepted_in_another_browser(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    admin = open_page(clipboard=True)
    sign_in(admin)
    go_via_menu(admin, "Users and invitations")
    expect(admin).to_have_url(re.compile(r"#/admin/users$"))
    expect(admin.get_by_role("heading", name="Users and invitations")).to_be_visible()
    expect(admin.get_by_text("No pending invitations.")).to_be_visible()
    expect(admin.locator("tr[data-username=ada]")).to_contain_text("Ada Lovelace")
    shot(admin, "admin-users")

    invite_form = admin.get_by_role("form", name="Create an invitation link")
    invite_form.get_by_label("Role").select_option("guest")
    invite_form.get_by_label("Valid for").select_option("24")
    invite_form.get_by_role("button", name="Create invitation link").click()
    link_field = admin.get_by_label("Invitation link", exact=True)
    expect(link_field).to_have_value(re.compile(re.escape(server.url) + r"/#/invite/[\w-]{20,}$"))
    url = link_field.input_value()
    pending = admin.locator("table.table--invitations tbody tr")
    expect(pending).to_have_count(1)
    expect(pending).to_contain_text("Guest")
    admin.get_by_role("button", name="Copy").click()
    expect(admin.get_by_role("button", name="Copied")).to_be_visible()
    assert admin.evaluate("navigator.clipboard.readText()") == url
    shot(admin, "admin-invitation-created")

    guest = open_page()
    guest.goto(url)
    expect(guest.get_by_role("heading", name="You're invited to collab")).to_be_visible()
    expect(guest.get_by_text("You are joining as a guest")).to_be_visible()
    shot(guest, "invite-guest")
    # A server-side problem is shown next to the field it is about.
    fill_new_account(guest, "ada", "Grace Hopper", "cobol-compiler-1959", "cobol-compiler-1959")
    guest.get_by_role("button", name="Create account").click()
    expect(guest.get_by_text("The username 'ada' is taken; choose another.")).to_be_visible()
    expect(guest.get_by_label("Username")).to_have_attribute("aria-invalid", "true")
    expect(guest.get_by_label("Username")).to_be_focused()
    guest.get_by_label("Username").fill("grace")
    guest.get_by_role("button", name="Create account").click()
    expect(guest).to_have_url(re.compile(r"#/chat$"))
    expect(guest.get_by_role("heading", name="Welcome, Grace Hopper")).to_be_visible()
    # A guest cannot start conversations: the screen says how rooms come to them.
    expect(guest.get_by_text("Rooms people add you to show up there.")).to_be_visible()
    expect(guest.get_by_role("main").get_by_role("button", name="New message")).to_have_count(0)

    open_account_menu(guest)
    menu = guest.locator("#account-menu")
    expect(menu.get_by_text("@grace")).to_be_visible()
    expect(menu.get_by_text("Guest", exact=True)).to_be_visible()
    expect(menu.get_by_role("link", name="API tokens")).to_be_visible()
    expect(guest.get_by_role("link", name="Users and invitations")).to_have_count(0)
    shot(guest, "home-guest-menu")

    guest.goto("/#/admin/users")
    refusal = guest.get_by_text("Only administrators can manage users and invitations.")
    expect(refusal).to_be_visible()
    expect(guest.get_by_role("table")).to_have_count(0)
    shot(guest, "admin-refused")

    # The invitation is used up: no longer pending, and grace is a guest in the table.
    admin.reload()
    expect(admin.get_by_text("No pending invitations.")).to_be_visible()
    expect(admin.get_by_label("Role of @grace")).to_have_value("guest")


def test_password_change_ends_the_other_browsers_session(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    here, elsewhere = open_page(), open_page()
    sign_in(here)
    sign_in(elsewhere)

    go_via_menu(here, "Change password")
    expect(here.get_by_role("heading", name="Change password")).to_be_visible()
    shot(here, "password")

    new_password = "difference-engine-1822"
    here.get_by_label("Current password").fill("not-my-password")
    here.get_by_label("New password", exact=True).fill(new_password)
    here.get_by_label("Confirm new password").fill(new_password)
    here.get_by_role("button", name="Change password").click()
    expect(here.get_by_text("The current password is not right.")).to_be_visible()
    shot(here, "password-wrong-current")

    here.get_by_label("Current password").fill(ADMIN_PASSWORD)
    here.get_by_label("New password", exact=True).fill(new_password)
    here.get_by_label("Confirm new password").fill(new_password)
    here.get_by_role("button", name="Change password").click()
    done = here.get_by_role("status").filter(has_text="Your password has been changed.")
    expect(done).to_contain_text("has been signed out")
    expect(here.get_by_label("Current password")).to_have_value("")
    shot(here, "password-changed")

    # The other browser, on the chat, learns at once: the server closes its
    # socket, and the chat finds the session gone.
    expect(elsewhere).to_have_url(re.compile(r"#/sign-in$"))
    expect(elsewhere.get_by_text(SESSION_ENDED)).to_be_visible()
    shot(elsewhere, "sign-in-session-ended")
    # The server told the browser to drop the dead cookie: a reload is a plain sign-in.
    elsewhere.reload()
    expect(elsewhere.get_by_role("heading", name="Sign in to collab")).to_be_visible()
    assert not any(c["name"] == "collab_session" for c in elsewhere.context.cookies())
    expect(elsewhere.get_by_role("heading", name="Sign in to collab")).to_be_visible()

    # This browser got a fresh session with the change and keeps working.
    here.reload()
    expect(here.get_by_role("heading", name="Change password")).to_be_visible()
    go_via_menu(here, "API tokens")
    expect(here.get_by_role("heading", name="API tokens")).to_be_visible()

    sign_in(elsewhere, password=new_password)
    expect(elsewhere.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()


def test_display_name_markup_is_shown_as_text(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    admin = open_page()
    sign_in(admin)
    admin.goto("/#/admin/users")
    admin.get_by_role("button", name="Add user").click()
    form = admin.get_by_role("form", name="Add a user")
    form.get_by_label("Username").fill("mallory")
    form.get_by_label("Display name").fill(XSS_NAME)
    form.get_by_label("Initial password").fill("trudy-and-eve-2024")
    shot(admin, "admin-add-user")
    form.get_by_role("button", name="Create user").click()
    expect(admin.get_by_text("Created @mallory.")).to_be_visible()

    row = admin.locator("tr[data-username=mallory]")
    expect(row.get_by_text(XSS_NAME, exact=True)).to_be_visible()
    assert admin.locator("img[src=x]").count() == 0
    shot(admin, "admin-users-with-markup-name")

    victim = open_page()
    sign_in(victim, "mallory", "trudy-and-eve-2024")
    expect(victim.get_by_role("heading", name=f"Welcome, {XSS_NAME}")).to_be_visible()
    expect(victim.locator(".status-button__name")).to_have_text(XSS_NAME)
    expect(victim.get_by_role("button", name=f"Account menu for {XSS_NAME}")).to_be_visible()
    open_account_menu(victim)
    expect(victim.locator(".menu__who-name")).to_have_text(XSS_NAME)
    assert victim.locator("img[src=x]").count() == 0
    assert victim.evaluate("document.body.innerHTML.includes('<img src=\"x\"')") is False
    shot(victim, "home-markup-name")
    # (The open_page fixture also fails the test if any alert() ran.)

    # Role change and deactivation from the table; the confirmation quotes the name as text.
    admin.get_by_label("Role of @mallory").select_option("guest")
    expect(admin.get_by_text("@mallory is now a guest.")).to_be_visible()
    row.get_by_role("button", name="Deactivate @mallory").click()
    dialog = admin.get_by_role("dialog")
    expect(dialog).to_contain_text(XSS_NAME)
    shot(admin, "admin-deactivate-confirm", full_page=False)
    dialog.get_by_role("button", name="Deactivate").click()
    expect(admin.get_by_text("@mallory has been deactivated.")).to_be_visible()
    expect(row).to_contain_text("Deactivated")
    assert admin.locator("img[src=x]").count() == 0

    # Deactivation ends mallory's session at once: her chat is sent to sign in.
    expect(victim).to_have_url(re.compile(r"#/sign-in$"))
    expect(victim.get_by_text(SESSION_ENDED)).to_be_visible()
    victim.reload()
    expect(victim.get_by_role("heading", name="Sign in to collab")).to_be_visible()


def test_api_tokens_are_shown_once_work_and_can_be_revoked(
    server: Server, open_page: OpenPage, shot: Shot
) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    page = open_page()
    sign_in(page)
    page.goto("/#/account/tokens")
    expect(page.get_by_text("You have no API tokens yet.")).to_be_visible()
    shot(page, "tokens-empty")

    page.get_by_label("Token name").fill("Build server")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Create token").click()
    secret_field = page.get_by_label("API token")
    expect(secret_field).to_have_value(re.compile(r"^collab_pat_"))
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    token = secret_field.input_value()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Build server")
    expect(rows).to_contain_text(token[: len("collab_pat_") + 4])
    shot(page, "tokens-created")

    status, body = ApiClient(server.url, token=token).call("GET", "/api/v1/me")
    assert status == 200
    assert body["user"]["username"] == ADMIN_USERNAME

    page.get_by_role("button", name="Done").click()
    expect(page.get_by_label("API token")).to_have_count(0)
    page.get_by_role("button", name="Revoke token Build server").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_text("has been revoked")).to_be_visible()
    expect(page.get_by_text("You have no API tokens yet.")).to_be_visible()
    status, body = ApiClient(server.url, token=token).call("GET", "/api/v1/me")
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


def test_screens_fit_a_narrow_window(server: Server, open_page: OpenPage, shot: Shot) -> None:
    server.create_first_admin(display_name="Ada Lovelace")
    admin = server.api().login(ADMIN_USERNAME, ADMIN_PASSWORD)
    status, invitation = admin.call("POST", "/api/v1/invitations", {"role": "member"})
    assert status == 201
    admin.call("POST", "/api/v1/tokens", {"name": "Laptop script"})

    page = open_page(width=400, height=800)

    def fits(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"{name} is {width}px wide in a 400px window"
        shot(page, f"narrow-{name}")

    page.goto(invitation["url"])
    expect(page.get_by_role("heading", name="You're invited to collab")).to_be_visible()
    fits("invite")
    page.goto("/#/sign-in")
    fits("sign-in")
    sign_in(page)
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()
    fits("home")
    page.goto("/#/account/tokens")
    expect(page.get_by_text("Laptop script")).to_be_visible()
    fits("tokens")
    open_account_menu(page)
    fits("tokens-menu")
    page.keyboard.press("Escape")
    page.get_by_label("Token name").fill("Phone")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_label("API token")).to_have_value(re.compile(r"^collab_pat_"))
    fits("tokens-created")
    page.goto("/#/admin/users")
    expect(page.locator("tr[data-username=ada]")).to_be_visible()
    expect(page.locator("table.table--invitations tbody tr")).to_have_count(1)
    fits("admin-users")
