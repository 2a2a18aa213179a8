"""The keyhost's binary answer frame (``Accept: application/vnd.ghostpii.answers``).

``b"GPAK"``, a version byte (1), the JSON length (u32, little-endian), the JSON
``{"results": [...]}``, then the byte fields back to back. In the JSON a byte field is
``{"$blob": i, "len": n}``; :func:`read` replaces it by its ``bytes`` (pads, row keys), which a
plain JSON answer would carry as base64.

Requests travel the same way (``Content-Type: application/vnd.ghostpii.answers``): :func:`write`
puts every ``bytes`` value of the descriptors (rid sets in their wire encoding) raw after the JSON
``{"requests": [...]}``.

Frames are read and written by the one codec of the keyhost and the Rust resolver
(``ghostpii_core::frame``), which checks every marker index and length before a byte is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ghostpii import _internal
from ghostpii.errors import KeyhostError

__all__ = ["MEDIA_TYPE", "has_bytes", "read", "write"]

MEDIA_TYPE = "application/vnd.ghostpii.answers"


def read(frame: bytes) -> list[dict[str, Any]]:
    """The results of a frame, with every byte field as ``bytes``."""
    try:
        head, blobs = _internal.frame_decode(frame)
    except ValueError as e:
        raise KeyhostError(f"the keyhost's answer frame is malformed: {e}", reason="internal") from None
    try:
        results: list[dict[str, Any]] = json.loads(head)["results"]
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise TypeError("results are not a list of objects")
    except (ValueError, KeyError, TypeError) as e:
        raise KeyhostError(f"the keyhost's answer frame holds no valid results: {e}", reason="internal") from None
    for r in results:
        for field, v in list(r.items()):
            if isinstance(v, dict) and "$blob" in v:
                r[field] = blobs[v["$blob"]]  # index and length checked by the codec
    return results


def write(requests: Sequence[Mapping[str, Any]]) -> bytes:
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
    return _internal.frame_encode(head, blobs)


def has_bytes(v: Any) -> bool:
    """Whether a descriptor carries a ``bytes`` value (and so travels in a request frame)."""
    if isinstance(v, bytes | bytearray | memoryview):
        return True
    if isinstance(v, dict):
        return any(has_bytes(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(has_bytes(x) for x in v)
    return False
