"""Read-only static files on the WebSocket's own port, for the app's UI.

Only files inside the configured folder are ever served: the path is resolved
(symbolic links included) and must stay under the folder's resolved path;
hidden files and folders (names starting with ``.``) are never served.
"""

from __future__ import annotations

import mimetypes
import os
from typing import Optional, Tuple
from urllib.parse import unquote

from .handshake import Request, http_response

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
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}


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


def content_type(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    return _TYPES.get(extension) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def respond(root: Optional[str], request: Request) -> Tuple[int, bytes]:
    """Answer a plain HTTP request: ``(status, response bytes)``."""
    if root is None:
        return 404, http_response(404)
    if request.method not in ("GET", "HEAD"):
        return 405, http_response(405, extra_headers=(("Allow", "GET, HEAD"),))
    path = resolve(root, request.path)
    if path is None:
        return 404, http_response(404)
    try:
        with open(path, "rb") as f:
            body = f.read()
    except OSError:
        return 404, http_response(404)
    return 200, http_response(200, body, content_type(path), head_only=request.method == "HEAD")
