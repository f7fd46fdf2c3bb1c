"""REST routes for files: parse the request, call the service, answer.

Uploads are read with ``request.multipart()`` and streamed part by part in
chunks, so the app's small ``client_max_size`` (which only bounds bodies read
whole) does not apply and a 100 MB file never sits in memory. Downloads go out
through ``FileResponse`` (sendfile, ``Range``, conditional requests) with
headers that keep a browser from running anything it fetches here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from collab.accounts.auth import identity_of
from collab.api.body import json_response, path_int
from collab.api.errors import ApiError, BadRequest
from collab.appkeys import FILES
from collab.files.service import Download

FILE_FIELD = "file"
READ_CHUNK = 64 * 1024
MAX_OTHER_PARTS = 10
# What aiohttp raises for malformed multipart data (bad framing, over-long header lines).
_MALFORMED = (ValueError, HttpProcessingError)


def _bad_multipart() -> BadRequest:
    return BadRequest("The upload is not valid multipart/form-data.", code="bad_multipart")


async def _file_part(reader: MultipartReader) -> BodyPartReader | None:
    """The part named ``file``; a few other fields before it are skipped, not kept."""
    for _ in range(MAX_OTHER_PARTS + 1):
        try:
            part = await reader.next()
        except _MALFORMED:
            raise _bad_multipart() from None
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):
            raise _bad_multipart()
        if part.name == FILE_FIELD:
            encoding = part.headers.get("Content-Transfer-Encoding", "binary").lower()
            if encoding not in ("binary", "7bit", "8bit"):
                raise BadRequest(
                    "Send the file's bytes as they are, without a Content-Transfer-Encoding.",
                    code="bad_multipart",
                )
            return part
        await part.release()
    return None


def _form_filename(part: BodyPartReader) -> str | None:
    """The file name as the user's browser had it: browsers send the name's own
    characters as UTF-8 and escape only '"', CR and LF (as %22, %0D, %0A)."""
    name = part.filename
    if name is None:
        return None
    return name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while not part.at_eof():
        try:
            chunk = await part.read_chunk(READ_CHUNK)
        except _MALFORMED:
            raise _bad_multipart() from None
        if chunk:
            yield chunk


async def upload(request: web.Request) -> web.Response:
    identity = identity_of(request)
    room_id = path_int(request, "id", "room id")
    if request.content_type != "multipart/form-data":
        raise ApiError(
            f"Send the file as multipart/form-data with one part named '{FILE_FIELD}'.",
            code="unsupported_media_type",
            status=415,
        )
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise _bad_multipart() from None
    part = await _file_part(reader)
    if part is None:
        raise BadRequest(
            f"The upload has no part named '{FILE_FIELD}'.", code="missing_file", field=FILE_FIELD
        )
    ref = await request.app[FILES].upload(
        identity,
        room_id,
        name=_form_filename(part),
        chunks=_chunks(part),
        declared_length=request.content_length,
    )
    return json_response({"file": ref}, status=201)


def content_disposition(inline: bool, name: str) -> str:
    """RFC 6266: a plain-ASCII ``filename`` for old clients, the exact name in ``filename*``."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name, safe='')}"


def _send(download: Download) -> web.FileResponse:
    return web.FileResponse(
        download.path,
        headers={
            "Content-Type": download.content_type,
            "Content-Disposition": content_disposition(download.inline, download.name),
            # Even a file shown inline runs no script and reaches no cookie or storage.
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
            # The browser may keep a copy but asks again (and is checked again) each time.
            "Cache-Control": "private, no-cache",
        },
    )


def _file_id(request: web.Request) -> int:
    return path_int(request, "id", "file id")


async def download(request: web.Request) -> web.FileResponse:
    return _send(await request.app[FILES].download(identity_of(request), _file_id(request)))


async def thumbnail(request: web.Request) -> web.FileResponse:
    return _send(await request.app[FILES].thumbnail(identity_of(request), _file_id(request)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/rooms/{id}/files", upload)
    r.add_get("/api/v1/files/{id}", download)
    r.add_get("/api/v1/files/{id}/thumbnail", thumbnail)
