"""What every part of the harness shares: the peers' names, the blob, the log."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
