"""WebSocket frames (RFC 6455 section 5): build, unmask, and parse them.

Sans-I/O: :class:`FrameParser` takes the bytes a client sent, in chunks of
any size, and returns the events they complete; it never touches a socket,
so every framing rule is tested with plain bytes. The connection only moves
bytes in and out.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from .binary import Binary, Parts

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

# Close codes the server sends (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

# Codes a peer may put in its own close frame; others mean a broken peer.
_RESERVED_CLOSE_CODES = {1004, 1005, 1006, 1015}


class FrameError(Exception):
    """The peer broke the framing rules; ``close_code`` says how to answer."""

    def __init__(self, close_code: int, reason: str):
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


#: A frame as the connection writes it: whole, or in pieces (header, then
#: the payload's parts) gathered by one ``sendmsg`` rather than joined.
Frame = Union[bytes, Tuple[bytes, ...]]

# Past this size a payload is not copied behind its header; below it one
# buffer is cheaper than a gathered write.
_GATHER = 64 * 1024


def build_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unfragmented, unmasked frame, as a server sends it."""
    return _header(opcode, len(payload)) + payload


def _header(opcode: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def text_frame(payload: Union[bytes, Sequence[bytes], Binary]) -> Frame:
    """The frame of a message: text for UTF-8 JSON (whole or in parts), binary for a :class:`~igor.binary.Binary`.

    Built once however many clients get it. A large payload is not copied:
    the frame is its header followed by the payload's own parts (for a
    binary message, the caller's buffers themselves).
    """
    if type(payload) is Binary:
        pieces = payload.pieces()
        size = sum(len(piece) for piece in pieces)
        if size < _GATHER:
            return build_frame(OP_BINARY, b"".join(pieces))
        return (_header(OP_BINARY, size) + pieces[0], *pieces[1:])
    if type(payload) is bytes:
        if len(payload) < _GATHER:
            return build_frame(OP_TEXT, payload)
        return _header(OP_TEXT, len(payload)), payload
    return (_header(OP_TEXT, sum(len(part) for part in payload)), *payload)


def frame_size(frame: Frame) -> int:
    """Bytes ``frame`` puts on the wire."""
    return sum(len(part) for part in frame) if type(frame) is tuple else len(frame)


def build_close(code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control payload."""
    encoded = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return build_frame(OP_CLOSE, struct.pack("!H", code) + encoded)


# _XOR[k] maps every byte b to b ^ k, for bytes.translate.
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]
_NUMPY_THRESHOLD = 64 * 1024
_numpy = None  # the optional "speedups" extra: imported at the first large message, not at start


def _load_numpy() -> object:
    # numpy adds about 14 MiB to a process: a server that never gets a large
    # message should not pay for it. False once it is known to be missing.
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError:  # pragma: no cover - depends on the environment
            numpy = False
        _numpy = numpy
    return _numpy


def unmask(buffer: bytearray, mask: bytes) -> None:
    """XOR ``buffer`` in place with the repeating 4-byte ``mask``.

    websocket-server does this with a per-byte Python loop (about 70 ns a
    byte: 0.7 s for 10 MB) into a new bytearray. Here it runs in C and in
    place: for large buffers with numpy (the ``speedups`` extra) as one
    vectorised XOR of 32-bit words, else through :func:`unmask_translate`.
    """
    length = len(buffer)
    numpy = _load_numpy() if length >= _NUMPY_THRESHOLD else False
    if not numpy:
        unmask_translate(buffer, mask)
        return
    words = numpy.frombuffer(buffer, dtype=numpy.uint32, count=length // 4)
    numpy.bitwise_xor(words, numpy.frombuffer(mask, dtype=numpy.uint32)[0], out=words)
    for index in range(length - length % 4, length):
        buffer[index] ^= mask[index % 4]


def unmasked(chunk: memoryview, mask: bytes) -> Union[bytearray, memoryview]:
    """:func:`unmask` into a new buffer: for a large chunk with numpy, one XOR pass from ``chunk`` (no copy first)."""
    numpy = _load_numpy() if len(chunk) >= _NUMPY_THRESHOLD else False
    if not numpy:
        data = bytearray(chunk)
        unmask(data, mask)
        return data
    whole, out = len(chunk) - len(chunk) % 4, numpy.empty(len(chunk), dtype=numpy.uint8)
    numpy.bitwise_xor(numpy.frombuffer(chunk, dtype=numpy.uint32, count=whole // 4),
                      numpy.frombuffer(mask, dtype=numpy.uint32)[0], out=out[:whole].view(numpy.uint32))
    for index in range(whole, len(chunk)):
        out[index] = chunk[index] ^ mask[index % 4]
    return memoryview(out)


def unmask_translate(buffer: bytearray, mask: bytes) -> None:
    """:func:`unmask` with the standard library only.

    Every fourth byte shares a mask byte, so four strided slices are each
    translated through a 256-byte table (about 40 times faster than a
    per-byte loop). Short buffers use one big-integer XOR instead.
    """
    length = len(buffer)
    if length < 64:
        key = (mask * (length // 4 + 1))[:length]
        buffer[:] = (int.from_bytes(buffer, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")
        return
    for offset in range(4):
        buffer[offset::4] = buffer[offset::4].translate(_XOR[mask[offset]])


def parse_header(first: int, second: int) -> Tuple[bool, int, int]:
    """Check the first two header bytes of a client frame.

    Returns ``(fin, opcode, length_code)``; raises :class:`FrameError` for
    reserved bits, unknown opcodes, unmasked frames and malformed control
    frames, which all close the connection with 1002.
    """
    fin = bool(first & 0x80)
    opcode = first & 0x0F
    if first & 0x70:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
    if not second & 0x80:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    length_code = second & 0x7F
    if opcode in CONTROL_OPCODES and (not fin or length_code > 125):
        raise FrameError(CLOSE_PROTOCOL_ERROR, "control frames must be whole and at most 125 bytes")
    return fin, opcode, length_code


def parse_close(payload: bytes) -> Tuple[Optional[int], str]:
    """Read a peer's close frame payload: ``(code or None, reason)``."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close payload of one byte")
    (code,) = struct.unpack("!H", payload[:2])
    if code < 1000 or code in _RESERVED_CLOSE_CODES or 1016 <= code < 3000 or code >= 5000:
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason


# -- the parser ----------------------------------------------------------------


@dataclass(frozen=True)
class TextMessage:
    """A whole text message, reassembled from its fragments and decoded."""

    text: str


@dataclass(frozen=True)
class BinaryMessage:
    """A whole binary message (protocol 3), reassembled and unmasked."""

    payload: Parts


@dataclass(frozen=True)
class Ping:
    payload: bytes


@dataclass(frozen=True)
class Pong:
    payload: bytes


@dataclass(frozen=True)
class Close:
    """The peer's close frame: its code (None when it sent none) and reason."""

    code: Optional[int]
    reason: str


#: What :meth:`FrameParser.feed` returns; a :class:`FrameError` comes last, after the events before the fault.
Event = Union[TextMessage, BinaryMessage, Ping, Pong, Close, FrameError]

_HEADER, _PAYLOAD, _CLOSED = range(3)
_MAX_HEADER = 14


class FrameParser:
    """Client frames in, :data:`Event` values out, with every RFC 6455 rule of a server.

    :meth:`feed` takes bytes as they arrive and returns the events they
    complete, the last of which may be a :class:`FrameError` with the close
    code to answer.
    It holds at most one frame header, a control frame's payload and the
    decoded text of the message being reassembled: a data frame's bytes are
    unmasked and decoded as they arrive, so no buffer is ever allocated from
    the length a header claims, nor grown to hold a large frame whole. A message may not
    exceed ``max_size`` bytes, nor ``max_fragments`` frames: a peer sending
    endless empty continuations is as much over the limit as one sending a
    huge payload. Control frames may come between fragments; UTF-8 is checked
    across fragment boundaries as each fragment arrives.
    """

    def __init__(self, max_size: int, max_fragments: int = 1024, binary: bool = False):
        self.max_size = max_size
        #: Protocol 3 takes binary messages; before it they close the connection with 1003.
        self.binary = binary
        self._binary: List[Union[bytearray, memoryview]] = []
        self.max_fragments = max_fragments
        self._state = _HEADER
        self._head = bytearray()
        self._payload = bytearray()
        self._remaining = 0
        self._length = 0
        self._fin = False
        self._opcode = 0
        self._mask = b""
        # The message being reassembled: its opcode (0: none), size, frame count, decoded parts.
        self._message_opcode = 0
        self._message_size = 0
        self._fragments = 0
        self._parts: List[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    @property
    def wanted(self) -> int:
        """Bytes the current frame's payload still needs (0 between frames)."""
        return self._remaining if self._state == _PAYLOAD else 0

    @property
    def closed(self) -> bool:
        """True once the peer's close frame has been parsed; later bytes are ignored."""
        return self._state == _CLOSED

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Event]:
        """The events the bytes complete, in order.

        A framing fault ends the list as a :class:`FrameError` (with the
        close code to answer), after every event that came before it in the
        same bytes (a ping's pong is still owed); the parser then takes no
        more input.
        """
        events: List[Event] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        try:
            while pos < end and self._state != _CLOSED:
                if self._state == _HEADER:
                    whole = self._whole_text(view, pos, end) if not self._head and not self._message_opcode else None
                    if whole is not None:
                        text, pos = whole
                        events.append(TextMessage(text))
                        continue
                    if not self._head and end - pos >= _MAX_HEADER:
                        pos = self._whole_header(view, pos)  # the usual case: the header is all here
                    else:
                        pos = self._read_header(view, pos, end)
                else:
                    take = min(self._remaining, end - pos)
                    if self._opcode in CONTROL_OPCODES:
                        self._payload += view[pos:pos + take]
                    else:
                        self._data(view[pos:pos + take])
                    pos += take
                    self._remaining -= take
                if self._state == _PAYLOAD and self._remaining == 0:
                    event = self._frame_complete()
                    if event is not None:
                        events.append(event)
        except FrameError as exc:
            self._state = _CLOSED
            events.append(exc)
        return events

    def _whole_text(self, view: memoryview, pos: int, end: int) -> Optional[Tuple[str, int]]:
        """The fast path for the usual frame: a small text message, all of it in ``view`` at ``pos``.

        Returns its text and the position after it; None for any other frame,
        which the general path below then reads with every check.
        """
        if end - pos < 6 or view[pos] != 0x81:  # FIN, no reserved bits, text
            return None
        code = view[pos + 1] ^ 0x80  # the mask bit must be set
        if code < 126:
            length, start = code, pos + 6
        elif code == 126 and end - pos >= 8:
            length, start = (view[pos + 2] << 8) | view[pos + 3], pos + 8
        else:
            return None
        if start + length > end or length > self.max_size:
            return None
        payload = bytearray(view[start:start + length])
        unmask(payload, bytes(view[start - 4:start]))
        return _utf8(payload), start + length

    def _whole_header(self, view: memoryview, pos: int) -> int:
        """Parse a header known to be complete in ``view`` at ``pos``, without copying it."""
        self._fin, self._opcode, code = parse_header(view[pos], view[pos + 1])
        if code == 126:
            (length,) = struct.unpack_from("!H", view, pos + 2)
            pos += 4
        elif code == 127:
            (length,) = struct.unpack_from("!Q", view, pos + 2)
            if length >> 63:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "64-bit length with the most significant bit set")
            pos += 10
        else:
            length = code
            pos += 2
        self._length_known(length)
        self._mask = bytes(view[pos:pos + 4])
        self._payload = bytearray()
        self._state = _PAYLOAD
        return pos + 4

    def _read_header(self, view: memoryview, pos: int, end: int) -> int:
        head = self._head
        # Take the header in its parts (two bytes, the extended length, the
        # mask), each checked as soon as it is in, so a bad frame is refused
        # without waiting for bytes that may never come.
        while pos < end:
            ext = self._extended_length_size()
            need = 2 if len(head) < 2 else 2 + ext if len(head) < 2 + ext else 6 + ext
            take = min(need - len(head), end - pos)
            head += view[pos:pos + take]
            pos += take
            if len(head) < need:
                return pos
            if need == 2:
                self._fin, self._opcode, code = parse_header(head[0], head[1])
                if code < 126:
                    self._length_known(code)
            elif need == 2 + ext:
                (length,) = struct.unpack_from("!H" if ext == 2 else "!Q", head, 2)
                if length >> 63:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "64-bit length with the most significant bit set")
                self._length_known(length)
            else:
                self._mask = bytes(head[-4:])
                self._head = bytearray()
                self._payload = bytearray()
                self._state = _PAYLOAD
                return pos
        return pos

    def _extended_length_size(self) -> int:
        if len(self._head) < 2:
            return 0
        code = self._head[1] & 0x7F
        return 2 if code == 126 else 8 if code == 127 else 0

    def _length_known(self, length: int) -> None:
        opcode = self._opcode
        if opcode in DATA_OPCODES:
            self._check_data_frame(opcode, length)
            if opcode != OP_CONTINUATION:
                self._message_opcode, self._message_size, self._fragments = opcode, 0, 0
            self._message_size += length
            self._fragments += 1
        self._remaining = self._length = length

    def _check_data_frame(self, opcode: int, length: int) -> None:
        if opcode == OP_CONTINUATION and not self._message_opcode:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
        if opcode != OP_CONTINUATION and self._message_opcode:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "new message before the previous one ended")
        size = (self._message_size if opcode == OP_CONTINUATION else 0) + length
        if size > self.max_size:
            raise FrameError(CLOSE_TOO_BIG, f"message larger than max_message_size ({self.max_size} bytes)")
        fragments = (self._fragments if opcode == OP_CONTINUATION else 0) + 1
        if fragments > self.max_fragments:
            raise FrameError(CLOSE_TOO_BIG, f"message in more than {self.max_fragments} fragments")

    def _data(self, chunk: memoryview) -> None:
        """Unmask and decode the part of a data frame's payload that has arrived."""
        start = self._length - self._remaining
        mask = self._mask if not start % 4 else self._mask[start % 4:] + self._mask[:start % 4]
        if self._message_opcode == OP_BINARY:
            if self.binary:  # kept as it arrives, then copied once value by value (see Parts)
                self._binary.append(unmasked(chunk, mask))
            return  # before protocol 3: read off the wire, then refused when its frame ends
        data = bytearray(chunk)
        unmask(data, mask)
        self._parts.append(self._decode(data))

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise FrameError(CLOSE_INVALID_DATA, _NOT_UTF8) from None

    def _frame_complete(self) -> Optional[Event]:
        self._state = _HEADER
        opcode = self._opcode
        if opcode in DATA_OPCODES:
            return self._data_frame_complete()
        payload = self._payload
        self._payload = bytearray()
        unmask(payload, self._mask)
        if opcode == OP_PING:
            return Ping(bytes(payload))
        if opcode == OP_PONG:
            return Pong(bytes(payload))
        code, reason = parse_close(payload)  # OP_CLOSE
        self._state = _CLOSED
        return Close(code, reason)

    def _data_frame_complete(self) -> Union[TextMessage, BinaryMessage, None]:
        if self._message_opcode == OP_BINARY:
            if not self.binary:
                # Refused once its first frame has been read off the wire, so the close is not lost in a reset.
                raise FrameError(CLOSE_UNSUPPORTED_DATA, "binary messages need protocol 3 (igor.v3)")
            if not self._fin:
                return None
            self._message_opcode = 0
            payload, self._binary = Parts(self._binary), []
            return BinaryMessage(payload)
        if not self._fin:
            return None
        self._message_opcode = 0
        self._decode(b"", final=True)  # raises for a sequence cut off at the end; else decodes to ""
        # One part (a message in one read) is joined without a copy.
        text = "".join(self._parts)
        self._parts = []
        self._decoder.reset()
        return TextMessage(text)


_NOT_UTF8 = "text message is not valid UTF-8"


def _utf8(payload: bytearray) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, _NOT_UTF8) from None
