"""Local files over HTTP: the original Igor's separate file server, kept read-only and safe.

The original served any path of the disk on its own port, to anyone, with
``Access-Control-Allow-Origin: *``, and wrote any absolute path a POST named.
Code written for it may still turn it on (``file_server_config``); here it
serves only the files under ``root_directory``, on 127.0.0.1, to requests
whose Host is a loopback name, GET and HEAD only, with no CORS header, one
request at a time and each within a few seconds, so a peer cannot make it
hold more than one connection's worth.

New code should use ``file_roots`` and ``server.file_url(path)`` instead:
signed, expiring URLs on the server's own port, with ``Range``.
"""

from __future__ import annotations

import http.server
import logging
import os
import shutil
from typing import Any

from .handshake import LOOPBACK_HOSTS
from .static import content_type, resolve

__all__ = ["LegacyFileServer"]

log = logging.getLogger("igor")

#: Seconds a request may take to arrive: the server answers one at a time.
REQUEST_TIMEOUT = 5.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: LegacyFileServer
    timeout = REQUEST_TIMEOUT
    server_version = "Igor"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        if _host_name(self.headers.get("Host") or "") not in LOOPBACK_HOSTS:
            self.send_error(403, "Host must be a loopback name")  # DNS rebinding: a page named otherwise
            return
        path = resolve(self.server.root, self.path.split("?", 1)[0])
        if path is None:
            self.send_error(404)
            return
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the with below, once the answer has begun
        except OSError:
            self.send_error(404)
            return
        with f:
            self.send_response(200)
            self.send_header("Content-Type", content_type(path))
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if body:
                shutil.copyfileobj(f, self.wfile)  # in chunks: a large file is never in memory whole

    def log_message(self, format: str, *args: Any) -> None:
        log.info("file server: " + format, *args)


def _host_name(host: str) -> str:
    """``localhost:8080`` -> ``localhost``; ``[::1]:8080`` -> ``[::1]``."""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.split(":", 1)[0]


class LegacyFileServer(http.server.HTTPServer):
    """Serves ``root`` read-only on 127.0.0.1:``port`` (see the module's docstring)."""

    def __init__(self, root: str, port: int):
        self.root = root
        super().__init__(("127.0.0.1", port), _Handler)
        log.info("file server: %s on http://127.0.0.1:%d/", root, self.server_address[1])

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
