"""Server messages to bytes: the JSON encoding, fast where it counts, the same answer as ``json.dumps`` always.

The other half of :mod:`igor.protocol`, which says what the messages are:
here a message dict becomes the UTF-8 JSON a frame carries, with the
application's ``json_default``, orjson for long strings when it is
installed, and large values kept as pieces rather than copied together.
"""

from __future__ import annotations

import json
import logging
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, Callable, Optional, Tuple, Union

from .binary import Binary, as_view, is_binary, pack, split
from .exceptions import BinaryUnsupported
from .protocol import StreamId, for_protocol

try:  # the optional "speedups" extra
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

# Past this size the standard library's JSON is the slowest part of a reply
# (about 1.2 ns a byte to escape a string), and orjson writes a long string,
# where it gives the very same answer. A value this large is also sent as
# pieces rather than joined (see Payload).
_LARGE = 64 * 1024

__all__ = ["Payload", "encode", "make_encoder", "MessageEncoder", "with_close"]

log = logging.getLogger("igor")

#: A server message's UTF-8 JSON: whole, or for a large value in pieces
#: (opening, value, closing brace) that the connection writes with one
#: gathering ``sendmsg``. Joining them would copy the value, and a 10 MB copy
#: into fresh memory costs more in page faults than the copying itself.
#: A message with binary values (protocol 3) is a :class:`~igor.binary.Binary`: head and buffers.
Payload = Union[bytes, Tuple[bytes, ...], Binary]


def encode(message: dict, default: Optional[Callable[[Any], Any]] = None) -> bytes:
    """Serialise a server message to UTF-8 JSON; raises ``ValueError`` for non-JSON values.

    ``default`` works as in ``json.dumps``: it is called for each object JSON
    cannot hold and returns something it can (or raises ``TypeError``).
    NaN and infinities are refused because JavaScript's ``JSON.parse`` cannot
    read them back. Lone surrogates (which ``json.loads`` accepts from a
    client) cannot be UTF-8: such a message is sent with ASCII escapes.
    """
    payload = _encode(message, _PLAIN if default is None else _json_encoder(default), default)
    return payload if type(payload) is bytes else b"".join(payload)


def make_encoder(default: Optional[Callable[[Any], Any]] = None) -> MessageEncoder:
    """:func:`encode` with the application's ``json_default`` bound in."""
    return MessageEncoder(default)


class MessageEncoder:
    """Server messages to UTF-8 JSON with one ``json_default``; calling it is :func:`encode`.

    :meth:`data` is the hot path of a stream's values: the message's opening
    (``{"streamId":S``) is encoded once per stream, not once per value.

    ``protocol`` says who reads the message. Under protocol 3 a binary value
    (bytes, bytearray, memoryview, a C-contiguous buffer) makes the message a
    :class:`~igor.binary.Binary`; the encoder notices one through its
    ``default`` hook, which JSON calls only for values it cannot write, so a
    message without binary costs nothing more. Under protocols 1 and 2 a
    binary value the application's ``json_default`` does not turn into JSON
    raises :class:`~igor.BinaryUnsupported`.
    """

    def __init__(self, default: Optional[Callable[[Any], Any]] = None):
        self.default = default
        self._json = _PLAIN if default is None else _json_encoder(default)
        self._json3 = _json_encoder(_binary_hook(default))

    def __call__(self, message: dict, protocol: int = 2) -> Payload:
        if protocol >= 3:
            try:
                return _encode(message, self._json3, self.default)
            except _HasBinary:
                head, found = self._split(message.get("data"))
                return pack(self._value({**message, "data": head}), found, self._value)
        try:
            return _encode(message, self._json, self.default)
        except ValueError:
            self._refuse_binary(message.get("data"), protocol)
            raise

    def for_client(self, message: dict, protocol: int) -> Payload:
        """``message`` encoded as a client of ``protocol`` reads it (see :func:`~igor.protocol.for_protocol`).

        An error always reaches its client: one whose ``data`` cannot go (binary for a client of
        protocol 1 or 2, a value JSON cannot hold) goes without it, and its text and the log say
        why. Any other message raises as calling the encoder does.
        """
        try:
            return self(for_protocol(message, protocol), protocol)
        except Exception as exc:
            if "error" not in message or "data" not in message:
                raise
            why = (f"protocol {protocol} cannot carry binary data; connect with igor.v3"
                   if isinstance(exc, BinaryUnsupported) else str(exc) or type(exc).__name__)
        log.warning("error %r is sent without its data: %s", message["error"], why)
        bare = {key: value for key, value in message.items() if key != "data"}
        bare["error"] = f"{message['error']} [its data was left out: {why}]"
        return self(for_protocol(bare, protocol), protocol)

    def opening(self, stream_id: StreamId) -> bytes:
        """``{"streamId":S``: how every message of stream ``S`` starts, encoded once per stream."""
        if type(stream_id) is int:
            return b'{"streamId":%d' % stream_id
        return b'{"streamId":' + _encode_value(stream_id, self._json, self.default)

    def data(self, prefix: bytes, value: Any, protocol: int = 2) -> Payload:
        """The data message ``prefix`` (an :meth:`opening` and ``,"data":``) begins, carrying ``value``."""
        if protocol >= 3:
            try:
                return _around(prefix, _encode_value(value, self._json3, self.default))
            except _HasBinary:
                head, found = self._split(value)
                return pack(prefix + self._value(head) + b"}", found, self._value)
        try:
            return _around(prefix, _encode_value(value, self._json, self.default))
        except ValueError:
            self._refuse_binary(value, protocol)
            raise

    def _value(self, value: Any) -> bytes:
        return _encode_value(value, self._json, self.default)

    def _split(self, data: Any) -> Tuple[Any, list]:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return None, [(["data"], as_view(data))]  # a bare chunk: the usual binary message
        return split(data, self.default, ["data"])

    def _refuse_binary(self, data: Any, protocol: int) -> None:
        """Raise BinaryUnsupported if ``data``, which JSON could not write, holds binary values."""
        default = self.default

        def lenient(value: Any) -> Any:
            try:
                return None if default is None else default(value)
            except Exception:
                return None  # the application's default fails on it: that error is the one to tell

        try:
            found = is_binary(data) or split(data, lenient)[1]
        except (TypeError, ValueError):
            found = True  # a non-contiguous buffer, or over the entries' bound: binary all the same
        except RecursionError:
            return
        if found:
            raise BinaryUnsupported(f"protocol {protocol} cannot carry binary data; connect with igor.v3 "
                                    "(the Python and JavaScript clients of this version do)") from None


