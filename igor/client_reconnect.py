"""The Python client's reconnection: the :class:`Reconnect` policy, and the :class:`Reconnecting` part of the client.

With ``IgorClient(..., reconnect=True)`` a dropped connection is made again
by a thread of its own, which introduces the new connection with the same
client id and its resume secret before any waiting call may use it, so the
server hands the session back. A backend that ``igor dev`` reloaded closes
with 1012 (Service Restart) and its successor already listens on the same
socket, so that case is retried at once; any other drop waits a growing,
jittered delay between attempts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .client_support import seconds
from .exceptions import ConnectionClosed, ConnectionFailed, IgorError, RemoteError

if TYPE_CHECKING:
    import websocket

    from .client_pushes import Exposed

__all__ = ["Reconnect", "Reconnecting", "CLOSE_SERVICE_RESTART"]

log = logging.getLogger("igor.client")

# Its own generator, so that the jitter neither draws from nor disturbs an application's seeded ``random``.
_jitter = random.Random()

# RFC 6455's Service Restart: what igor dev closes with when it reloads the backend.
CLOSE_SERVICE_RESTART = 1012


@dataclasses.dataclass(frozen=True)
class Reconnect:
    """How :class:`~igor.IgorClient` (``reconnect=Reconnect(...)``) retries after its connection dropped.

    The n-th retry in a row waits ``initial_delay * factor ** (n - 1)``
    seconds, at most ``max_delay``, less a random part of up to ``jitter``
    of it (so that windows restarting together do not retry in step);
    after ``max_attempts`` failures in a row (None: never) the client
    closes for good. A backend that reloaded (close code 1012) is retried
    at once: its successor is already listening.
    """

    initial_delay: float = 0.25
    max_delay: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    max_attempts: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "factor", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"Reconnect({name}=...) is a number of at least 0, not {value!r}")
        if self.jitter > 1:
            raise ValueError(f"Reconnect(jitter=...) is a fraction from 0 to 1, not {self.jitter!r}")
        attempts = self.max_attempts
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1):
            raise ValueError(f"Reconnect(max_attempts=...) is a whole number of at least 1, or None, not {attempts!r}")

    @classmethod
    def of(cls, reconnect: Union[bool, Reconnect]) -> Optional[Reconnect]:
        """The policy a client's ``reconnect=`` argument asks for; None for none."""
        if isinstance(reconnect, cls):
            return reconnect
        if isinstance(reconnect, bool):
            return cls() if reconnect else None
        raise TypeError(f"reconnect is True, False or an igor.Reconnect, not {reconnect!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first)."""
        base = self.initial_delay
        for _ in range(min(attempt - 1, 64)):  # by steps, so that no power of a large factor overflows
            if base >= self.max_delay:
                break
            base *= self.factor
        return min(base, self.max_delay) * (1 - self.jitter * _jitter.random())


class Reconnecting:
    """The part of :class:`~igor.IgorClient` that knows its status and makes the connection again.

    ``_status`` is ``"open"``, ``"reconnecting"`` or ``"closed"`` (for good),
    guarded by ``_lock`` and announced on ``_changed`` (a condition of the same lock).
    """

    # Set by IgorClient.__init__ and _attach.
    url: str
    timeout: Optional[float]
    client_id: Union[str, int, None]
    resume: Optional[str]
    close_code: Optional[int]
    close_reason: str
    _policy: Optional[Reconnect]
    _lock: threading.Lock
    _changed: threading.Condition
    _status: str
    _closed: threading.Event
    _closing: bool
    _stop: threading.Event
    _ws: websocket.WebSocket
    _reader: threading.Thread
    _exposed: Exposed
    _attach: Callable[[Any], None]
    _connect: Callable[[], Any]
    _introduce: Callable[[Union[str, int], Optional[str], bool], None]
    _closed_error: Callable[[], ConnectionClosed]

    @property
    def status(self) -> str:
        """``"open"``, ``"reconnecting"`` (with ``reconnect``, after a drop) or ``"closed"`` (for good)."""
        return self._status

    def wait_open(self, timeout: Optional[float] = None) -> bool:
        """Wait until the connection is open (again, after a drop); False if it closed for good or time ran out."""
        with self._changed:
            self._changed.wait_for(lambda: not self._waits(), seconds(timeout))
            return self._status == "open" and not self._closed.is_set()

    def _waits(self) -> bool:
        """Whether a call now would wait for a reconnection (under the lock)."""
        if self._status == "reconnecting":
            return True
        # Dropped, and the reader has not said so yet: it is about to reconnect.
        return self._status == "open" and self._closed.is_set() and self._policy is not None and not self._closing

    def _wait_open(self, deadline: Optional[float]) -> None:
        """Return once a call may be sent (or fail at once, the connection being closed); wait until ``deadline``."""
        with self._changed:
            while self._waits():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ConnectionClosed(f"not connected: still reconnecting to {self.url} after the drop "
                                           f"({self._closed_error()})", self.close_code, self.close_reason)
                self._changed.wait(left)

    def _set_status(self, status: str) -> None:
        with self._changed:
            if self._status != "closed":  # for good
                self._status = status
            self._changed.notify_all()

    def _lost(self) -> None:
        """The reader's connection ended: close for good, or reconnect (unless a reconnection is under way)."""
        with self._changed:
            if self._status == "reconnecting":
                return  # the reconnection's own attempt dropped: it sees that, and tries again
            again = self._policy is not None and not self._closing and self._status != "closed"
            if again:
                self._status = "reconnecting"
                self._changed.notify_all()
        if not again:
            self._give_up()
            return
        threading.Thread(target=self._reconnect, name="igor-client-reconnect", daemon=True).start()

    def _reconnect(self) -> None:
        policy = self._policy
        assert policy is not None
        attempt = 0
        why = str(self._closed_error())
        delay = 0.0 if self.close_code == CLOSE_SERVICE_RESTART else policy.delay(1)
        while True:
            log.info("%s; reconnecting to %s in %.2f s", why, self.url, delay)
            if self._stop.wait(delay):
                return  # close() has done the rest
            attempt += 1
            try:
                self._attach(self._connect())
                if self.client_id is not None:
                    self._introduce(self.client_id, self.resume, False)
                with self._changed:
                    if self._closing:
                        break
                    if not self._closed.is_set():
                        # Under the lock: a drop from now on finds the status open, and reconnects again.
                        self._status = "open"
                        self._changed.notify_all()
                        log.info("reconnected to %s%s", self.url,
                                 "" if self.client_id is None else f" as {self.client_id!r}")
                        return
                why = "the new connection dropped at once"
            except IgorError as exc:  # could not connect, refused, dropped, no answer in time
                why = f"reconnecting failed: {exc}"
                status = exc.status if isinstance(exc, ConnectionFailed) else exc.code if isinstance(
                    exc, RemoteError) else None
                # A refused handshake is refused again; a 409 means the server still holds our old connection.
                if status is not None and 400 <= status < 500 and status != 409:
                    log.warning("%s: not retrying", why)
                    break
            except Exception:
                log.exception("reconnecting to %s failed: giving up", self.url)
                break
            self._drop_attempt()
            if policy.max_attempts is not None and attempt >= policy.max_attempts:
                log.warning("%s: gave up after %d attempt(s)", why, attempt)
                break
            delay = policy.delay(attempt)
        self._drop_attempt()
        self._give_up()

    def _drop_attempt(self) -> None:
        """Let go of a connection an attempt made but could not use, and of its reader, before the next."""
        reader = getattr(self, "_reader", None)
        if reader is None or not reader.is_alive() or reader is threading.current_thread():
            return
        self._ws.abort()  # type: ignore[no-untyped-call]
        reader.join(5.0)  # the abort wakes its blocking read at once

    def _give_up(self) -> None:
        with self._changed:
            self._closed.set()
        self._set_status("closed")
        self._exposed.shutdown()
