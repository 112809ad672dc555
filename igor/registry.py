"""Connected clients and their sessions, behind one lock.

Any thread (a connection's reader, a handler's worker, a background process)
may look clients up and send to them at any time; the registry's lock guards
the id table and the parked sessions, never a network write.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from .config import Config
from .exceptions import ClientIdTaken, UnknownClient
from .frames import Frame
from .protocol import StreamId, short

__all__ = ["ConnectedClient", "ClientRegistry", "ClientId"]

log = logging.getLogger("igor")

ClientId = StreamId


class Link(Protocol):
    """What a client needs of its connection: write a frame, close."""

    def send_frame(self, frame: Frame, wait: Optional[bool] = True, abandon: Optional[threading.Event] = None,
                   batch: bool = False) -> Optional[bool]: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class ConnectedClient:
    """One connection, as handlers and processes see it.

    ``id`` is what processes target; ``session`` is this client's dict (kept
    for a while after a disconnect); ``path``, ``query`` and ``headers`` come
    from the opening handshake.
    """

    def __init__(self, link: Link, address: Any = None, path: str = "/", query: Optional[dict] = None,
                 headers: Optional[dict] = None):
        self.id: ClientId = 0
        self.session: Dict[str, Any] = {}
        self.address = address
        self.path = path
        self.query = query or {}
        self.headers = headers or {}
        self.connected = True
        #: 2 when the client chose the ``igor.v2`` subprotocol: a stream's
        #: last message may then carry its close, saving a message per call;
        #: 3 for ``igor.v3``: binary values, the hello and paced input as well.
        self.protocol = 1
        #: The secret that claims this client's id and session back after a
        #: reconnect; set when it introduces itself (see ClientRegistry.rename).
        self.resume: Optional[str] = None
        self._link = link

    def send(self, frame: Frame, wait: Optional[bool] = True, abandon: Optional[threading.Event] = None,
             batch: bool = False) -> Optional[bool]:
        """Write one frame (see :func:`igor.frames.text_frame`); False if it was not accepted.

        ``wait`` lets a handler wait for room when the client reads slowly
        (back-pressure on its own stream) until ``abandon`` is set; process
        threads pass False so a slow client never stalls them (it is
        disconnected instead). ``wait=None`` sends only if there is room and
        returns None otherwise, so that the event loop never waits. ``batch``
        lets the frame wait for the writer thread to send it with others (see
        :meth:`Connection.send_frame <igor.connection.Connection.send_frame>`).
        """
        return self._link.send_frame(frame, wait, abandon, batch)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._link.close(code, reason)

    def __repr__(self) -> str:
        return f"<ConnectedClient {self.id!r} {self.address}>"


class ClientRegistry:
    """Client ids, connected clients and parked sessions."""

    def __init__(self, session_timeout: float = Config.session_timeout, clock: Callable[[], float] = time.monotonic):
        self.session_timeout = session_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: Dict[ClientId, ConnectedClient] = {}
        # A parked session: its dict, when it expires, and the secret that claims it back.
        self._parked: Dict[ClientId, Tuple[Dict[str, Any], float, Optional[str]]] = {}
        self._ids = itertools.count(1)

    def add(self, client: ConnectedClient) -> ClientId:
        """Register a new connection under the next free integer id."""
        with self._lock:
            client_id = next(self._ids)
            while client_id in self._clients or client_id in self._parked:
                client_id = next(self._ids)
            client.id = client_id
            self._clients[client_id] = client
            return client_id

    def remove(self, client: ConnectedClient) -> None:
        """Forget a connection; park its session for ``session_timeout`` seconds."""
        with self._lock:
            if self._clients.get(client.id) is client:
                del self._clients[client.id]
                self._parked[client.id] = (client.session, self._clock() + self.session_timeout, client.resume)

    def rename(self, client: ConnectedClient, new_id: ClientId, resume: Optional[str] = None) -> str:
        """Give ``client`` the id it asked for; returns the secret that resumes its session next time.

        An id whose client left less than ``session_timeout`` ago is parked:
        it, and its session, go only to a connection that presents the secret
        that client was last given. Ids are easy to guess (integers count from
        1, windows name themselves), so the id alone must not hand over a
        session. The secret changes on every rename, so an old one is useless.
        """
        with self._lock:
            holder = self._clients.get(new_id)
            if holder is not None and holder is not client:
                raise ClientIdTaken(f"client id {short(new_id, 64)} is already connected")
            parked = self._parked.get(new_id)
            if parked is not None and parked[1] <= self._clock():
                del self._parked[new_id]
                parked = None
            if parked is not None:
                expected = parked[2]
                if expected is None or not isinstance(resume, str) or not hmac.compare_digest(
                        expected.encode(), resume.encode()):
                    raise ClientIdTaken(f"client id {short(new_id, 64)} belongs to a client that left moments ago "
                                        "and may come back: only its resume secret claims it")
                del self._parked[new_id]
                client.session = parked[0]
            if holder is None:
                del self._clients[client.id]
                self._clients[new_id] = client
                client.id = new_id
            client.resume = secrets.token_urlsafe(18)
            return client.resume

    def get(self, client_id: ClientId) -> ConnectedClient:
        with self._lock:
            try:
                return self._clients[client_id]
            except KeyError:
                raise UnknownClient(f"no connected client has id {client_id!r}") from None

    def clients(self) -> List[ConnectedClient]:
        """A snapshot, so callers can send without holding the lock."""
        with self._lock:
            return list(self._clients.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def purge_sessions(self) -> None:
        """Drop parked sessions whose time is up."""
        now = self._clock()
        with self._lock:
            for client_id in [cid for cid, (_, expiry, _) in self._parked.items() if expiry <= now]:
                del self._parked[client_id]


    def export_sessions(self) -> List[Dict[str, Any]]:
        """The sessions a reconnecting client can claim, as JSON: ``[{"id", "session", "resume"}]``.

        For ``igor dev``, which hands them from the backend it stops to the one
        that replaces it. Those of connected clients count too (they are about
        to leave); only a client that introduced itself has a secret to claim
        its session with, so the others are left out. A value JSON cannot hold
        (or would not give back the same: a tuple, a key that is not a string)
        is dropped, with a warning naming it.
        """
        with self._lock:
            held = [(cid, session, resume) for cid, (session, _, resume) in self._parked.items()]
            held += [(client.id, client.session, client.resume) for client in self._clients.values()]
        exported = []
        for client_id, session, resume in held:
            if resume is None:
                continue
            kept = {}
            for key, value in list(session.items()):
                try:
                    if not isinstance(key, str) or json.loads(json.dumps(value)) != value:
                        raise TypeError(f"{type(value).__name__} does not come back from JSON the same")
                except (TypeError, ValueError, RecursionError) as exc:
                    log.warning("client %s: session[%r] is dropped, as it is not JSON (%s)", short(client_id, 64),
                                key, exc)
                    continue
                kept[key] = value
            exported.append({"id": client_id, "session": kept, "resume": resume})
        return exported

    def import_sessions(self, exported: List[Dict[str, Any]]) -> None:
        """Park the sessions :meth:`export_sessions` gave, each for ``session_timeout`` from now."""
        expiry = self._clock() + self.session_timeout
        with self._lock:
            for entry in exported:
                self._parked[entry["id"]] = (dict(entry["session"]), expiry, entry["resume"])
