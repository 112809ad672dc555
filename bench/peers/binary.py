"""The binary rows (issue 19): bytes echoed, pushed and uploaded; a Node upload; video frames in Chromium.

Igor speaks protocol 3 (``igor.v3``) here, by hand over the same
websocket-client connection as every other row: a binary message is a 4-byte
big-endian head length, a JSON head whose ``"binary"`` entries say where each
value goes, and the bytes (docs/protocol.md). Its uploads are paced by the
server's ``{"streamId": S, "read": N}`` as the spec asks of a client (at most
``inbox_size / 2`` messages and ``input_window`` bytes unread). The peer,
``websockets``, gets plain binary frames from the same client, its back-pressure
being TCP's. The Node upload and the frames in Chromium run Node scripts beside
this module (``upload.mjs``, ``frames.mjs``) with the JS client and playwright-core
of ``clients/js``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import websocket

from .client import Client, IgorClient
from .common import ROOT, MiB, chunk
from .servers import ServerProcess

#: Which peers each binary row runs against (the others show a dash).
BINARY_PEERS = {"bytes": ["websockets", "igor"], "download": ["websockets", "igor"],
                "upload": ["websockets", "igor"], "js-upload": ["websockets", "igor"],
                "frames": ["websockets", "socketio", "igor"]}
JS = os.path.join(ROOT, "clients", "js")
HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = websocket.ABNF.OPCODE_BINARY


class IgorBinaryClient(IgorClient):
    """Igor's protocol 3: reads the hello, sends and reads binary messages of one bare value."""

    subprotocols = ["igor.v3"]

    def opened(self) -> None:
        hello = json.loads(self.ws.recv()).get("hello")
        if not isinstance(hello, dict) or hello.get("protocol") != 3:
            raise ConnectionError(f"no protocol 3 hello: {hello!r}")
        self.max_unread = max(1, int(hello["inbox_size"]) // 2)
        self.window = int(hello["input_window"])

    @staticmethod
    def binary_message(head: Dict[str, Any], payload: bytes) -> bytes:
        """``head`` with one binary value, ``payload``, at ``["data"]``: length, head, bytes."""
        encoded = json.dumps({**head, "data": None, "binary": [{"at": ["data"], "size": len(payload)}]},
                             separators=(",", ":")).encode()
        return struct.pack("!I", len(encoded)) + encoded + payload

    @staticmethod
    def head_of(message: bytes) -> Tuple[Dict[str, Any], int]:
        """A binary message's head and where its bytes begin (the value itself is left where it is)."""
        (length,) = struct.unpack_from("!I", message)
        return json.loads(message[4:4 + length]), 4 + length

    def next_message(self, rid: int) -> Tuple[Dict[str, Any], Optional[bytes], int]:
        """The next message of stream ``rid``: (head or message, the binary message or None, offset of its bytes)."""
        while True:
            frame = self.ws.recv()
            if isinstance(frame, bytes):
                head, offset = self.head_of(frame)
                raw: Optional[bytes] = frame
            else:
                head, raw, offset = json.loads(frame), None, 0
            if head.get("streamId") != rid:
                continue
            if "error" in head:
                raise RuntimeError(f"Igor answered an error: {head}")
            return head, raw, offset


def connect_binary(peer: str, port: int, timeout: float = 60) -> Client:
    return IgorBinaryClient(port, timeout) if peer == "igor" else Client(port, timeout)


class RssPeak:
    """The server process's VmRSS just before a transfer and its peak during it (sampled every 20 ms)."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.before = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.server.status()["VmRSS"])

    def __enter__(self) -> RssPeak:
        self.before = self.peak = self.server.status()["VmRSS"]
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.status()["VmRSS"])

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / 1024


# -- 10 MiB of bytes echoed ----------------------------------------------------------------------------

def bytes_round_trips(peer: str, port: int, size: int, reps: int, limit: float) -> Dict[str, float]:
    """Median seconds to echo ``size`` bytes as binary; the request is built before the clock, checked after."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    client = connect_binary(peer, port, timeout=120)
    times: List[float] = []
    try:
        began = time.monotonic()
        for rep in range(reps + 1):  # the first is a warm-up
            if rep > 1 and time.monotonic() - began > limit:
                break
            if isinstance(client, IgorBinaryClient):
                client.next_id += 1
                request = client.binary_message({"streamId": client.next_id, "action": "echo"}, payload)
                t0 = time.perf_counter()
                client.ws.send(request, BINARY)
                while True:
                    head, reply, offset = client.next_message(client.next_id)
                    if head.get("close"):
                        break
                elapsed = time.perf_counter() - t0
                echoed = reply[offset:] if reply is not None else None
            else:
                t0 = time.perf_counter()
                client.ws.send(payload, BINARY)
                echoed = client.ws.recv()
                elapsed = time.perf_counter() - t0
            if echoed is None or echoed != payload:
                raise AssertionError(f"{peer}: the echo differs from the bytes sent")
            if rep:
                times.append(elapsed)
    finally:
        client.close()
    return {"median_ms": statistics.median(times) * 1e3, "reps": len(times)}


# -- 256 MiB pushed to the client, 256 MiB uploaded into the server ------------------------------------

def download(peer: str, server: ServerProcess, mib: int, limit: float) -> Dict[str, float]:
    """``mib`` chunks of 1 MiB pushed by a handler to this client: MiB/s, and the server's RSS growth."""
    expected = chunk()
    client = connect_binary(peer, server.port)
    client.ws.settimeout(limit)
    received = 0
    try:
        client.call("echo", {"k": 0})
        with RssPeak(server) as rss:
            began = time.perf_counter()
            if isinstance(client, IgorBinaryClient):
                client.next_id += 1
                rid = client.next_id
                client.ws.send(json.dumps({"streamId": rid, "action": "download", "data": {"count": mib}}))
                head, _, _ = client.next_message(rid)
                if head.get("data", {}).get("transfer", {}).get("size") != mib * MiB:
                    raise AssertionError(f"igor: the download began with {head!r}, not its transfer header")
                while True:
                    head, message, offset = client.next_message(rid)
                    if message is not None:
                        # endswith: a memcmp; comparing a memoryview with bytes goes item by item (slow)
                        if len(message) - offset != len(expected) or not message.endswith(expected):
                            raise AssertionError("igor: a chunk differs from the one sent")
                        received += 1
                    if head.get("close"):
                        break
            else:
                client.ws.send(f"!download {mib}")
                while received < mib:
                    if client.ws.recv() != expected:
                        raise AssertionError(f"{peer}: a chunk differs from the one sent")
                    received += 1
            elapsed = time.perf_counter() - began
    finally:
        client.close()
    if received != mib:
        raise AssertionError(f"{peer}: {received} of {mib} chunks arrived")
    return {"mib_per_s": mib / elapsed, "rss_growth_mib": rss.growth_mib, "mib": mib}


def upload(peer: str, server: ServerProcess, mib: int, limit: float) -> Dict[str, float]:
    """``mib`` chunks of 1 MiB from this client into a handler that counts them: MiB/s, the server's RSS growth."""
    piece = chunk()
    client = connect_binary(peer, server.port)
    client.ws.settimeout(limit)
    try:
        client.call("echo", {"k": 0})
        with RssPeak(server) as rss:
            if isinstance(client, IgorBinaryClient):
                client.next_id += 1
                rid = client.next_id
                message = client.binary_message({"streamId": rid}, piece)  # every chunk's message: built once
                began = time.perf_counter()
                client.ws.send(json.dumps({"streamId": rid, "action": "upload", "data": None}))
                sent = read = 0
                result = None
                while sent < mib:
                    # Paced as the spec asks: at most inbox_size / 2 messages and input_window bytes unread.
                    while sent - read >= client.max_unread or (sent - read + 1) * len(piece) > client.window:
                        head, _, _ = client.next_message(rid)
                        read = max(read, head.get("read", read))
                        if "data" in head or head.get("close"):
                            raise AssertionError(f"igor: the upload ended early: {head!r}")
                    client.ws.send(message, BINARY)
                    sent += 1
                client.ws.send(json.dumps({"streamId": rid, "end": True}))
                while True:
                    head, _, _ = client.next_message(rid)
                    result = head.get("data", result)
                    if head.get("close"):
                        break
            else:
                began = time.perf_counter()
                client.ws.send("!upload")
                for _ in range(mib):
                    client.ws.send(piece, BINARY)
                client.ws.send("!end")
                result = int(client.ws.recv())
            elapsed = time.perf_counter() - began
    finally:
        client.close()
    if result != mib * MiB:
        raise AssertionError(f"{peer}: the server counted {result!r} bytes of {mib * MiB}")
    return {"mib_per_s": mib / elapsed, "rss_growth_mib": rss.growth_mib, "mib": mib}


# -- Node: 1 GiB through the JS client; Chromium: video frames -----------------------------------------

def node_script(name: str, args: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Run ``bench/peers/NAME`` with Node; its last stdout line is its JSON result."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: the Node and Chromium rows need it")
    if not os.path.exists(os.path.join(JS, "dist", "index.js")):
        raise RuntimeError("clients/js/dist is missing: build the JS client (cd clients/js && npm run build:lib)")
    if not os.path.isdir(os.path.join(JS, "node_modules", "ws")):
        raise RuntimeError("clients/js/node_modules is missing: cd clients/js && npm ci")
    done = subprocess.run([node, os.path.join(HERE, name), json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-1500:]}")
    return json.loads(lines[-1])


def js_upload(peer: str, server: ServerProcess, mib: int, limit: float) -> Dict[str, float]:
    """``mib`` MiB from Node into a handler writing it to disk: Igor through its JS client, the peer with ``ws``."""
    with RssPeak(server) as rss:
        result = node_script("upload.mjs", {"peer": peer, "port": server.port, "mib": mib}, limit)
    if result.get("bytes") != mib * MiB:
        raise AssertionError(f"{peer}: the server wrote {result.get('bytes')!r} bytes of {mib * MiB}")
    return {"mib_per_s": mib / result["seconds"], "rss_growth_mib": rss.growth_mib, "mib": mib}


def frames(peer: str, server: ServerProcess, seconds: float, limit: float) -> Dict[str, float]:
    """1920x1080 RGBA frames pushed to a Chromium page that draws each with putImageData: frames/s."""
    result = node_script("frames.mjs", {"peer": peer, "port": server.port, "seconds": seconds}, limit)
    return {"fps": result["frames"] / result["seconds"], "frames": result["frames"], "draw_ms": result["drawMs"],
            "mib_per_s": result["frames"] * result["frameBytes"] / MiB / result["seconds"]}
