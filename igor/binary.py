"""Protocol 3's binary messages: find the binary values in a message, pack them after its head, unpack them.

A message holding binary values travels as one WebSocket binary message::

    4 bytes  H, the head's length, unsigned big-endian
    H bytes  the head: the message as JSON, each binary value replaced by
             null, plus "binary": [{"at": PATH, "size": N}, ...]
    rest     the binary values, back to back, in the order of "binary"

Pure functions on values and bytes, shared by the server and the Python
client (which imports nothing else of the server's). Sending writes the
caller's buffers themselves: :class:`Binary` holds memoryviews of them, and
the connection gathers them behind the head with one ``sendmsg``.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .exceptions import ProtocolError

__all__ = ["Parts", "Binary", "MAX_ENTRIES", "is_binary", "as_view", "split", "pack", "unpack", "HEAD_ROOM", "dumps"]

#: The most binary values one message may carry.
MAX_ENTRIES = 1024
#: Bytes an upload chunk leaves under max_message_size for the framing and the head.
HEAD_ROOM = 4096

Path = List[Union[str, int]]
_JSON_SCALARS = (str, int, float, bool, type(None))
_DATA_PATH: Path = ["data"]


class Binary:
    """A message's head (UTF-8 JSON, ``binary`` entries included) and its binary values, not yet joined.

    ``views`` are byte-format memoryviews of the caller's own buffers: nothing
    is copied until the socket takes them.
    """

    __slots__ = ("head", "views")

    def __init__(self, head: bytes, views: Sequence[memoryview]):
        self.head = head
        self.views = tuple(views)

    @property
    def size(self) -> int:
        """The binary message's length: the head's length prefix, the head and the values."""
        return 4 + len(self.head) + sum(view.nbytes for view in self.views)

    def pieces(self) -> Tuple[Union[bytes, memoryview], ...]:
        """The message as pieces to write back to back: length and head, then each value's bytes."""
        return (struct.pack("!I", len(self.head)) + self.head, *(view for view in self.views if view.nbytes))

    def joined(self) -> bytes:
        return b"".join(self.pieces())

    def with_close(self) -> Binary:
        """The same message with ``"close":true`` in its head (a stream's last message, as in protocol 2)."""
        return Binary(self.head[:-1] + b',"close":true}', self.views)


def is_binary(value: Any) -> bool:
    """Whether ``value`` is sent as binary: bytes, bytearray, memoryview or any other buffer (a numpy array)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, (*_JSON_SCALARS, dict, list, tuple)):
        return False
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


def as_view(value: Any) -> memoryview:
    """``value``'s bytes as a flat byte memoryview, without a copy; TypeError unless it is C-contiguous."""
    view = memoryview(value)
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    if not view.c_contiguous:
        raise TypeError(f"a {type(value).__name__} that is not C-contiguous cannot be sent as binary "
                        "(make a contiguous copy first, e.g. numpy.ascontiguousarray)")
    return view.cast("B")


def _key(key: Any) -> str:
    # The key as JSON writes it: json.dumps turns int, float, bool and None keys into strings.
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    return json.dumps(key)


def split(value: Any, default: Optional[Callable[[Any], Any]] = None, at: Optional[Path] = None
          ) -> Tuple[Any, List[Tuple[Path, memoryview]]]:
    """``value`` with each binary value replaced by None, and the values with their paths (from ``at``).

    Walks the value as JSON would (dicts, lists, tuples; other objects
    through ``default``, the application's ``json_default``), so it is only
    called once the encoder has met a binary value. Raises TypeError for a
    buffer that is not C-contiguous, ValueError past :data:`MAX_ENTRIES` values.
    """
    found: List[Tuple[Path, memoryview]] = []
    path: Path = list(at or [])

    def walk(item: Any, depth: int) -> Any:
        if isinstance(item, _JSON_SCALARS):
            return item
        if depth > 500:
            raise ValueError("value is nested too deeply (or refers to itself) to be JSON")
        if isinstance(item, dict):
            out = {}
            for key, inner in item.items():
                path.append(_key(key))
                out[key] = walk(inner, depth + 1)
                path.pop()
            return out
        if isinstance(item, (list, tuple)):
            out_list = []
            for index, inner in enumerate(item):
                path.append(index)
                out_list.append(walk(inner, depth + 1))
                path.pop()
            return out_list
        if is_binary(item):
            if len(found) >= MAX_ENTRIES:
                raise ValueError(f"a message may carry at most {MAX_ENTRIES} binary values")
            found.append((list(path), as_view(item)))
            return None
        if default is not None:
            return walk(default(item), depth + 1)
        return item  # the encoder says what is wrong with it

    return walk(value, 0), found


def pack(head: bytes, found: Sequence[Tuple[Path, memoryview]], encode: Callable[[Any], bytes]) -> Binary:
    """The binary message of ``head`` (a JSON object whose values at the paths are null) and the values found."""
    entries = [{"at": path, "size": view.nbytes} for path, view in found]
    return Binary(head[:-1] + b',"binary":' + encode(entries) + b"}", [view for _, view in found])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_loads = json.JSONDecoder(parse_constant=_refuse_constant).decode


