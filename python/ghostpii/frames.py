"""The keyhost's binary answer frame (``Accept: application/vnd.ghostpii.answers``).

``b"GPAK"``, a version byte (1), the JSON length (u32, little-endian), the JSON
``{"results": [...]}``, then the byte fields back to back. In the JSON a byte field is
``{"$blob": i, "len": n}``; :func:`read` replaces it by its ``bytes`` (pads, row keys), which a
plain JSON answer would carry as base64.

Requests travel the same way (``Content-Type: application/vnd.ghostpii.answers``): :func:`write`
puts every ``bytes`` value of the descriptors (rid sets in their wire encoding) raw after the JSON
``{"requests": [...]}``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ghostpii.errors import KeyhostError

__all__ = ["MEDIA_TYPE", "read", "write"]

MEDIA_TYPE = "application/vnd.ghostpii.answers"
_MAGIC = b"GPAK\x01"
_HEADER = 9


def read(frame: bytes) -> list[dict[str, Any]]:
    """The results of a frame, with every byte field as ``bytes``."""
    if len(frame) < _HEADER or frame[:5] != _MAGIC:
        raise KeyhostError("the keyhost's answer is not a version-1 answer frame", reason="internal")
    (json_len,) = struct.unpack_from("<I", frame, 5)
    at = _HEADER + json_len
    if at > len(frame):
        raise KeyhostError("the keyhost's answer frame is truncated (its JSON runs past the end)", reason="internal")
    try:
        results: list[dict[str, Any]] = json.loads(frame[_HEADER:at])["results"]
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise TypeError("results are not a list of objects")
    except (ValueError, KeyError, TypeError) as e:
        raise KeyhostError(f"the keyhost's answer frame holds no valid results: {e}", reason="internal") from None
    view = memoryview(frame)
    for r in results:
        for field, v in list(r.items()):
            if isinstance(v, dict) and "$blob" in v:
                n = v.get("len")
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    raise KeyhostError(
                        "the keyhost's answer frame has a blob without a valid length", reason="internal"
                    )
                if at + n > len(frame):
                    raise KeyhostError("the keyhost's answer frame is truncated", reason="internal")
                r[field] = bytes(view[at : at + n])
                at += n
    if at != len(frame):
        raise KeyhostError("the keyhost's answer frame has trailing bytes", reason="internal")
    return results


def write(requests: list[dict[str, Any]]) -> bytes:
    """The request frame of ``{"requests": requests}``: every ``bytes`` value (at any depth) becomes
    a blob marker, its bytes appended in marker order."""
    blobs: list[bytes] = []

    def mark(v: Any) -> Any:
        if isinstance(v, bytes | bytearray | memoryview):
            blobs.append(bytes(v))
            return {"$blob": len(blobs) - 1, "len": len(blobs[-1])}
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [mark(x) for x in v]
        return v

    head = json.dumps({"requests": mark(requests)}, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(head)), head, *blobs])


def has_bytes(v: Any) -> bool:
    """Whether a descriptor carries a ``bytes`` value (and so travels in a request frame)."""
    if isinstance(v, bytes | bytearray | memoryview):
        return True
    if isinstance(v, dict):
        return any(has_bytes(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(has_bytes(x) for x in v)
    return False
