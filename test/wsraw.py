"""A raw-socket WebSocket peer for tests that must send what no library would."""

from __future__ import annotations

import base64
import os
import socket
import struct
import weakref
from typing import Dict, Optional, Tuple

# Bytes read past what a caller asked for, per socket (sockets take no attributes).
_pending: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()

KEY = base64.b64encode(b"0123456789abcdef").decode()


def request(port: int, headers: Optional[Dict[str, str]] = None, path: str = "/", method: str = "GET") -> bytes:
    """A handshake request; ``headers`` override or (with value None) remove defaults."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        fields.pop(name, None)
        if value is not None:
            fields[name] = value
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_http_head(sock: socket.socket) -> Tuple[int, bytes]:
    """Read an HTTP answer's head: ``(status, head bytes)``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    head, _, rest = data.partition(b"\r\n\r\n")
    _pending[sock] = rest
    return status, head


def handshake_status(port: int, raw: bytes, timeout: float = 5.0) -> int:
    """Send ``raw`` as the request and return the HTTP status answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_http_head(sock)[0]


def connect(port: int, headers: Optional[Dict[str, str]] = None, path: str = "/",
            timeout: float = 5.0) -> socket.socket:
    """Open a socket and complete a valid handshake; raises if not answered 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(request(port, headers, path))
    status, head = read_http_head(sock)
    if status != 101:
        sock.close()
        raise ConnectionError(f"handshake answered {status}: {head!r}")
    return sock


def frame_bytes(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True, rsv: int = 0,
                length: Optional[int] = None, key: Optional[bytes] = None) -> bytes:
    """One client frame as bytes; ``length`` may lie about the payload's size."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return header + payload
    key = os.urandom(4) if key is None else key
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def send_frame(sock: socket.socket, opcode: int, payload: bytes = b"", fin: bool = True,
               mask: bool = True, rsv: int = 0, length: Optional[int] = None) -> None:
    """Write one client frame; ``length`` may lie about the payload's size."""
    sock.sendall(frame_bytes(opcode, payload, fin, mask, rsv, length))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = _pending.get(sock, b"")
    while len(data) < size:
        chunk = sock.recv(max(65536, size - len(data)))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    _pending[sock] = data[size:]
    return data[:size]


def recv_frame(sock: socket.socket) -> Tuple[bool, int, bytes]:
    """Read one server frame: ``(fin, opcode, payload)``."""
    first, second = _recv_exact(sock, 2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _recv_exact(sock, 8))
    return bool(first & 0x80), first & 0x0F, _recv_exact(sock, size)


def recv_close_code(sock: socket.socket, max_frames: int = 1000) -> int:
    """Read frames until a close frame arrives; return its code."""
    for _ in range(max_frames):
        _, opcode, payload = recv_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    raise AssertionError("no close frame")
