"""The Python client's WebSocket: websocket-client, connected the way Igor needs and closed only once.

What :class:`~igor.client.IgorClient` needs of the socket underneath, kept
apart from what it does with the messages: opening the connection (every
way that fails becomes one :class:`~igor.ConnectionFailed` saying why),
sending at most one close frame, and reading the code of the server's.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any, List, Optional, Sequence, Tuple, Union, cast
from urllib.parse import urlsplit, urlunsplit

# igor.client imports websocket-client first, and says what to install when it is missing.
import websocket

from .exceptions import ConnectionFailed
from .protocol import CLIENT_SUBPROTOCOLS

__all__ = ["OneCloseWebSocket", "connect", "close_status", "protocol_of", "binary_frame", "CLOSE_NO_STATUS",
           "CLOSE_NO_FRAME"]

# RFC 6455's names for a close with no code in its frame, and for no close frame at all.
CLOSE_NO_STATUS = 1005
CLOSE_NO_FRAME = 1006

_STATUS_HINTS = {
    401: "the server wants a token and this one is missing or wrong (pass token=server.token)",
    403: "the server refused this client's Origin or Host header (see allowed_origins and allowed_hosts)",
    503: "the server is full or shutting down (max_clients, or too many pending handshakes)",
}


class OneCloseWebSocket(websocket.WebSocket):
    """A ``WebSocket`` that sends at most one close frame.

    websocket-client answers every close frame it reads with one of its own,
    including the server's answer to the close this client sent; a second
    close frame breaks RFC 6455 and may meet a socket the server already shut.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._close_lock = threading.Lock()
        self._close_sent = False

    def send_close(self, status: int = websocket.STATUS_NORMAL, reason: Union[str, bytes] = b"") -> None:
        with self._close_lock:
            if self._close_sent:
                return
            self._close_sent = True
        super().send_close(status, reason)


class _BinaryFrame(websocket.ABNF):
    """A binary frame of several pieces, masked with numpy's XOR straight into the frame's one buffer.

    websocket-client joins the payload, masks it through Python big
    integers (about 10 ms a MiB: most of an upload's time) and prepends
    the header, a copy each. Here the pieces are read once, XORed into the
    buffer that is sent. Without numpy, or for a small frame, websocket-client does it.
    """

    def __init__(self, pieces: Sequence[Any]):
        super().__init__(1, 0, 0, 0, websocket.ABNF.OPCODE_BINARY, 1, b"")
        self.pieces = pieces

    def format(self) -> Any:  # a memoryview: send_frame slices what is left without a copy
        numpy = _numpy()
        length = sum(len(piece) for piece in self.pieces)
        if not numpy or length < 1 << 16:
            self.data = b"".join(self.pieces)
            return super().format()
        key = os.urandom(4)
        header = struct.pack("!BBQ", 0x82, 0xFF, length) + key  # 127: a 64-bit length follows
        frame = numpy.empty(len(header) + length, dtype=numpy.uint8)
        frame[:len(header)] = numpy.frombuffer(header, dtype=numpy.uint8)
        offset, position = len(header), 0
        for piece in self.pieces:
            size = len(piece)
            turn = position % 4
            word = numpy.frombuffer(key[turn:] + key[:turn], dtype=numpy.uint32)[0]
            whole = size - size % 4
            if whole:
                numpy.bitwise_xor(numpy.frombuffer(piece, dtype=numpy.uint32, count=whole // 4), word,
                                  out=frame[offset:offset + whole].view(numpy.uint32))
            for index in range(whole, size):
                frame[offset + index] = piece[index] ^ key[(turn + index) % 4]
            offset += size
            position += size
        return memoryview(frame)


_numpy_module: Any = None


def _numpy() -> Any:
    # Imported at the first large frame: numpy costs a process about 14 MiB. False when it is missing.
    global _numpy_module
    if _numpy_module is None:
        try:
            import numpy

            _numpy_module = numpy
        except ImportError:  # pragma: no cover - depends on the environment
            _numpy_module = False
    return _numpy_module


def binary_frame(*pieces: Any) -> websocket.ABNF:
    """A whole binary frame of the ``pieces`` (bytes-like) back to back, for ``WebSocket.send_frame``."""
    return _BinaryFrame(pieces)


def connect(url: str, timeout: Optional[float], header: List[str]) -> OneCloseWebSocket:
    """Open the WebSocket, turning every way that can fail into ConnectionFailed."""
    where = _without_query(url)  # the query may hold the token
    try:
        ws = websocket.create_connection(url, timeout=timeout, header=header, enable_multithread=True,
                                         class_=OneCloseWebSocket, subprotocols=list(CLIENT_SUBPROTOCOLS))
    except websocket.WebSocketBadStatusException as exc:
        status = exc.status_code
        hint = _STATUS_HINTS.get(status, "the server refused the WebSocket handshake")
        raise ConnectionFailed(f"cannot connect to {where}: HTTP {status}: {hint}", status) from exc
    except (websocket.WebSocketException, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ConnectionFailed(f"cannot connect to {where}: {reason}") from exc
    return cast(OneCloseWebSocket, ws)  # create_connection is typed as making a plain WebSocket, whatever class_ is


def protocol_of(ws: websocket.WebSocket) -> int:
    """The protocol the server chose: 3 for ``igor.v3``, 2 for ``igor.v2``, 1 for ``igor`` or none."""
    return {"igor.v3": 3, "igor.v2": 2}.get(ws.getsubprotocol() or "", 1)


def _without_query(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return repr(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def close_status(payload: bytes) -> Tuple[int, str]:
    """The code and reason of a close frame's payload."""
    if len(payload) < 2:
        return CLOSE_NO_STATUS, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
