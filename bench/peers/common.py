"""What every part of the harness shares: the peers' names, the blob, the log."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = ["websocket-server", "websockets", "socketio", "igor"]
LABELS = {"websocket-server": "websocket-server", "websockets": "websockets",
          "socketio": "python-socketio", "igor": "Igor"}
MiB = 1 << 20


def make_blob(size: int) -> List[Dict[str, Any]]:
    """A list of small records whose JSON is about ``size`` bytes: what a UI pulls in bulk."""
    records: List[Dict[str, Any]] = []
    total = 2  # the brackets
    while True:
        record = {"id": len(records), "name": f"item-{len(records):06d}", "value": len(records) * 0.25,
                  "tags": ["a", "b"]}
        total += len(json.dumps(record)) + 2  # and its ", "
        if total > size:
            return records
        records.append(record)


BLOB = make_blob(256 * 1024)

#: A video-like frame: 1920 x 1080 RGBA.
FRAME_WIDTH, FRAME_HEIGHT = 1920, 1080
FRAME_BYTES = FRAME_WIDTH * FRAME_HEIGHT * 4


@functools.cache
def chunk() -> bytes:
    """The 1 MiB chunk every peer sends for the transfer rows (made when first needed: not in the idle RSS)."""
    return bytes(range(256)) * (MiB // 256)


@functools.cache
def video_frames() -> Tuple[bytes, bytes]:
    """Two opaque RGBA frames (a page can tell them apart by the first pixel), sent turn about."""
    return bytes((40, 80, 120, 255)) * (FRAME_BYTES // 4), bytes((200, 160, 120, 255)) * (FRAME_BYTES // 4)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
