"""Igor's message shapes: parse what clients send, build what the server sends.

Pure functions on strings and dicts, with no sockets and no threads, so every
rule of docs/protocol.md can be tested with plain values. Turning the
server's dicts into the bytes a frame carries is :mod:`igor.encoding`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

from .exceptions import IgorError, ProtocolError

__all__ = [
    "StreamId",
    "Call",
    "Cancel",
    "Input",
    "EndInput",
    "ProcessInput",
    "Reply",
    "Message",
    "MAX_NAME",
    "parse_message",
    "parse_object",
    "binary_cost",
    "parsed_cost",
    "sniff_stream_id",
    "sniff_target",
    "short",
    "data_message",
    "hello_message",
    "error_message",
    "close_message",
    "for_protocol",
    "push_message",
    "call_message",
    "call_cancel_message",
]

StreamId = Union[str, int]

#: The longest action, process, stream or client name (in characters) a client may send.
MAX_NAME = 256


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


@dataclass(frozen=True)
class Input:
    """A client sends ``data`` into its open stream ``stream_id``."""

    stream_id: StreamId
    data: Any


@dataclass(frozen=True)
class EndInput:
    """A client will send no more input into its stream ``stream_id``."""

    stream_id: StreamId


@dataclass(frozen=True)
class ProcessInput:
    """A client sends ``data`` to the inbox of background process ``process_id``."""

    process_id: str
    data: Any


@dataclass(frozen=True)
class Reply:
    """A client answers the server's call ``call_id``: ``data``, or an ``error`` message.

    With ``error`` set, ``data`` is what the error carried (None when nothing).
    """

    call_id: int
    data: Any = None
    error: Optional[str] = None
    code: int = 500
    type: str = "Error"


Message = Union[Call, Cancel, Input, EndInput, ProcessInput, Reply]


def is_valid_id(value: Any) -> bool:
    """Stream and client ids are non-empty strings or integers (not booleans)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and 0 < len(value) <= MAX_NAME)


def parse_message(text: str) -> Message:
    """Turn one text frame from a client into one of the :data:`Message` kinds.

    Raises :class:`ProtocolError` (400) naming what is wrong; its ``stream_id``
    is set when the message had a usable one, so the error can go on that
    stream.
    """
    try:
        message = _loads(text)
    except RecursionError:
        # A deeply nested document exhausts the parser's stack; it is the
        # client's fault, not the server's.
        raise ProtocolError("message is nested too deeply") from None
    except _NotJson as exc:
        raise ProtocolError(str(exc), sniff_stream_id(text)) from None
    except ValueError:
        raise ProtocolError("message is not valid JSON") from None
    return parse_object(message)


def parse_object(message: Any) -> Message:
    """:func:`parse_message` for a message already decoded: a JSON value, or a binary message's head and values."""
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    if "callId" in message:
        return _parse_reply(message)
    if "process" in message and "streamId" not in message:
        process_id = message["process"]
        if not isinstance(process_id, str) or not process_id:
            raise ProtocolError("process must be a non-empty string")
        if len(process_id) > MAX_NAME:
            raise ProtocolError(f"process name is {len(process_id)} characters long, over {MAX_NAME}")
        return ProcessInput(process_id, message.get("data"))
    if "streamId" not in message:
        raise ProtocolError("message has no streamId")
    stream_id = message["streamId"]
    if not is_valid_id(stream_id):
        if isinstance(stream_id, str) and len(stream_id) > MAX_NAME:
            raise ProtocolError(f"streamId is {len(stream_id)} characters long, over {MAX_NAME}")
        raise ProtocolError("streamId must be a non-empty string or an integer")

    if ("action" in message) + ("cancel" in message) + ("end" in message) > 1:
        kinds = [key for key in ("action", "cancel", "end") if key in message]
        raise ProtocolError(f"a message is one of a call, a cancel or an end of input, not {' and '.join(kinds)}",
                            stream_id)
    if "cancel" in message:
        if message["cancel"] is not True:
            raise ProtocolError("cancel must be true", stream_id)
        return Cancel(stream_id)
    if "end" in message:
        if message["end"] is not True:
            raise ProtocolError("end must be true", stream_id)
        return EndInput(stream_id)
    if "action" not in message:
        if "data" in message:
            return Input(stream_id, message["data"])
        raise ProtocolError("message has neither action, data, end nor cancel", stream_id)
    action = message["action"]
    if not isinstance(action, str) or not action:
        raise ProtocolError("action must be a non-empty string", stream_id)
    if len(action) > MAX_NAME:
        raise ProtocolError(f"action name is {len(action)} characters long, over {MAX_NAME}", stream_id)
    return Call(stream_id, action, message.get("data"))


