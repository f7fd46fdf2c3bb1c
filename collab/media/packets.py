"""Small facts read from RTP payloads without decoding them.

The forwarder must know where a video keyframe starts (a subscriber that
joins, or a stream that switches source, is held back until one arrives:
anything before it cannot be decoded) and how loud an audio packet is when
the publisher does not send the audio-level header extension. Both are read
from the first bytes of the payload.
"""

from __future__ import annotations

VP8 = "video/vp8"
H264 = "video/h264"
OPUS = "audio/opus"

SILENCE_DBOV = 127  # the audio-level extension's value for digital silence
_OPUS_ACTIVE_LEVEL = 30  # a guess at speech level, used when only sizes are known
_OPUS_SILENT_MAX_BYTES = 12  # DTX and comfort-noise frames are this small or smaller


def is_keyframe_start(mime_type: str, payload: bytes) -> bool:
    """True if this RTP payload begins a frame a decoder can start from.

    Codecs this module does not know are treated as always decodable, so
    their packets are forwarded at once rather than held forever.
    """
    mime = mime_type.lower()
    if mime == VP8:
        return _vp8_keyframe_start(payload)
    if mime == H264:
        return _h264_keyframe_start(payload)
    return True


def _vp8_keyframe_start(payload: bytes) -> bool:
    """RFC 7741: the packet starts partition 0 of a frame whose P bit is 0."""
    if not payload:
        return False
    first = payload[0]
    start_of_partition = first & 0x10
    partition_id = first & 0x07
    if not start_of_partition or partition_id != 0:
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, one or two bytes
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    return not payload[pos] & 0x01  # VP8 frame tag: P=0 means keyframe


_H264_KEY_NALS = frozenset((5, 7))  # IDR slice, sequence parameter set


def _h264_keyframe_start(payload: bytes) -> bool:
    """RFC 6184: a single NAL, STAP-A or FU-A start carrying an SPS or IDR."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, then a NAL, repeated
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in _H264_KEY_NALS:
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and the inner type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NALS
    return False


def opus_level_guess(payload: bytes) -> int:
    """An audio level (0 loud … 127 silent) guessed from an Opus packet's size.

    Used only when the publisher sends no audio-level extension. Speech makes
    Opus packets of tens to hundreds of bytes; silence with DTX or comfort
    noise makes packets of a few bytes.
    """
    return SILENCE_DBOV if len(payload) <= _OPUS_SILENT_MAX_BYTES else _OPUS_ACTIVE_LEVEL