class Parts:
    """A binary message as the pieces it arrived in, sliced into ``bytes`` without being joined whole first.

    The server's frame parser keeps a large message as the buffers it read:
    each value is then copied once, from them into its own ``bytes``.
    """

    def __init__(self, parts: Sequence[Union[bytes, bytearray, memoryview]]):
        self.parts = [memoryview(part) for part in parts if len(part)]
        self._size = sum(len(part) for part in self.parts)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: slice) -> bytes:
        start, stop, _ = index.indices(self._size)
        views, offset = [], 0
        for part in self.parts:
            if offset >= stop:
                break
            end = offset + len(part)
            if end > start:
                views.append(part[max(0, start - offset):stop - offset])
            offset = end
        return bytes(views[0]) if len(views) == 1 else b"".join(views)


Payload = Union[bytes, bytearray, Parts]


def unpack(payload: Payload, loads: Callable[[str], Any] = _loads) -> Dict[str, Any]:
    """The message a binary payload carries, with ``bytes`` put back at each path.

    Raises :class:`~igor.ProtocolError` (400) for every malformed payload,
    with the ``stream_id`` of the head when it names one.
    """
    if len(payload) < 4:
        raise ProtocolError("binary message shorter than its 4-byte head length")
    (length,) = struct.unpack("!I", payload[:4])
    if 4 + length > len(payload):
        raise ProtocolError(f"binary message's head length {length} runs past its end ({len(payload)} bytes)")
    try:
        head = loads(str(payload[4:4 + length], "utf-8"))  # a UnicodeDecodeError is a ValueError
    except RecursionError:
        raise ProtocolError("binary message's head is nested too deeply") from None
    except ValueError:
        raise ProtocolError("binary message's head is not JSON") from None
    if not isinstance(head, dict):
        raise ProtocolError("binary message's head must be a JSON object")
    stream_id = head.get("streamId")
    stream_id = stream_id if isinstance(stream_id, (str, int)) and not isinstance(stream_id, bool) else None
    try:
        _place(head, payload, 4 + length)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), stream_id) from None
    return head


def _place(head: Dict[str, Any], payload: Payload, offset: int) -> None:
    entries = head.pop("binary", None)
    if not isinstance(entries, list) or not entries:
        raise ProtocolError('binary message\'s head needs "binary": a non-empty array of {"at", "size"}')
    if len(entries) > MAX_ENTRIES:
        raise ProtocolError(f"binary message carries {len(entries)} values, over {MAX_ENTRIES}")
    sizes = []
    for entry in entries:
        size = entry.get("size") if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError('each "binary" entry needs "size": a non-negative integer')
        sizes.append(size)
    if sum(sizes) != len(payload) - offset:
        raise ProtocolError(f"binary sizes add up to {sum(sizes)} bytes, but {len(payload) - offset} follow the head")
    for entry, size in zip(entries, sizes):
        path = entry.get("at")
        if not isinstance(path, list) or not path or path[0] != "data":
            raise ProtocolError('each "binary" entry needs "at": a path that starts with "data"')
        container: Any = head
        for step in path[:-1]:
            container = _step(container, step, path)
        last = path[-1]
        if _step(container, last, path) is not None:
            raise ProtocolError(f"binary path {path!r} does not lead to a null (a repeat, or inside another value)")
        container[last] = bytes(payload[offset:offset + size])  # a slice of bytes or Parts is bytes: no copy here
        offset += size


def _step(container: Any, step: Any, path: List[Any]) -> Any:
    if isinstance(container, dict) and isinstance(step, str) and step in container:
        return container[step]
    if (isinstance(container, list) and isinstance(step, int) and not isinstance(step, bool)
            and 0 <= step < len(container)):
        return container[step]
    raise ProtocolError(f"binary path {path!r} does not lead to a value in the head")


class _HasBinary(Exception):
    pass


def _hook(value: Any) -> Any:
    if is_binary(value):
        raise _HasBinary
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# What json.dumps(message) does, made once: dumps with a default= builds a new encoder each call.
_CLIENT_JSON = json.JSONEncoder(default=_hook)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def dumps(message: Dict[str, Any]) -> Union[str, Binary]:
    """A client's message: JSON text, or a :class:`Binary` when its ``data`` holds binary values.

    The Python client's encoder: JSON's ``default`` hook meets the first
    binary value, and only then is the value walked for the others.
    Raises TypeError for what is neither JSON nor binary.
    """
    try:
        return _CLIENT_JSON.encode(message)
    except _HasBinary:
        data = message.get("data")
        if isinstance(data, (bytes, bytearray, memoryview)):
            head, found = None, [(_DATA_PATH.copy(), as_view(data))]
        else:
            head, found = split(data, at=["data"])
        return pack(_json_bytes({**message, "data": head}), found, _json_bytes)
