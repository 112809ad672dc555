"""Igor's message shapes: parse what clients send, build what the server sends.

Pure functions on strings and dicts, with no sockets and no threads, so every
rule of docs/protocol.md can be tested with plain values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Union

from .exceptions import IgorError, ProtocolError

__all__ = [
    "StreamId",
    "Call",
    "Cancel",
    "parse_message",
    "encode",
    "data_message",
    "error_message",
    "close_message",
    "push_message",
]

StreamId = Union[str, int]


@dataclass(frozen=True)
class Call:
    """A client asks for ``action`` on a new stream ``stream_id``."""

    stream_id: StreamId
    action: str
    data: Any = None


@dataclass(frozen=True)
class Cancel:
    """A client asks the server to stop its stream ``stream_id``."""

    stream_id: StreamId


def is_valid_id(value: Any) -> bool:
    """Stream and client ids are non-empty strings or integers (not booleans)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value != "")


def parse_message(text: str) -> Union[Call, Cancel]:
    """Turn one text frame from a client into a :class:`Call` or :class:`Cancel`.

    Raises :class:`ProtocolError` (400) naming what is wrong; its ``stream_id``
    is set when the message had a usable one, so the error can go on that
    stream.
    """
    try:
        message = json.loads(text)
    except ValueError:
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    if "streamId" not in message:
        raise ProtocolError("message has no streamId")
    stream_id = message["streamId"]
    if not is_valid_id(stream_id):
        raise ProtocolError("streamId must be a non-empty string or an integer")

    if "cancel" in message:
        if "action" in message:
            raise ProtocolError("a message is a call or a cancel, not both", stream_id)
        if message["cancel"] is not True:
            raise ProtocolError("cancel must be true", stream_id)
        return Cancel(stream_id)

    action = message.get("action")
    if action is None:
        raise ProtocolError("message has neither action nor cancel", stream_id)
    if not isinstance(action, str) or not action:
        raise ProtocolError("action must be a non-empty string", stream_id)
    return Call(stream_id, action, message.get("data"))


def encode(message: dict) -> bytes:
    """Serialise a server message to UTF-8 JSON; raises ``ValueError`` for non-JSON values.

    NaN and infinities are refused because JavaScript's ``JSON.parse`` cannot
    read them back. Lone surrogates (which ``json.loads`` accepts from a
    client) cannot be UTF-8: such a message is sent with ASCII escapes.
    """
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"value is not JSON serialisable: {exc}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("ascii")


def data_message(stream_id: StreamId, data: Any) -> dict:
    return {"streamId": stream_id, "data": data}


def error_message(
    error: Union[BaseException, str],
    stream_id: Optional[StreamId] = None,
    code: Optional[int] = None,
    traceback: Optional[str] = None,
) -> dict:
    """Describe ``error`` for the wire: message, numeric code and type name."""
    if isinstance(error, BaseException):
        # str(KeyError('k')) is "'k'": a KeyError's message is its argument.
        text = str(error.args[0]) if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
        text = text or type(error).__name__
        kind = type(error).__name__
        default_code = error.code if isinstance(error, IgorError) else 500
    else:
        text, kind, default_code = str(error), "Error", 500
    message: dict = {} if stream_id is None else {"streamId": stream_id}
    message.update(error=text, code=default_code if code is None else code, type=kind)
    if traceback is not None:
        message["traceback"] = traceback
    return message


def close_message(stream_id: StreamId, cancelled: bool = False) -> dict:
    message: dict = {"streamId": stream_id, "close": True}
    if cancelled:
        message["cancelled"] = True
    return message


def push_message(process_id: StreamId, action: str, data: Any) -> dict:
    return {"streamId": process_id, "action": action, "data": data}
