"""What a file really is, decided from its first bytes, and how it may be served.

The type a browser is told comes from a short allow-list, never from what the
uploader claimed: a file called ``cat.png`` that holds HTML is not a PNG. Only
types a browser shows without running anything are served inline; the rest
(HTML, SVG, scripts, XML, anything unknown) become ``application/octet-stream``
and are served as a download.
"""

from __future__ import annotations

import codecs
import unicodedata

OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain"

# Served inline: a browser displays or plays these without running scripts.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        TEXT,
        "video/mp4",
        "video/webm",
        "video/ogg",
        "audio/mp4",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
    }
)

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

# Names whose bytes we show as plain text when they are valid UTF-8. Scripts and
# markup (.js, .html, .svg, .xml) are left out on purpose: they go as downloads.
TEXT_EXTENSIONS = frozenset(
    {
        ".txt",
        ".text",
        ".log",
        ".md",
        ".csv",
        ".tsv",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".diff",
        ".patch",
    }
)

_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash"}
)
_M4A_BRANDS = frozenset({b"M4A ", b"M4B "})

MAX_NAME = 255
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _is_utf8_text(head: bytes, complete: bool) -> bool:
    """Valid UTF-8 without NUL bytes; a multi-byte character cut at the end of an
    incomplete head is forgiven."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def sniff(head: bytes, name: str, *, complete: bool) -> str:
    """The allow-listed type of a file from its first bytes (``head``) and its name.

    ``complete`` says whether ``head`` is the whole file.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_BRANDS:
            return "video/mp4"
        if brand in _M4A_BRANDS:
            return "audio/mp4"
        return OCTET_STREAM
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return "video/webm"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"theora" in head else "audio/ogg"
    extension = _extension(name)
    if head.startswith(b"ID3") or (
        extension == ".mp3" and len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    ):
        return "audio/mpeg"
    if extension in TEXT_EXTENSIONS and _is_utf8_text(head, complete):
        return TEXT
    return OCTET_STREAM


def is_inline(content_type: str) -> bool:
    return content_type in INLINE_TYPES


def served_type(content_type: str) -> str:
    """The Content-Type header for a stored type; text always says its charset."""
    if content_type == TEXT:
        return "text/plain; charset=utf-8"
    return content_type if content_type in INLINE_TYPES else OCTET_STREAM


def clean_name(raw: str | None) -> str:
    """A display name from what the browser sent: no folders, no control or
    direction-changing characters, at most 255 characters with the extension kept.

    The name never touches the file system (blobs are named by their hash); it
    is cleaned so that it shows and downloads as what it is.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = name.strip()
    if not name.strip("."):
        return "file"
    if len(name) > MAX_NAME:
        extension = _extension(name)
        if len(extension) > 16:
            extension = ""
        name = name[: MAX_NAME - len(extension)].rstrip() + extension
    return name
