"""Small parts of the Python client: timeouts, listener registrations, the server's errors.

Kept apart from :mod:`igor.client` so that each stays a module one can read in a sitting.
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Any, Callable, Dict, Final, Literal, Optional, Union

from .exceptions import RemoteError

__all__ = ["DEFAULT", "Timeout", "Listener", "Observer", "seconds", "remote_error", "safely"]

log = logging.getLogger("igor.client")

Listener = Callable[[Any], None]


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"


#: ``timeout=DEFAULT`` means the client's own timeout, as leaving the argument
#: out does; for code that passes a timeout on, since None means no timeout.
DEFAULT: Final = _Default.DEFAULT
#: A call's timeout: seconds, None or ``float('inf')`` for none, or :data:`DEFAULT`.
Timeout = Union[float, None, Literal[_Default.DEFAULT]]


class Observer:
    """One :meth:`IgorClient.on` registration."""

    __slots__ = ("next", "error", "complete")

    def __init__(self, next: Optional[Listener], error: Optional[Callable[[RemoteError], None]],
                 complete: Optional[Callable[[], None]]):
        self.next = next
        self.error = error
        self.complete = complete


def seconds(timeout: Any) -> Optional[float]:
    """A timeout as the standard library takes it: None for no timeout, which infinity means too.

    Infinity would overflow the lock waits underneath, and a negative or NaN
    timeout is a mistake better raised here than as an odd error later.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"a timeout is a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"a timeout is a number of seconds at least 0, or None, not {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


def remote_error(message: Dict[str, Any]) -> RemoteError:
    """The :class:`RemoteError` of an error message, its ``data`` (bytes in place) included."""
    return RemoteError(message["error"], message.get("code", 500), message.get("type", "Error"),
                       message.get("traceback"), data=message.get("data"))


def safely(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("listener %r failed", fn)