def _loads(text: str) -> Any:
    """``json.loads(text)``, minus its Python layers for a message that is one JSON value and nothing else.

    Not orjson: it reads an integer past 64 bits as a float, and for a large
    string it is slower here (its scratch buffer is mapped afresh each call,
    and a page fault costs more than json's copying).
    """
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):
        end = -1  # json.loads below gives the error, or the answer for leading whitespace
    if end == len(text):
        return value
    return _DECODER.decode(text)


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # json.loads takes NaN and Infinity, which no JSON parser elsewhere
    # (JavaScript's included) reads back, and json.dumps then refuses to write.
    raise _NotJson(f"{name} is not a JSON value (JSON has no NaN or Infinity)")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_scan = _DECODER.scan_once

# What parsing may cost beyond the text itself, per value it can hold: an
# empty dict is 64 bytes and its place in a list 8, a one-key dict about 190
# for its 8 characters; 96 per opening bracket or comma bounds every shape
# measured (docs/protocol.md, "Memory").
_COST_PER_VALUE = 96


def parsed_cost(text: str) -> int:
    """An upper bound of the bytes :func:`parse_message` makes of ``text``, found without parsing it.

    The wire size alone would let a client make the server hold 24 times
    what it sent (``[{},{},...]``): the bound counts the values the text can
    hold (every ``{``, ``[`` and ``,``; those inside strings only make it
    higher), and the characters at four bytes each unless the text is
    ASCII without escapes, whose strings are one byte a character.
    """
    width = 1 if text.isascii() and "\\u" not in text else 4
    return width * len(text) + _COST_PER_VALUE * (text.count("{") + text.count("[") + text.count(","))


def binary_cost(payload: Any) -> int:
    """:func:`parsed_cost` of a binary message: its values' bytes, and the parsed cost of its head.

    ``payload``: bytes, or the parts the server read it in (:class:`~igor.binary.Parts`). Found from
    the head's length alone; a malformed one counts its length.
    """
    if len(payload) < 4:
        return len(payload)
    length = int.from_bytes(payload[:4], "big")
    if 4 + length > len(payload):
        return len(payload)  # malformed: refused as such, for what it is
    head = str(payload[4:4 + length], "utf-8", "replace")
    return parsed_cost(head) + len(payload) - 4 - length


_LEADING_KEY = re.compile(r'\s*\{\s*"(streamId|process)"\s*:\s*(-?[0-9]{1,19}|"[^"\\]{1,256}")\s*[,}]')


def sniff_stream_id(text: str) -> Optional[StreamId]:
    """The ``streamId`` a message starts with, read without parsing the rest (which may be too costly to)."""
    key, value = sniff_target(text)
    return value if key == "streamId" else None


def sniff_target(text: str) -> Tuple[Optional[str], Optional[StreamId]]:
    """``("streamId", id)`` or ``("process", name)`` when a message's first key is one of them, else Nones."""
    match = _LEADING_KEY.match(text, 0, 400)
    if match is None:
        return None, None
    key, token = match.groups()
    if token.startswith('"'):
        return key, token[1:-1]
    return (key, int(token)) if key == "streamId" else (None, None)


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for log lines and errors about what a client sent."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_reply(message: dict) -> Reply:
    call_id = message["callId"]
    if isinstance(call_id, bool) or not isinstance(call_id, int) or call_id <= 0:
        raise ProtocolError("callId must be a positive integer")
    if "error" not in message:
        return Reply(call_id, message.get("data"))
    error, code, kind = message["error"], message.get("code", 500), message.get("type", "Error")
    if not isinstance(error, str):
        raise ProtocolError("error must be a string")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProtocolError("code must be an integer")
    if not isinstance(kind, str):
        raise ProtocolError("type must be a string")
    return Reply(call_id, message.get("data"), error or "Error", code, kind or "Error")


def for_protocol(message: dict, protocol: int) -> dict:
    """``message`` as a client of ``protocol`` reads it: under protocol 1 every message has a ``data`` key.

    The original Igor sent ``"data": null`` on closes and errors, and code
    written for it reads ``message['data']`` of whatever arrives.
    """
    if protocol < 2 and "data" not in message:
        return {**message, "data": None}
    return message


