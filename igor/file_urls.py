"""Signed, expiring URLs for local files, served over plain HTTP on the server's own port.

``server.file_url(path)`` gives a page a URL it can put in ``<img src>``,
``<video src>`` or ``fetch`` without the token: the URL itself is the
capability, an HMAC-SHA256 (with a key made for each server) over the one
file and the expiry. Only files under the configured ``file_roots`` can be
given one. A URL looks like::

    http://127.0.0.1:PORT/.igor/file/ROOT/REL/PATH?expires=UNIX_SECONDS&sig=BASE64URL

``ROOT`` is the index of the root in ``file_roots``, ``REL/PATH`` the file's
path under it, each segment percent-encoded. The leading ``.igor`` can
never name a ``static_dir`` file (hidden names are never served), so the
two never collide.

Serving checks everything again, since the disk may have changed since the
URL was made: the signature first (anything changed in the URL: 403), then
the expiry (410), then the path, which must still resolve to itself with no
symbolic link in it (403) and name a regular file (404). The answers are
described in docs/protocol.md, "Files over HTTP".
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import math
import os
import secrets
import stat
import time
from typing import BinaryIO, Callable, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlsplit

from .handshake import Request, SecurityPolicy
from .static import Answer, content_type, error, file_answer

__all__ = ["FileUrls", "PREFIX", "DEFAULT_EXPIRY", "Expiry"]

#: The path every file URL starts with.
PREFIX = "/.igor/file/"
#: Seconds a URL stays valid unless told otherwise.
DEFAULT_EXPIRY = 3600.0

Expiry = Union[float, int, _dt.timedelta, _dt.datetime]
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileUrls:
    """Makes and checks the URLs of the files under ``roots`` (absolute, resolved folders)."""

    def __init__(self, roots: Sequence[str], clock: Callable[[], float] = time.time):
        self.roots = tuple(roots)
        self._key = secrets.token_bytes(32)
        self._clock = clock

    # -- making URLs -----------------------------------------------------------

    def url(self, base: str, path: Union[str, os.PathLike], expires: Expiry = DEFAULT_EXPIRY) -> str:
        """The URL, on ``base`` (``http://host:port``), of the file ``path``, valid until ``expires``.

        Raises ValueError for a path outside every root (after resolving
        ``..`` and symbolic links) or a folder, FileNotFoundError for a missing file.
        """
        if not self.roots:
            raise ValueError("no file can be given a URL: config 'file_roots' is empty; list the folders "
                             "whose files the page may show")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"file_url() needs a path (str or os.PathLike), got {type(path).__name__}")
        real = os.path.realpath(os.fspath(path))
        if not os.path.exists(real):
            raise FileNotFoundError(f"no such file: {os.fspath(path)!r} (file_roots: {list(self.roots)})")
        index = next((i for i, root in enumerate(self.roots) if os.path.commonpath([root, real]) == root), None)
        if index is None:
            raise ValueError(f"{os.fspath(path)!r} is not under any of the file_roots {list(self.roots)} "
                             f"(it resolves to {real!r})")
        if not os.path.isfile(real):
            raise ValueError(f"{os.fspath(path)!r} is not a regular file: only files under the file_roots "
                             f"{list(self.roots)} can be given a URL")
        parts = [os.fsencode(part) for part in os.path.relpath(real, self.roots[index]).split(os.sep)]
        if any(b"\\" in part for part in parts):
            raise ValueError(f"{os.fspath(path)!r} has a backslash in a name, which a file URL cannot carry")
        deadline = self._deadline(expires)
        rel = b"/".join(parts)
        segments = "/".join(quote(part, safe="") for part in parts)
        return f"{base}{PREFIX}{index}/{segments}?expires={deadline}&sig={self._sign(index, rel, deadline)}"

    def _deadline(self, expires: Expiry) -> int:
        """Unix seconds (whole, rounded up) at which a URL made now with ``expires`` stops working."""
        now = self._clock()
        if isinstance(expires, _dt.datetime):
            at = expires.timestamp()  # a naive datetime is local time, as datetime.timestamp() takes it
        elif isinstance(expires, _dt.timedelta):
            at = now + expires.total_seconds()
        elif isinstance(expires, (int, float)) and not isinstance(expires, bool) and math.isfinite(expires):
            at = now + expires
        else:
            raise TypeError(f"expires must be seconds, a timedelta or a datetime, got {expires!r}")
        if at <= now:
            raise ValueError(f"expires must be in the future, got {expires!r}")
        return math.ceil(at)

    def _sign(self, index: int, rel: bytes, deadline: int) -> str:
        message = b"%d\x00%s\x00%d" % (index, rel, deadline)
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    # -- serving them -----------------------------------------------------------

    @staticmethod
    def owns(request: Request) -> bool:
        """Whether ``request`` is for a file URL (anything under :data:`PREFIX`)."""
        return request.target.startswith(PREFIX)

    def answer(self, request: Request, policy: SecurityPolicy) -> Answer:
        """The answer to a plain HTTP request for a file URL; its Host has been checked already."""
        if request.method not in ("GET", "HEAD"):
            # Writes go through upload streams on the WebSocket, never over HTTP.
            return error(405, (("Allow", "GET, HEAD"),))
        cors = _cors_headers(request, policy)
        if cors is None:
            return error(403, (("Vary", "Origin"),))
        parsed = self._parse(request.target)
        if parsed is None:
            return error(403, cors)
        index, rel, deadline = parsed
        now = self._clock()
        if now >= deadline:
            return error(410, cors)
        root = self.roots[index]
        expected = os.path.join(root, os.fsdecode(rel).replace("/", os.sep))
        # Made from a resolved path, so the path must still resolve to itself: a name swapped for a
        # link since (to anywhere, in the root or out of it) is refused.
        if os.path.realpath(expected) != expected or os.path.commonpath([root, expected]) != root:
            return error(403, cors)
        try:
            # Not with: the answer takes the file over and closes it once sent.
            file = open(expected, "rb", buffering=0,  # noqa: SIM115
                        opener=lambda name, flags: os.open(name, flags | _NOFOLLOW))
        except FileNotFoundError:
            return error(404, cors)
        except OSError:
            # ELOOP: the last name became a link between the check above and the open.
            return error(404 if os.path.isdir(expected) else 403, cors)
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            file.close()
            return error(404, cors)
        if not _opened_as(file, expected):
            file.close()  # a folder on the way became a link between the check and the open
            return error(403, cors)
        age = max(0, int(deadline - now))
        return file_answer(file, request, content_type(expected), [("Cache-Control", f"private, max-age={age}"),
                                                                   *cors])

    def _parse(self, target: str) -> Optional[Tuple[int, bytes, int]]:
        """``(root index, relative path, deadline)`` of a well-formed URL whose signature holds, else None."""
        try:
            split = urlsplit(target)
        except ValueError:
            return None
        index_text, slash, path = split.path[len(PREFIX):].partition("/")
        if not slash or not _canonical_number(index_text, 6):
            return None
        index = int(index_text)
        parts: List[bytes] = [unquote_to_bytes(part) for part in path.split("/")]
        # Signed names never hold these; checked before the signature all the same.
        if index >= len(self.roots) or any(part in (b"", b".", b"..") or b"/" in part or b"\\" in part
                                           or b"\x00" in part for part in parts):
            return None
        query = parse_qs(split.query, keep_blank_values=True)
        expires, sig = query.get("expires", []), query.get("sig", [])
        if len(query) != 2 or len(expires) != 1 or len(sig) != 1 or not _canonical_number(expires[0], 12):
            return None
        deadline = int(expires[0])
        rel = b"/".join(parts)
        if not hmac.compare_digest(self._sign(index, rel, deadline).encode("ascii"), sig[0].encode("utf-8")):
            return None
        return index, rel, deadline


def _cors_headers(request: Request, policy: SecurityPolicy) -> Optional[List[Tuple[str, str]]]:
    """The CORS headers of a file answer, or None when the request's Origin is not allowed.

    Browsers send no Origin for ``<img>`` and ``<video>`` without
    ``crossorigin``, nor for a same-origin fetch: those need no header. A
    cross-origin ``fetch`` from an allowed origin (the page the server
    serves under another loopback name, an Electron window's ``file://``)
    gets its own origin echoed, never ``*``; any other origin is refused,
    as it is on the WebSocket.
    """
    headers = [("Vary", "Origin")]
    origin = request.headers.get("origin")
    if origin is None:
        return headers
    if not policy.allows_origin(origin):
        return None
    return headers + [("Access-Control-Allow-Origin", origin),
                      ("Access-Control-Expose-Headers", "Content-Range, Accept-Ranges, Content-Length")]


def _canonical_number(text: str, digits: int) -> bool:
    """Whether ``text`` is a number as the URL was written with it: ASCII digits, no sign, no leading zero."""
    return text.isascii() and text.isdigit() and len(text) <= digits and str(int(text)) == text


def _opened_as(file: BinaryIO, path: str) -> bool:
    """Whether the open ``file`` is ``path`` itself, where the system can tell (Linux's /proc); else True."""
    try:
        return os.readlink(f"/proc/self/fd/{file.fileno()}") == path
    except OSError:
        return True
