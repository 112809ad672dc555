"""Igor's exceptions: one small hierarchy, each name saying what happened.

Errors that travel on the wire carry the numeric ``code`` the protocol gives
them (see docs/protocol.md), so the server and the clients map between a
message and an exception in one place.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IgorError",
    "ProtocolError",
    "UnknownAction",
    "StreamIdInUse",
    "ClientIdTaken",
    "StreamClosed",
    "StreamCancelled",
    "UnknownClient",
    "ConfigError",
    "RemoteError",
    "ConnectionClosed",
    "BackendReloaded",
    "CallTimeout",
    "ConnectionFailed",
    "TooManyStreams",
    "InboxFull",
    "OverBudget",
    "BinaryUnsupported",
    "UnknownStream",
    "UnknownProcess",
    "UnknownCall",
    "InputEnded",
    "InputTimeout",
]


class IgorError(Exception):
    """Base class of every exception Igor raises on purpose.

    ``code`` is the protocol's error code used when the error is sent to a
    client (500 unless a subclass says otherwise). ``data`` is a value the
    error carries to the client (JSON, binary anywhere in it under protocol
    3): ``raise IgorError("bad frame", data={"frame": raw})``. None, the
    default, sends none.
    """

    code = 500

    def __init__(self, *args: Any, data: Any = None):
        super().__init__(*args)
        self.data = data


class ProtocolError(IgorError):
    """A client sent a message that does not follow the protocol (400).

    ``stream_id`` is the message's stream when it had a usable one, so the
    error can be sent on that stream.
    """

    code = 400

    def __init__(self, message: str, stream_id: str | int | None = None, *, data: Any = None):
        super().__init__(message, data=data)
        self.stream_id = stream_id


class UnknownAction(IgorError):
    """A call named an action the server does not have (404)."""

    code = 404


class StreamIdInUse(IgorError):
    """A call reused the id of one of the client's open streams (409)."""

    code = 409


class ClientIdTaken(IgorError):
    """``introduce_self`` asked for an id another connected client has (409)."""

    code = 409


class TooManyStreams(IgorError):
    """A call would take the client past ``max_streams`` open calls (429); the connection stays."""

    code = 429


class InboxFull(IgorError):
    """Input arrived for a stream or process whose inbox is full (429)."""

    code = 429


class OverBudget(IgorError):
    """A client's message would make the server hold more of its data than ``max_client_memory`` allows (429).

    What counts is what the client's running calls, unread input and unread
    process messages hold once parsed, not their size on the wire.
    """

    code = 429


class BinaryUnsupported(IgorError, TypeError):
    """Binary data for a client of protocol 1 or 2, which cannot carry it (415): it must connect with ``igor.v3``."""

    code = 415


class UnknownStream(IgorError):
    """Input named a stream that is not open for input (404)."""

    code = 404


class UnknownProcess(IgorError, LookupError):
    """Input named a process that does not exist or takes no input (404)."""

    code = 404


class UnknownCall(IgorError):
    """A client answered a server call that is not pending (404)."""

    code = 404


class InputEnded(IgorError):
    """``out.receive()`` was called after the client ended its input."""


class InputTimeout(IgorError, TimeoutError):
    """``out.receive(timeout)`` saw no input within its timeout."""


class StreamClosed(IgorError):
    """Something was sent on a stream that has already closed."""


class StreamCancelled(StreamClosed):
    """The stream was cancelled by its client, or the client went away.

    Raised by ``out.send`` so that a handler stops at its next send; the
    server catches it quietly.
    """


class UnknownClient(IgorError, LookupError):
    """A process sent to a client id that is not connected."""


class ConfigError(IgorError, ValueError):
    """The server's configuration is invalid; raised at construction or start."""


class RemoteError(IgorError):
    """The server answered a call with an error (raised by the Python client).

    ``code`` and ``type`` are the ones on the wire; ``traceback`` is set only
    when the server runs with ``debug`` on; ``data`` is the value the error
    carried (bytes in place, as in any message), None when it carried none.
    """

    def __init__(self, message: str, code: int = 500, type: str = "Error", traceback: str | None = None, *,
                 data: Any = None):
        super().__init__(message, data=data)
        self.code = code
        self.type = type
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type} ({self.code}): {self.args[0]}"


class ConnectionClosed(IgorError, ConnectionError):
    """The connection ended while a call was waiting for its answer.

    Raised by the Python client, ``code`` and ``reason`` are the WebSocket
    close code and reason it received: 1005 when the close frame had no code,
    1006 when the connection dropped with no close frame (as RFC 6455 and
    browsers name those cases). Raised by the server (the client of a
    ``call_client`` went away), ``code`` keeps IgorError's 500: the code the
    error has on the wire if a handler lets it through.
    """

    def __init__(self, message: str, code: int | None = None, reason: str = ""):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.reason = reason


class BackendReloaded(ConnectionClosed):
    """The server closed the connection with code 1012 (Service Restart), as ``igor dev`` does on a reload.

    The call did not finish. A client made with ``reconnect`` connects again
    at once, to the backend that took over, and gets its session back.
    """


class CallTimeout(IgorError, TimeoutError):
    """A call did not finish within its timeout."""


class ConnectionFailed(IgorError, ConnectionError):
    """The client could not connect; ``status`` is the HTTP status when the server answered one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
