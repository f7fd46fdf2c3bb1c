"""File uploads: streamed to disk, stored by content, attached to messages, served safely."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from collab.appkeys import CONFIG, FILES
from tests.chat_helpers import Person
from tests.conftest import AppFactory

BOUNDARY = "collab-test-boundary-7MA4YWxk"
MB = 1024 * 1024


def _disposition(filename: str) -> str:
    # As a browser writes it: UTF-8 as is, only '"', CR and LF escaped.
    escaped = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return f'form-data; name="file"; filename="{escaped}"'


def multipart(data: bytes, filename: str, content_type: str = "application/octet-stream") -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f"Content-Disposition: {_disposition(filename)}\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def upload(
    person: Person, room: int, data: bytes, name: str = "file.bin", expect: int = 201, **kw: Any
) -> Any:
    return await person.call(
        "POST",
        f"/api/v1/rooms/{room}/files",
        expect,
        data=multipart(data, name, kw.pop("content_type", "application/octet-stream")),
        headers=FORM,
        **kw,
    )


async def fetch(person: Person, url: str, **kw: Any) -> tuple[int, bytes, Any]:
    async with person.http.get(url, **kw) as response:
        return response.status, await response.read(), response.headers


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    image = Image.new(mode, (width, height), "red" if mode == "RGB" else (255, 0, 0, 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixels: what a decompression bomb looks like
    before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        )

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def files_dir(client: TestClient[Any, Any]) -> Path:
    return Path(client.app[CONFIG].data_dir).resolve() / "files"


def blobs(client: TestClient[Any, Any]) -> list[Path]:
    root = files_dir(client)
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.parent.name not in ("tmp", "thumbs")
    )


def temp_files(client: TestClient[Any, Any]) -> list[Path]:
    tmp = files_dir(client) / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


@pytest.fixture
async def people(client: TestClient[Any, Any]) -> AsyncIterator[tuple[Person, Person, Person]]:
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    carl = await Person.create(client, "carl")
    yield ana, bob, carl
    for person in (ana, bob, carl):
        await person.close()


async def test_round_trip_on_both_databases(
    aiohttp_client: Callable[..., Any], make_app: AppFactory, database_url: str, clock: Any
) -> None:
    client = await aiohttp_client(make_app(database_url=database_url))
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("private", "team", ["bob"])
    # Larger than the app's 1 MiB client_max_size: streaming must not be bound by it.
    data = os.urandom(int(1.5 * MB))
    uploaded = (await upload(ana, room["id"], data, "notes.bin"))["file"]
    assert uploaded["size"] == len(data) and uploaded["name"] == "notes.bin"
    assert uploaded["content_type"] == "application/octet-stream"
    assert uploaded["url"] == f"/api/v1/files/{uploaded['id']}"
    assert uploaded["thumbnail_url"] is None
    message = await ana.post(room["id"], "the notes", files=[uploaded["id"]])
    assert message["files"] == [uploaded]
    status, body, headers = await fetch(bob, uploaded["url"])
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment;")
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["X-Content-Type-Options"] == "nosniff"
    history = await bob.call("GET", f"/api/v1/rooms/{room['id']}/messages", 200)
    assert history["messages"][-1]["files"] == [uploaded]
    # The same bytes again: another row, not another blob.
    again = (await upload(ana, room["id"], data, "copy.bin"))["file"]
    assert again["id"] != uploaded["id"]
    assert len(blobs(client)) == 1 and temp_files(client) == []
    # A day later the copy, never sent, is deleted; the blob stays for the sent one.
    clock.advance(25 * 3600)
    assert await client.app[FILES].sweep_unsent() == 1
    assert (await fetch(ana, again["url"]))[0] == 404
    assert len(blobs(client)) == 1 and (await fetch(bob, uploaded["url"]))[0] == 200
    await ana.close()
    await bob.close()


async def test_same_bytes_are_stored_once(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, bob, _ = people
    room = await ana.room("channel", "general", ["bob"])
    data = b"same bytes " * 1000
    first = (await upload(ana, room["id"], data, "a.bin"))["file"]
    second = (await upload(bob, room["id"], data, "b.bin"))["file"]
    assert first["id"] != second["id"]
    stored = blobs(client)
    assert len(stored) == 1
    digest = hashlib.sha256(data).hexdigest()
    assert stored[0] == files_dir(client) / digest[:2] / digest[2:4] / digest
    assert stored[0].read_bytes() == data
    # Each upload keeps its own name and uploader.
    assert (await fetch(ana, first["url"]))[0] == 200
    assert (await fetch(bob, second["url"]))[0] == 200
    assert (await fetch(bob, first["url"]))[0] == 404  # ana's, not sent yet


async def test_upload_over_the_limit_is_refused_and_leaves_nothing(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    client = await aiohttp_client(make_app(upload_max_mb=1))
    ana = await Person.create(client, "ana")
    room = await ana.room("channel", "general")
    data = os.urandom(2 * MB)
    body = await upload(ana, room["id"], data, "big.bin", expect=413)
    assert body["error"]["code"] == "file_too_large"
    assert "1 MB" in body["error"]["message"]

    # Without a Content-Length the limit is found while streaming.
    async def stream() -> AsyncIterator[bytes]:
        payload = multipart(data, "big.bin")
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    body = await ana.call(
        "POST", f"/api/v1/rooms/{room['id']}/files", 413, data=stream(), headers=FORM
    )
    assert body["error"]["code"] == "file_too_large"
    assert temp_files(client) == [] and blobs(client) == []
    # Exactly at the limit is fine.
    await upload(ana, room["id"], os.urandom(MB), "fits.bin")
    await ana.close()


async def test_quota_counts_every_upload(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    client = await aiohttp_client(make_app(user_quota_mb=1))
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("channel", "general", ["bob"])
    part = os.urandom(600 * 1024)
    await upload(ana, room["id"], part, "one.bin")
    body = await upload(ana, room["id"], part, "two.bin", expect=413)
    assert body["error"]["code"] == "quota_exceeded"

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: found while streaming
        yield multipart(part, "three.bin")

    body = await ana.call(
        "POST", f"/api/v1/rooms/{room['id']}/files", 413, data=stream(), headers=FORM
    )
    assert body["error"]["code"] == "quota_exceeded"
    assert temp_files(client) == [] and len(blobs(client)) == 1
    # Small files still fit; the quota is per user.
    await upload(ana, room["id"], b"x" * 1000, "small.bin")
    await upload(bob, room["id"], part, "bobs.bin")
    await ana.close()
    await bob.close()


async def test_strangers_can_neither_upload_nor_download(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, bob, carl = people
    private = await ana.room("private", "secret", ["bob"])
    channel = await ana.room("channel", "open", ["bob"])
    for room in (private, channel):
        ref = (await upload(ana, room["id"], b"secret data", "s.bin"))["file"]
        await ana.post(room["id"], "", files=[ref["id"]])
        assert (await fetch(bob, ref["url"]))[0] == 200
        status, body, _ = await fetch(carl, ref["url"])
        assert status == 404 and b"file_not_found" in body
    body = await upload(carl, private["id"], b"x", expect=404)
    assert body["error"]["code"] == "room_not_found"
    body = await upload(carl, channel["id"], b"x", expect=403)
    assert body["error"]["code"] == "not_a_member"
    status, body, _ = await fetch(carl, "/api/v1/files/999999")
    assert status == 404 and b"file_not_found" in body
    # Someone removed from the room loses access.
    await ana.call("DELETE", f"/api/v1/rooms/{channel['id']}/members/bob", 204)
    ref = (await upload(ana, channel["id"], b"after bob left", "later.bin"))["file"]
    await ana.post(channel["id"], "", files=[ref["id"]])
    assert (await fetch(bob, ref["url"]))[0] == 404


async def test_unsent_upload_is_only_for_its_uploader_and_deletion_hides_it(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, bob, _ = people
    room = await ana.room("private", "team", ["bob"])
    ref = (await upload(ana, room["id"], png(50, 40), "pic.png"))["file"]
    assert (await fetch(ana, ref["url"]))[0] == 200
    assert (await fetch(bob, ref["url"]))[0] == 404
    assert (await fetch(bob, ref["thumbnail_url"]))[0] == 404
    # Bob cannot send ana's upload as his own.
    await bob.call("POST", f"/api/v1/rooms/{room['id']}/messages", 400, json={"files": [ref["id"]]})
    message = await ana.post(room["id"], "look", files=[ref["id"]])
    assert (await fetch(bob, ref["url"]))[0] == 200
    assert (await fetch(bob, ref["thumbnail_url"]))[0] == 200
    await ana.call("DELETE", f"/api/v1/messages/{message['id']}", 200)
    for person in (ana, bob):
        assert (await fetch(person, ref["url"]))[0] == 404
        assert (await fetch(person, ref["thumbnail_url"]))[0] == 404


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.html", b"<!doctype html><script>alert(document.cookie)</script>"),
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("app.js", b"alert(1)"),
        ("data.xml", b"<?xml version='1.0'?><a/>"),
        ("cat.png", b"<html><body><script>alert(1)</script></body></html>"),
    ],
)
async def test_active_content_is_served_as_a_sandboxed_download(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person], name: str, data: bytes
) -> None:
    ana, bob, _ = people
    room = await ana.room("channel", "general", ["bob"])
    ref = (await upload(ana, room["id"], data, name, content_type="text/html"))["file"]
    assert ref["content_type"] == "application/octet-stream"
    assert ref["thumbnail_url"] is None and ref["width"] is None
    await ana.post(room["id"], "", files=[ref["id"]])
    status, body, headers = await fetch(bob, ref["url"])
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment;")
    assert f'filename="{name}"' in headers["Content-Disposition"]
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_png_gets_a_thumbnail_and_its_size(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, bob, _ = people
    room = await ana.room("channel", "general", ["bob"])
    data = png(800, 600)
    ref = (await upload(ana, room["id"], data, "photo.png"))["file"]
    assert ref["content_type"] == "image/png"
    assert (ref["width"], ref["height"]) == (800, 600)
    assert ref["thumbnail_url"] == f"/api/v1/files/{ref['id']}/thumbnail"
    message = await ana.post(room["id"], "a photo", files=[ref["id"]])
    (sent,) = message["files"]
    assert (sent["width"], sent["height"], sent["thumbnail_url"]) == (
        800,
        600,
        ref["thumbnail_url"],
    )
    status, body, headers = await fetch(bob, ref["url"])
    assert status == 200 and body == data
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline;")
    assert headers["Content-Security-Policy"] == "sandbox"
    status, body, headers = await fetch(bob, ref["thumbnail_url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Security-Policy"] == "sandbox"
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (400, 300)
    # A transparent image is thumbnailed too.
    clear = (await upload(ana, room["id"], png(300, 500, "RGBA"), "clear.png"))["file"]
    assert clear["thumbnail_url"] and (clear["width"], clear["height"]) == (300, 500)


async def test_broken_image_is_still_a_file(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50
    ref = (await upload(ana, room["id"], broken, "broken.png"))["file"]
    assert ref["content_type"] == "image/png"
    assert ref["thumbnail_url"] is None and ref["width"] is None
    status, body, _ = await fetch(ana, ref["url"])
    assert status == 200 and body == broken
    assert (await fetch(ana, f"/api/v1/files/{ref['id']}/thumbnail"))[0] == 404
    # An image claiming more pixels than we decode keeps its size but gets no
    # thumbnail; one past Pillow's own bomb limit is not an image at all.
    ref = (await upload(ana, room["id"], png_header(8000, 6000), "big.png"))["file"]
    assert (ref["width"], ref["height"], ref["thumbnail_url"]) == (8000, 6000, None)
    ref = (await upload(ana, room["id"], png_header(100_000, 100_000), "bomb.png"))["file"]
    assert (ref["width"], ref["thumbnail_url"]) == (None, None)


async def test_range_request(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    data = bytes(range(256)) * 100
    ref = (await upload(ana, room["id"], data, "r.bin"))["file"]
    status, body, headers = await fetch(ana, ref["url"], headers={"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert headers["Content-Security-Policy"] == "sandbox"
    async with ana.http.head(ref["url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["Accept-Ranges"] == "bytes"


async def test_awkward_file_names_are_cleaned_and_quoted(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    raw = '../../etc/report "final"\r\n\u202egnp.exe üñí€ 😀.txt'
    ref = (await upload(ana, room["id"], "hello ✓\n".encode(), raw))["file"]
    assert ref["name"] == 'report "final"gnp.exe üñí€ 😀.txt'
    assert ref["content_type"] == "text/plain"
    status, _, headers = await fetch(ana, ref["url"])
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    disposition = headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.isascii()
    assert disposition.startswith('inline; filename="report _final_gnp.exe ')
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert all(" " <= ch <= "~" and ch not in '"\\%' for ch in fallback)
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == ref["name"]
    # Nothing but a name of dots or controls falls back to "file".
    ref = (await upload(ana, room["id"], b"x", "\r\n.."))["file"]
    assert ref["name"] == "file"


async def test_bad_requests(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    url = f"/api/v1/rooms/{room['id']}/files"
    body = await ana.call("POST", url, 415, json={"file": "x"})
    assert body["error"]["code"] == "unsupported_media_type"
    body = await ana.call("POST", url, 415, data={"file": "x"})  # urlencoded
    assert body["error"]["code"] == "unsupported_media_type"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("other", "value")
    body = await ana.call("POST", url, 400, data=form)
    assert body["error"]["code"] == "missing_file"
    body = await ana.call("POST", url, 400, data=b"not multipart at all", headers=FORM)
    assert body["error"]["code"] in ("missing_file", "bad_multipart")
    long_header = f"--{BOUNDARY}\r\nX-Long: {'a' * 20000}\r\n\r\nabc\r\n--{BOUNDARY}--\r\n"
    body = await ana.call("POST", url, 400, data=long_header.encode(), headers=FORM)
    assert body["error"]["code"] == "bad_multipart"
    # A cookie-signed-in upload without the CSRF header is refused before anything is read.
    async with ana.http.post(url, data=multipart(b"x", "x.bin"), headers=FORM) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_failed"
    assert blobs(client) == []


async def test_archived_room_takes_no_uploads(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    await ana.call("PATCH", f"/api/v1/rooms/{room['id']}", 200, json={"archived": True})
    body = await upload(ana, room["id"], b"x", expect=403)
    assert body["error"]["code"] == "archived"


async def test_upload_cut_off_midway_leaves_no_temp_file(
    client: TestClient[Any, Any], people: tuple[Person, Person, Person]
) -> None:
    ana, _, _ = people
    room = await ana.room("channel", "general")
    cookies = "; ".join(f"{c.key}={c.value}" for c in ana.http.cookie_jar)
    head = multipart(b"", "cut.bin").split(f"\r\n--{BOUNDARY}--".encode())[0]
    request = (
        f"POST /api/v1/rooms/{room['id']}/files HTTP/1.1\r\n"
        f"Host: {client.host}:{client.port}\r\n"
        f"Cookie: {cookies}\r\n"
        f"X-CSRF-Token: {ana.csrf['X-CSRF-Token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {10 * MB}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request + head + os.urandom(300 * 1024))
    await writer.drain()
    async with asyncio.timeout(5):
        while not temp_files(client):
            await asyncio.sleep(0.02)
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(5):
        while temp_files(client):
            await asyncio.sleep(0.02)
    assert blobs(client) == []


async def test_uploads_never_sent_are_deleted_after_a_day(
    aiohttp_client: Callable[..., Any], make_app: AppFactory, clock: Any
) -> None:
    """They stop counting against the quota, and bytes nothing else refers to leave the
    disk; sent files, bytes a sent file shares and bytes just reused stay."""
    client = await aiohttp_client(make_app(user_quota_mb=1))
    ana = await Person.create(client, "ana")
    bob = await Person.create(client, "bob")
    room = await ana.room("channel", "general", ["bob"])
    photo = (await upload(ana, room["id"], png(800, 600), "photo.png"))["file"]
    shared_bytes = b"shared " * 100
    await upload(ana, room["id"], shared_bytes, "mine.bin")
    bobs = (await upload(bob, room["id"], shared_bytes, "bobs.bin"))["file"]
    await bob.post(room["id"], "the file", files=[bobs["id"]])
    part = os.urandom(600 * 1024)
    await upload(ana, room["id"], part, "big.bin")
    refused = await upload(ana, room["id"], part, "more.bin", expect=413)
    assert refused["error"]["code"] == "quota_exceeded"
    just_reused = os.urandom(1000)
    await upload(ana, room["id"], just_reused, "again.bin")
    sweep = client.app[FILES].sweep_unsent

    clock.advance(23 * 3600)
    assert await sweep() == 0
    clock.advance(2 * 3600)
    # The bytes were stored long ago, except those of again.bin, which another upload
    # of the same bytes has only just found on disk (its row may not be written yet).
    an_hour_and_more = time.time() - 3700
    for path in blobs(client):
        if path.name != hashlib.sha256(just_reused).hexdigest():
            os.utime(path, (an_hour_and_more, an_hour_and_more))
    assert len(list((files_dir(client) / "thumbs").iterdir())) == 1
    assert await sweep() == 4
    assert await sweep() == 0

    def digest_path(data: bytes) -> Path:
        digest = hashlib.sha256(data).hexdigest()
        return files_dir(client) / digest[:2] / digest[2:4] / digest

    assert not digest_path(png(800, 600)).exists() and not digest_path(part).exists()
    assert list((files_dir(client) / "thumbs").iterdir()) == []
    assert digest_path(shared_bytes).exists() and digest_path(just_reused).exists()
    assert sorted(p.name for p in blobs(client)) == sorted(
        hashlib.sha256(d).hexdigest() for d in (shared_bytes, just_reused)
    )
    assert (await fetch(ana, photo["url"]))[0] == 404
    status, body, _ = await fetch(ana, bobs["url"])
    assert status == 200 and body == shared_bytes
    # The quota has room again.
    await upload(ana, room["id"], part, "more.bin")
    await ana.close()
    await bob.close()


async def test_an_upload_refused_at_the_last_quota_check_leaves_no_bytes(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    """Two uploads that each fit pass the first check; the one that finishes second is
    over the quota at the final check, after its bytes reached the disk: they go again."""
    client = await aiohttp_client(make_app(user_quota_mb=1))
    ana = await Person.create(client, "ana")
    room = await ana.room("channel", "general")
    first, second = os.urandom(600 * 1024), os.urandom(600 * 1024)
    first_body = multipart(first, "first.bin")
    go_on = asyncio.Event()

    async def held_back() -> AsyncIterator[bytes]:
        yield first_body[:1024]  # the server has checked the quota and started reading
        await go_on.wait()
        yield first_body[1024:]

    late = asyncio.ensure_future(
        ana.call("POST", f"/api/v1/rooms/{room['id']}/files", 413, data=held_back(), headers=FORM)
    )
    await asyncio.sleep(0.3)
    await upload(ana, room["id"], second, "second.bin")
    go_on.set()
    refused = await late
    assert refused["error"]["code"] == "quota_exceeded"
    digest = hashlib.sha256(second).hexdigest()
    assert [p.name for p in blobs(client)] == [digest]
    assert temp_files(client) == []
    await ana.close()
