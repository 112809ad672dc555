"""Read-only files over plain HTTP on the WebSocket's own port: the app's UI, and signed file URLs.

Only files inside the configured folder are ever served: the path is resolved
(symbolic links included) and must stay under the folder's resolved path;
hidden files and folders (names starting with ``.``) are never served.

Every file answer, here and in :mod:`igor.file_urls`, is an :class:`Answer`:
a head and an open file to stream after it, never the file read into
memory. ``Range`` is honoured (one range; see :func:`parse_range`), so a
``<video>`` can seek.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO, Optional, Sequence, Tuple, Union
from urllib.parse import unquote

from .handshake import Request, http_response

__all__ = ["Answer", "resolve", "content_type", "respond", "file_answer", "parse_range", "send_answer"]

# Browsers refuse ES modules served with a wrong type, and the platform's
# mimetypes table varies (some map .js to application/x-javascript).
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}

Headers = Sequence[Tuple[str, str]]


@dataclass
class Answer:
    """An HTTP answer: ``head`` (with the whole of a small body), then ``count`` bytes of ``file`` from ``offset``."""

    status: int
    head: bytes
    file: Optional[BinaryIO] = None
    offset: int = 0
    count: int = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def error(status: int, headers: Headers = ()) -> Answer:
    return Answer(status, http_response(status, extra_headers=tuple(headers)))


def resolve(root: str, url_path: str) -> Optional[str]:
    """The file under ``root`` that ``url_path`` names, or None if it may not be served."""
    path = unquote(url_path)
    if "\x00" in path or "\\" in path:
        return None
    parts = [part for part in path.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return None
    root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(root, *parts))
    if os.path.isdir(candidate):
        candidate = os.path.realpath(os.path.join(candidate, "index.html"))
    if os.path.commonpath([root, candidate]) != root or not os.path.isfile(candidate):
        return None
    return candidate


def content_type(path: Union[str, bytes]) -> str:
    path = os.fsdecode(path)
    extension = os.path.splitext(path)[1].lower()
    return _TYPES.get(extension) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def respond(root: Optional[str], request: Request) -> Answer:
    """Answer a plain HTTP request for a file of ``root`` (the ``static_dir``)."""
    if root is None:
        return error(404)
    if request.method not in ("GET", "HEAD"):
        return error(405, (("Allow", "GET, HEAD"),))
    path = resolve(root, request.path)
    if path is None:
        return error(404)
    try:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 - the answer closes it once sent
    except OSError:
        return error(404)
    return file_answer(file, request, content_type(path), (("Cache-Control", "no-cache"),))


def parse_range(value: str, size: int) -> Union[None, bool, Tuple[int, int]]:
    """The byte range ``(first, last)`` a ``Range`` header asks of a ``size``-byte file.

    None when the header is to be ignored and the whole file sent: not a
    ``bytes=`` range, malformed, or more than one range (answering several
    would need a multipart body; RFC 9110 lets a server send the whole file
    instead). False when it asks only for bytes the file does not have (416).
    """
    unit, equals, spec = value.partition("=")
    if not equals or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not all(part.isdigit() and part.isascii() and len(part) <= 20 for part in (first, last) if part):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)  # the last N bytes
        return (max(0, size - suffix), size - 1) if suffix and size else False
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, min(int(last), size - 1) if last else size - 1


def file_answer(file: BinaryIO, request: Request, type_: str, headers: Headers) -> Answer:
    """The answer that sends the open regular ``file`` (or the range ``request`` asks of it); takes ``file`` over."""
    stat = os.fstat(file.fileno())
    size = stat.st_size
    etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
    modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    common = [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", modified), *headers]
    requested = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # A page holding a changed file's earlier bytes must get the whole new one, not a piece of it.
    byte_range = parse_range(requested, size) if requested and if_range in (None, etag, modified) else None
    if byte_range is False:
        file.close()
        return Answer(416, _head(416, "text/plain; charset=utf-8", 0, [("Content-Range", f"bytes */{size}"),
                                                                       *common]))
    if byte_range is None:
        status, offset, count, extra = 200, 0, size, []
    else:
        first, last = byte_range
        status, offset, count = 206, first, last - first + 1
        extra = [("Content-Range", f"bytes {first}-{last}/{size}")]
    head = _head(status, type_, count, extra + common)
    if request.method == "HEAD" or count == 0:
        file.close()
        return Answer(status, head)
    return Answer(status, head, file, offset, count)


def _head(status: int, type_: str, length: int, headers: Headers) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {type_}",
             f"Content-Length: {length}", "Connection: close", "X-Content-Type-Options: nosniff"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_answer(sock: socket.socket, answer: Answer) -> None:
    """Write ``answer`` to ``sock``: the head, then the file's bytes by ``sendfile`` where the system has it.

    Memory stays bounded whatever the file's size: the kernel copies from
    the file to the socket, or (without sendfile) Python does it 8 KiB at a
    time. The socket's timeout bounds how long a peer that stops reading holds the thread.
    """
    try:
        sock.sendall(answer.head)
        if answer.file is not None and answer.count:
            sock.sendfile(answer.file, answer.offset, answer.count)
        sock.shutdown(socket.SHUT_WR)  # the whole answer is out: the peer sees its end, not a reset
    finally:
        answer.close()