def hello_message(config: Any) -> bytes:
    """Protocol 3's first message: the figures of ``config`` (a Config) a client chunks and paces its input by."""
    return b'{"hello":{"protocol":3,"max_message_size":%d,"inbox_size":%d,"input_window":%d}}' % (
        config.max_message_size, config.inbox_size, config.input_window)


def data_message(stream_id: StreamId, data: Any) -> dict:
    return {"streamId": stream_id, "data": data}


def error_message(
    error: Union[BaseException, str],
    stream_id: Optional[StreamId] = None,
    code: Optional[int] = None,
    traceback: Optional[str] = None,
    data: Any = None,
) -> dict:
    """Describe ``error`` for the wire: message, numeric code, type name, and ``data`` when there is any.

    ``data`` defaults to an :class:`IgorError`'s own ``data``; None leaves the key out.
    """
    if data is None and isinstance(error, IgorError):
        data = error.data
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
    if data is not None:
        message["data"] = data
    return message


def close_message(stream_id: StreamId, cancelled: bool = False) -> dict:
    message: dict = {"streamId": stream_id, "close": True}
    if cancelled:
        message["cancelled"] = True
    return message


def push_message(process_id: StreamId, action: str, data: Any) -> dict:
    return {"streamId": process_id, "action": action, "data": data}


def call_message(call_id: int, action: str, data: Any) -> dict:
    """The server calls the client's exposed function ``action``."""
    return {"callId": call_id, "action": action, "data": data}


def call_cancel_message(call_id: int) -> dict:
    """The server stopped waiting for its call ``call_id``."""
    return {"callId": call_id, "cancel": True}


# -- what a client sends --------------------------------------------------------
# The inverse of parse_message, for the Python client: it builds its messages
# here, beside the parser, and needs no other server module.

#: The subprotocol a client asks for first: protocol 3, binary values and paced input.
CLIENT_SUBPROTOCOL = "igor.v3"
#: Every subprotocol the client offers, best first: a server from before protocol 3 picks igor.v2.
CLIENT_SUBPROTOCOLS = ("igor.v3", "igor.v2")

__all__ += [
    "CLIENT_SUBPROTOCOL",
    "CLIENT_SUBPROTOCOLS",
    "client_call_message",
    "client_cancel_message",
    "client_input_message",
    "client_end_message",
    "client_process_input_message",
    "client_reply_message",
    "client_reply_error_message",
]


def client_call_message(stream_id: StreamId, action: str, data: Any = None) -> dict[str, Any]:
    """Start ``action`` on the new stream ``stream_id`` (parsed as :class:`Call`)."""
    return {"streamId": stream_id, "action": action, "data": data}


def client_cancel_message(stream_id: StreamId) -> dict[str, Any]:
    """Ask the server to stop stream ``stream_id`` (parsed as :class:`Cancel`)."""
    return {"streamId": stream_id, "cancel": True}


def client_input_message(stream_id: StreamId, data: Any) -> dict[str, Any]:
    """Send ``data`` into the running call ``stream_id`` (parsed as :class:`Input`)."""
    return {"streamId": stream_id, "data": data}


def client_end_message(stream_id: StreamId) -> dict[str, Any]:
    """No more input comes for stream ``stream_id`` (parsed as :class:`EndInput`)."""
    return {"streamId": stream_id, "end": True}


def client_process_input_message(process_id: str, data: Any) -> dict[str, Any]:
    """Put ``data`` in the inbox of process ``process_id`` (parsed as :class:`ProcessInput`)."""
    return {"process": process_id, "data": data}


def client_reply_message(call_id: int, data: Any) -> dict[str, Any]:
    """Answer the server's call ``call_id`` with ``data`` (parsed as :class:`Reply`)."""
    return {"callId": call_id, "data": data}


def client_reply_error_message(call_id: int, error: str, code: int = 500, type: str = "Error",
                               data: Any = None) -> dict[str, Any]:
    """Answer the server's call ``call_id`` with an error (parsed as a :class:`Reply` with ``error`` set).

    ``data`` is the value the error carries; None leaves the key out, as in the server's errors.
    """
    message: dict[str, Any] = {"callId": call_id, "error": error, "code": code, "type": type}
    if data is not None:
        message["data"] = data
    return message


def client_introduce_data(client_id: StreamId, resume: Optional[str] = None) -> dict[str, Any]:
    """The data of an ``introduce_self`` call: the id to take, and the secret that claims its parked session."""
    data: dict[str, Any] = {"client_id": client_id}
    if resume is not None:
        data["resume"] = resume
    return data


__all__ += ["client_introduce_data"]