class _HasBinary(Exception):
    """Raised by the encoder's ``default`` hook at the first binary value: the message is sent as binary."""


def _binary_hook(default: Optional[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def hook(value: Any) -> Any:
        if is_binary(value):
            raise _HasBinary
        if default is None:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        return default(value)

    return hook


_Encode = Callable[[Any], str]


def _json_encoder(default: Optional[Callable[[Any], Any]]) -> _Encode:
    """What ``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)`` does.

    json's own C encoder, made once: ``JSONEncoder.encode`` makes it afresh
    for every message, which costs more than encoding a small one. With no
    markers it does not look for circular references: a value that holds
    itself ends in a RecursionError, which :func:`_encode_value` reports.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)
    if c_make_encoder is None:  # pragma: no cover - Pythons without the _json accelerator
        return encoder.encode
    encode_chunks = c_make_encoder(None, encoder.default, encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(encode_chunks(value, 0))


_PLAIN = _json_encoder(None)


def _encode(message: dict, encoder: _Encode, default: Optional[Callable[[Any], Any]]) -> Payload:
    data = message.get("data")
    if type(data) is str and len(data) > _LARGE and len(message) > 1:
        # A long string, as a big answer usually is: the rest of the message is tiny.
        rest = {key: value for key, value in message.items() if key != "data"}
        return _around(_encode_value(rest, encoder, default)[:-1] + b',"data":', _encode_value(data, encoder, default))
    return _encode_value(message, encoder, default)


def with_close(payload: Payload) -> Payload:
    """A stream's last message (data or error) carrying ``"close":true`` as well: protocol 2's one message for two."""
    if type(payload) is Binary:
        return payload.with_close()
    if type(payload) is bytes:
        return payload[:-1] + b',"close":true}'
    return (*payload[:-1], payload[-1][:-1] + b',"close":true}')


def _around(prefix: bytes, value: bytes) -> Payload:
    """``prefix``, ``value`` and the closing brace: joined when small, as pieces when large."""
    if len(value) > _LARGE:
        return prefix, value, b"}"
    return prefix + value + b"}"


def _encode_value(value: Any, encoder: _Encode, default: Optional[Callable[[Any], Any]]) -> bytes:
    if orjson is not None and type(value) is str and len(value) > _LARGE:
        # orjson escapes a long string several times faster than json.
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass  # lone surrogates: the standard path below decides
    try:
        text = encoder(value)
    except TypeError as exc:
        hint = "" if default is not None else " (a json_default in the config can encode your own types)"
        raise ValueError(f"value is not JSON serialisable: {exc}{hint}") from None
    except RecursionError:
        raise ValueError("value is nested too deeply (or refers to itself) to be JSON") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=default).encode("ascii")
