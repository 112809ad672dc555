"""The opening handshake: parse the HTTP request, decide, build the answer.

Every check that protects a localhost server from the web pages its user
visits lives here, free of sockets so each rule is testable with strings:

- ``Host`` must name an allowed host, which defeats DNS rebinding (a hostile
  page whose name resolves to 127.0.0.1 still sends its own name as Host).
- ``Origin``, when present (browsers always send it), must be allowed:
  browsers apply no same-origin policy to WebSocket.
- The token, when the server has one, must be presented.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Request",
    "HandshakeError",
    "SecurityPolicy",
    "DEFAULT_ORIGINS",
    "default_origins",
    "split_head",
    "chosen_protocol",
    "LOOPBACK_HOSTS",
    "parse_request",
    "accept_key",
    "switching_protocols",
    "http_response",
]

SUBPROTOCOL = "igor"
#: Protocol 2: a stream's last message (its last value, or its error) may carry the close.
SUBPROTOCOL_V2 = "igor.v2"
#: Protocol 3: binary values in messages, the hello, paced input (docs/protocol.md).
SUBPROTOCOL_V3 = "igor.v3"
#: Each subprotocol the server speaks, best first, and the protocol number it means.
SUBPROTOCOLS = ((SUBPROTOCOL_V3, 3), (SUBPROTOCOL_V2, 2), (SUBPROTOCOL, 1))
TOKEN_PROTOCOL_PREFIX = "igor.token."
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: The Origin allowlist of a server with a token: file:// and every loopback origin, any port.
DEFAULT_ORIGINS = ("file://",) + tuple(
    f"{scheme}://{host}:*" for scheme in ("http", "https") for host in LOOPBACK_HOSTS
)


def default_origins(has_token: bool, port: int) -> Tuple[str, ...]:
    """The Origin allowlist when the application gives none.

    With a token, a page must know the token anyway, so any loopback origin
    may try (a dev server on another port, say). Without one, a page served
    from any other localhost port (another app, a compromised dev server)
    could drive the backend, so only the server's own origin and ``file://``
    (an Electron window loading its files) are let in. Clients that send no
    Origin (Node, Python) are never browsers and always pass.
    """
    if has_token:
        return DEFAULT_ORIGINS
    return ("file://",) + tuple(f"{scheme}://{host}:{port}" for scheme in ("http", "https") for host in LOOPBACK_HOSTS)

MAX_REQUEST_LINE = 8192
MAX_HEADERS = 100
MAX_HEAD = 64 * 1024


class HandshakeError(Exception):
    """The handshake is refused with HTTP ``status``; ``reason`` goes to the log."""

    def __init__(self, status: int, reason: str, headers: Tuple[Tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass
class Request:
    """What the client asked for: method, path, query and headers.

    Header names are lower-case; a repeated header keeps its values joined by
    ``", "`` as HTTP allows.
    """

    method: str
    target: str
    headers: Dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> Dict[str, List[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def is_upgrade(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()

    def subprotocols(self) -> List[str]:
        offered = self.headers.get("sec-websocket-protocol", "")
        return [item.strip() for item in offered.split(",") if item.strip()]


def split_head(buffer: bytes) -> Optional[Tuple[List[bytes], bytes]]:
    """Find the end of a request's head in the bytes read so far.

    Returns ``(lines, rest)``: the head's lines without their line endings
    and the bytes after it (a client may send its first frame at once), or
    None when more bytes are needed. Raises :class:`HandshakeError` (400)
    once the head is too large to be a real one.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        first_line = buffer.split(b"\n", 1)[0]
        if len(first_line) > MAX_REQUEST_LINE or len(buffer) > MAX_HEAD:
            raise HandshakeError(400, "request line or head too long")
        return None
    if end > MAX_HEAD:
        raise HandshakeError(400, "request head too long")
    lines = bytes(buffer[:end]).split(b"\r\n")
    if any(len(line) > MAX_REQUEST_LINE for line in lines):
        raise HandshakeError(400, "request line or header too long")
    if len(lines) > MAX_HEADERS + 1:
        raise HandshakeError(400, "too many headers")
    return lines, bytes(buffer[end + 4:])


def parse_request(lines: Iterable[bytes]) -> Request:
    """Build a :class:`Request` from raw header lines (request line first).

    Raises :class:`HandshakeError` (400) for anything that is not HTTP/1.x.
    """
    lines = iter(lines)
    try:
        request_line = next(lines).decode("latin-1").rstrip("\r\n")
    except StopIteration:
        raise HandshakeError(400, "empty request") from None
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError(400, f"malformed request line {request_line[:80]!r}")
    method, target, _ = parts
    try:
        urlsplit(target)
    except ValueError:
        raise HandshakeError(400, f"malformed request target {target[:80]!r}") from None
    headers: Dict[str, str] = {}
    for count, raw in enumerate(lines):
        if count >= MAX_HEADERS:
            raise HandshakeError(400, "too many headers")
        line = raw.decode("latin-1").rstrip("\r\n")
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HandshakeError(400, f"malformed header line {line[:80]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(method, target, headers)


def _host_name(value: str) -> str:
    """``'localhost:5678'`` -> ``'localhost'``; ``'[::1]:80'`` -> ``'[::1]'``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if ":" in value else value


def _origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    origin = origin.strip().lower()
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or pattern == origin:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if origin == base or (origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit()):
                return True
    return False


@dataclass
class SecurityPolicy:
    """Who may connect: token, allowed origins and hosts, client limit.

    ``allowed_origins`` entries are exact origins (``"http://localhost:3000"``),
    origins with any port (``"http://localhost:*"``), ``"null"`` or ``"*"``.
    ``allowed_hosts`` entries are host names without port, or ``"*"``.
    """

    token: Optional[str] = None
    allowed_origins: Tuple[str, ...] = DEFAULT_ORIGINS
    allowed_hosts: Tuple[str, ...] = LOOPBACK_HOSTS

    def check_host(self, request: Request) -> None:
        host = request.headers.get("host")
        if host is None:
            raise HandshakeError(400, "missing Host header")
        if "*" not in self.allowed_hosts and _host_name(host) not in self.allowed_hosts:
            raise HandshakeError(403, f"Host {host!r} is not allowed")

    def allows_origin(self, origin: str) -> bool:
        """Whether a browser page of ``origin`` may connect (or fetch a file URL's bytes)."""
        return _origin_allowed(origin, self.allowed_origins)

    def check_websocket(self, request: Request) -> None:
        """Run every check on an upgrade request, in the order the answers rank."""
        if request.method != "GET":
            raise HandshakeError(400, f"a WebSocket handshake must be GET, not {request.method}")
        key = request.headers.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            raise HandshakeError(400, "missing or malformed Sec-WebSocket-Key") from None
        if request.headers.get("sec-websocket-version") != "13":
            raise HandshakeError(400, "Sec-WebSocket-Version must be 13", (("Sec-WebSocket-Version", "13"),))
        connection = [token.strip().lower() for token in request.headers.get("connection", "").split(",")]
        if "upgrade" not in connection:
            raise HandshakeError(400, "the Connection header must include Upgrade")
        self.check_host(request)
        origin = request.headers.get("origin")
        if origin is not None and not self.allows_origin(origin):
            raise HandshakeError(403, f"Origin {origin!r} is not allowed")
        if self.token is not None and not self._token_presented(request):
            raise HandshakeError(401, "missing or wrong token")

    def _token_presented(self, request: Request) -> bool:
        candidates = list(request.query.get("token", []))
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            candidates.append(authorization[7:].strip())
        candidates += [
            entry[len(TOKEN_PROTOCOL_PREFIX) :]
            for entry in request.subprotocols()
            if entry.startswith(TOKEN_PROTOCOL_PREFIX)
        ]
        expected = self.token.encode("utf-8")
        # Check every candidate so timing does not tell which one was tried.
        found = False
        for candidate in candidates:
            found |= hmac.compare_digest(candidate.encode("utf-8"), expected)
        return found


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def chosen_subprotocol(request: Request) -> Optional[str]:
    """The best of ``igor.v3``, ``igor.v2`` and ``igor`` the client offered, else None."""
    offered = request.subprotocols()
    return next((name for name, _ in SUBPROTOCOLS if name in offered), None)


def chosen_protocol(request: Request) -> int:
    """The protocol number the connection speaks: that of :func:`chosen_subprotocol`, 1 when none was offered."""
    chosen = chosen_subprotocol(request)
    return next((number for name, number in SUBPROTOCOLS if name == chosen), 1)


def switching_protocols(request: Request) -> bytes:
    """The 101 answer; it names the subprotocol :func:`chosen_subprotocol` picks.

    The token entry is never echoed: answering with a subprotocol the client
    offered is what browsers require, and ``igor`` (or ``igor.v2``, ``igor.v3``) is the one to pick.
    """
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.headers['sec-websocket-key'])}",
    ]
    chosen = chosen_subprotocol(request)
    if chosen is not None:
        lines.append(f"Sec-WebSocket-Protocol: {chosen}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def http_response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    extra_headers: Tuple[Tuple[str, str], ...] = (),
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection after it."""
    if not body and status >= 400:
        body = f"{status} {HTTPStatus(status).phrase}\n".encode("ascii")
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "X-Content-Type-Options: nosniff",
        "Cache-Control: no-cache",
    ]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
