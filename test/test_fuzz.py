"""Property-based fuzzing of the transport and the message layer.

Each example opens its own raw connection (bad framing ends a connection),
sends what hypothesis draws, and checks the server's answer against a model of
docs/protocol.md. After every example a well-behaved client that stays
connected for the whole module must still get correct answers, and the server
must still be running.
"""

from __future__ import annotations

import codecs
import itertools
import json
import math
import socket
import struct

import pytest
import websocket
import wsraw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor import IgorServer
from igor.protocol import sniff_stream_id

MAX_MESSAGE = 100_000
SENTINEL = "__fuzz_sentinel__"
TIMEOUT = 5.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPS = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
RESERVED_CLOSE = {1004, 1005, 1006, 1015}

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.data_too_large])


# -- the server under test -----------------------------------------------------


def echo(out, data):
    return data


def count(out, data):
    if type(data) is not int or not 0 <= data <= 20:
        raise ValueError("count needs an integer from 0 to 20")
    yield from range(data)


def boom(out, data):
    raise ValueError("boom")


API = {"echo": echo, "count": count, "boom": boom}


class GoodClient:
    """A well-behaved client that stays connected for the whole module."""

    def __init__(self, port: int):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=TIMEOUT)
        self.ids = itertools.count(1)

    def check(self) -> None:
        stream_id = next(self.ids)
        payload = {"n": stream_id, "text": "héllo ✓", "list": [1, 2.5, None, True]}
        self.ws.send(json.dumps({"streamId": stream_id, "action": "echo", "data": payload}))
        assert json.loads(self.ws.recv()) == {"streamId": stream_id, "data": payload}
        assert json.loads(self.ws.recv()) == {"streamId": stream_id, "data": None, "close": True}


@pytest.fixture(scope="module")
def server():
    igor = IgorServer(API, {"port": 0, "max_message_size": MAX_MESSAGE})
    igor.run_forever(threaded=True)
    yield igor
    igor.shutdown()


@pytest.fixture(scope="module")
def good(server):
    client = GoodClient(server.port)
    client.check()
    yield client
    client.ws.close()


def assert_healthy(server, good) -> None:
    assert server.running
    good.check()


# -- a model of the server's framing rules ---------------------------------------


class Outcome:
    """What the server must do with a byte stream.

    ``close``: the close code it answers with, or None when it is still
    waiting for more bytes. ``partial``: the bytes end inside a frame.
    ``pongs``: ping payloads it must echo, in order. ``messages``: complete
    text messages it hands to the message layer.
    """

    def __init__(self):
        self.close = None
        self.partial = False
        self.in_message = False
        self.pongs = []
        self.messages = []


def simulate(data: bytes, limit: int = MAX_MESSAGE) -> Outcome:
    result = Outcome()
    pos = 0
    kind = None
    fragments = []
    buffered = 0
    decoder = None  # the incremental UTF-8 decoder of the message being reassembled

    def take(size):
        nonlocal pos
        if pos + size > len(data):
            return None
        chunk = data[pos:pos + size]
        pos += size
        return chunk

    while pos < len(data):
        head = take(2)
        if head is None:
            result.partial = True
            return result
        first, second = head
        fin, opcode, length = bool(first & 0x80), first & 0x0F, second & 0x7F
        if first & 0x70 or opcode not in DATA_OPS + CONTROL_OPS or not second & 0x80:
            result.close = 1002
            return result
        if opcode in CONTROL_OPS and (not fin or length > 125):
            result.close = 1002
            return result
        if length >= 126:
            extended = take(2 if length == 126 else 8)
            if extended is None:
                result.partial = True
                return result
            length = int.from_bytes(extended, "big")
            if length >> 63:
                result.close = 1002
                return result
        if (opcode == OP_CONT and kind is None) or (opcode in (OP_TEXT, OP_BINARY) and kind is not None):
            result.close = 1002
            return result
        if opcode in DATA_OPS and buffered + length > limit:
            result.close = 1009
            return result
        key = take(4)
        payload = take(length) if key is not None else None
        if payload is None:
            if key is not None and opcode in (OP_TEXT, OP_CONT):
                # The server decodes a text frame's bytes as they arrive: a bad sequence fails before the frame ends.
                arrived = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos:]))
                try:
                    (decoder if opcode == OP_CONT else codecs.getincrementaldecoder("utf-8")()).decode(arrived)
                except UnicodeDecodeError:
                    result.close = 1007
                    return result
            result.partial = True
            return result
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if opcode == OP_BINARY:
            result.close = 1003  # refused once its first frame is read
            return result
        if opcode == OP_PING:
            result.pongs.append(payload)
        elif opcode == OP_CLOSE:
            result.close = close_answer(payload)
            return result
        elif opcode in DATA_OPS:
            if opcode != OP_CONT:
                kind = opcode
                decoder = codecs.getincrementaldecoder("utf-8")()
            buffered += length
            try:
                # The server checks UTF-8 as each fragment arrives, as RFC 6455 allows.
                fragments.append(decoder.decode(payload, final=fin))
            except UnicodeDecodeError:
                result.close = 1007
                return result
            if fin:
                result.messages.append("".join(fragments))
                kind, fragments, buffered = None, [], 0
    result.in_message = kind is not None
    return result


def close_answer(payload: bytes) -> int:
    """The code the server answers a client's close frame with."""
    if not payload:
        return 1000
    if len(payload) == 1:
        return 1002
    code = struct.unpack("!H", payload[:2])[0]
    if code < 1000 or code in RESERVED_CLOSE or 1016 <= code < 3000 or code >= 5000:
        return 1002
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return 1007
    return code


def encode_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0,
                 key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    return wsraw.frame_bytes(opcode, payload, fin, mask, rsv, key=key)


def sentinel_frame() -> bytes:
    return encode_frame(OP_TEXT, json.dumps({"streamId": SENTINEL, "action": "echo", "data": "ok"}).encode())


def read_until(sock: socket.socket, stop, max_frames: int = 10_000):
    """Read server frames until ``stop(frames)`` or a close frame or EOF.

    Returns ``(frames, ended_by)`` where ended_by is "stop", a close code, or
    "eof". Every frame must be one a server may send.
    """
    frames = []
    for _ in range(max_frames):
        try:
            fin, opcode, payload = wsraw.recv_frame(sock)
        except ConnectionError:
            return frames, "eof"
        assert fin, "the server sent a fragmented frame"
        assert opcode in (OP_TEXT, OP_CLOSE, OP_PING, OP_PONG), f"unexpected opcode {opcode:#x} from the server"
        if opcode == OP_CLOSE:
            assert len(payload) >= 2
            return frames, struct.unpack("!H", payload[:2])[0]
        frames.append((opcode, payload))
        if stop(frames):
            return frames, "stop"
    raise AssertionError("too many frames")


def texts(frames):
    return [json.loads(payload.decode("utf-8")) for opcode, payload in frames if opcode == OP_TEXT]


def sentinel_closed(frames) -> bool:
    return bool(frames) and frames[-1][0] == OP_TEXT and json.loads(frames[-1][1]) == {
        "streamId": SENTINEL, "data": None, "close": True}


def run_bytes(port: int, data: bytes) -> None:
    """Send ``data`` after a valid handshake and hold the server to the model."""
    outcome = simulate(data)
    sentinel_sent = False
    with wsraw.connect(port, timeout=TIMEOUT) as sock:
        if outcome.close is None and not outcome.partial:
            data += sentinel_frame()
            outcome = simulate(data)
            sentinel_sent = True
        sock.sendall(data)
        if outcome.close is None and outcome.partial:
            # The server is waiting inside a frame: end our side, it must end its side without a close frame.
            sock.shutdown(socket.SHUT_WR)
            frames, ended = read_until(sock, lambda frames: False)
            assert ended == "eof"
        elif outcome.close is None:
            assert sentinel_sent and outcome.messages and not outcome.in_message
            frames, ended = read_until(sock, sentinel_closed)
            assert ended == "stop"
            assert [m for m in texts(frames) if m.get("streamId") == SENTINEL] == [
                {"streamId": SENTINEL, "data": "ok"}, {"streamId": SENTINEL, "data": None, "close": True}]
            sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            more, ended = read_until(sock, lambda frames: False)
            assert ended == 1000
            frames += more
        else:
            frames, ended = read_until(sock, lambda frames: False)
            assert ended == outcome.close
        pongs = [payload for opcode, payload in frames if opcode == OP_PONG]
        # RFC 6455 5.5.3: a pong may answer only the latest of pings not yet answered, as
        # the server does while its writer is busy (a streaming handler): the pongs are the
        # model's in order, some perhaps skipped, and always the last.
        assert pongs[-1:] == outcome.pongs[-1:] and is_subsequence(pongs, outcome.pongs), (pongs, outcome.pongs)
        for message in texts(frames):
            assert isinstance(message, dict)


def is_subsequence(items, of):
    rest = iter(of)
    return all(any(item == other for other in rest) for item in items)


# -- (a) random frames -------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"", b"not json", b'{"streamId": 1, "action": "echo", "data": [1]}',
                     b'{"streamId": "c", "action": "count", "data": 3}', b"\x03\xe8", b"\x03\xe8bye",
                     b"\x0b\xb8", b"\x03\xed", b"\x03\xe8\xff", b"\x00"]),
    st.builds(lambda size, fill: bytes([fill]) * size,
              st.sampled_from([124, 125, 126, 127, 65535, 65536, 70_000, MAX_MESSAGE, MAX_MESSAGE + 1]),
              st.sampled_from([0x20, 0x7B, 0xC3, 0xFF])),
)

random_frame = st.builds(
    lambda opcode, payload, fin, mask, rsv: [(opcode, payload, fin, mask, rsv)],
    st.one_of(st.sampled_from(DATA_OPS + CONTROL_OPS), st.integers(0, 15)),
    payloads,
    st.booleans(),
    st.sampled_from([True] * 7 + [False]),
    st.sampled_from([0] * 9 + list(range(1, 8))),
)


@st.composite
def fragmented_message(draw):
    """One text or binary message cut into fragments, control frames possibly in between."""
    opcode = draw(st.sampled_from([OP_TEXT, OP_TEXT, OP_BINARY]))
    payload = draw(payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
    pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
    frames = []
    for index, piece in enumerate(pieces):
        frames.append((opcode if index == 0 else OP_CONT, piece, index == len(pieces) - 1, True, 0))
        if draw(st.integers(0, 4)) == 0:
            control = draw(st.sampled_from([OP_PING, OP_PONG]))
            frames.append((control, draw(st.binary(max_size=125)), True, True, 0))
    return frames


frame_lists = st.lists(st.one_of(random_frame, fragmented_message()), min_size=1, max_size=6).map(
    lambda groups: [frame for group in groups for frame in group])


@FUZZ
@given(frames=frame_lists, key=st.binary(min_size=4, max_size=4))
def test_random_frames(server, good, frames, key):
    data = b"".join(encode_frame(op, payload, fin, mask, rsv, key) for op, payload, fin, mask, rsv in frames)
    run_bytes(server.port, data)
    assert_healthy(server, good)


def test_model_agrees_on_known_cases():
    """The fuzz model itself, on cases whose answer docs/protocol.md states."""
    assert simulate(encode_frame(OP_BINARY, b"x")).close == 1003
    assert simulate(encode_frame(OP_TEXT, b"\xff")).close == 1007
    assert simulate(encode_frame(OP_TEXT, b"x", rsv=4)).close == 1002
    assert simulate(encode_frame(OP_TEXT, b"x", mask=False)).close == 1002
    assert simulate(encode_frame(0x3, b"")).close == 1002
    assert simulate(encode_frame(OP_PING, b"x", fin=False)).close == 1002
    assert simulate(encode_frame(OP_CONT, b"x")).close == 1002
    assert simulate(encode_frame(OP_TEXT, b"x" * (MAX_MESSAGE + 1))).close == 1009
    assert simulate(encode_frame(OP_CLOSE, b"")).close == 1000
    assert simulate(encode_frame(OP_CLOSE, b"\x0b\xb8")).close == 3000
    both = simulate(encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_PING, b"p")
                    + encode_frame(OP_CONT, "é".encode()))
    assert (both.close, both.pongs, both.messages) == (None, [b"p"], ["aé"])
    assert simulate(encode_frame(OP_TEXT, b"abc")[:-1]).partial


# -- (b) random bytes ---------------------------------------------------------------

@FUZZ
@given(data=st.one_of(
    st.binary(min_size=1, max_size=400),
    # Bytes behind a plausible first header byte, so they get past the reserved-bit check.
    st.tuples(st.sampled_from([0x81, 0x01, 0x88, 0x89, 0x8A, 0x80, 0x82]), st.binary(max_size=400)).map(
        lambda pair: bytes([pair[0]]) + pair[1]),
))
def test_random_bytes(server, good, data):
    run_bytes(server.port, data)
    assert_healthy(server, good)


# -- (c) random JSON messages ----------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children,
                                                                                 max_size=4)),
    max_leaves=12,
)
stream_ids = st.one_of(st.text(max_size=10), st.integers(), json_values).filter(lambda value: value != SENTINEL)
actions = st.one_of(st.sampled_from(["echo", "count", "boom", "introduce_self"]), st.text(max_size=10), json_values)
call_data = st.one_of(json_values, st.integers(-2, 25), st.fixed_dictionaries({"client_id": stream_ids}))


@st.composite
def json_messages(draw):
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.text(max_size=40))
    if shape == 1:
        return json.dumps(draw(json_values))
    message = draw(st.fixed_dictionaries({}, optional={
        "streamId": stream_ids, "action": actions, "data": call_data, "cancel": st.one_of(st.just(True), json_values),
    }))
    if shape <= 4:
        message = {"streamId": draw(stream_ids), "action": draw(actions), **message}
    if draw(st.booleans()):
        extra = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
        message.update({key: value for key, value in extra.items() if key not in message})
    return json.dumps(message)


def is_valid_id(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and 0 < len(value) <= 256)


def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(finite(item) for item in value)
    if isinstance(value, dict):
        return all(finite(item) for item in value.values())
    return True


def expected_replies(text: str):
    """The replies docs/protocol.md gives for one message, as a list of alternatives."""
    bad = [("error", None, 400)]
    try:
        message = json.loads(text)
    except ValueError:
        return [bad]
    if not isinstance(message, dict):
        return [bad]
    try:
        json.loads(text, parse_constant=lambda name: 1 / 0)
    except ZeroDivisionError:
        # NaN and Infinity are refused, on the stream the message starts with if it names one first.
        sid = sniff_stream_id(text)
        return [[("error", sid, 400), ("close", sid)]] if sid is not None else [bad]
    no_such = [[("error", None, 404)]]  # input, an end of input or an answer for nothing open: untied 404
    if "callId" in message:
        call_id = message["callId"]
        if isinstance(call_id, bool) or not isinstance(call_id, int) or call_id <= 0:
            return [bad]
        if "error" in message:
            code = message.get("code", 500)
            if not isinstance(message["error"], str) or isinstance(code, bool) or not isinstance(code, int) \
                    or not isinstance(message.get("type", "Error"), str):
                return [bad]
        return no_such
    if "process" in message and "streamId" not in message:
        process = message["process"]
        return no_such if isinstance(process, str) and process else [bad]
    if "streamId" not in message or not is_valid_id(message["streamId"]):
        return [bad]
    sid = message["streamId"]
    refused = [[("error", sid, 400), ("close", sid)]]
    if sum(key in message for key in ("action", "cancel", "end")) > 1:
        return refused
    if "cancel" in message:
        if message["cancel"] is not True:
            return refused
        return [[]]  # cancelling a stream that is not open is ignored
    if "end" in message:
        return no_such if message["end"] is True else refused
    if "action" not in message:
        return no_such if "data" in message else refused
    action, data = message.get("action"), message.get("data")
    if not isinstance(action, str) or not action:
        return refused
    if action == "introduce_self":
        new_id = data.get("client_id") if isinstance(data, dict) else None
        if not is_valid_id(new_id):
            return refused
        return [[("data", sid, {"client_id": new_id}), ("close", sid)], [("error", sid, 409), ("close", sid)]]
    if action not in API:
        return [[("error", sid, 404), ("close", sid)]]
    if action == "boom":
        return [[("error", sid, 500), ("close", sid)]]
    if action == "count":
        if type(data) is not int or not 0 <= data <= 20:
            return [[("error", sid, 500), ("close", sid)]]
        return [[("data", sid, i) for i in range(data)] + [("close", sid)]]
    if data is None:
        return [[("close", sid)]]  # a handler returning None sends no data
    if not finite(data):
        return [[("error", sid, 500), ("close", sid)]]  # NaN and infinities cannot be sent back
    return [[("data", sid, data), ("close", sid)]]


def shape(message: dict):
    assert isinstance(message, dict)
    if "error" in message:
        assert isinstance(message["error"], str) and isinstance(message.get("type"), str)
        return ("error", message.get("streamId"), message["code"])
    if "close" in message:
        assert message == {"streamId": message["streamId"], "data": None, "close": True}
        return ("close", message["streamId"])
    assert set(message) == {"streamId", "data"}
    data = message["data"]
    if isinstance(data, dict) and set(data) == {"client_id", "resume"}:
        assert isinstance(data.pop("resume"), str)  # introduce_self's answer: the secret is new each time
    return ("data", message["streamId"], data)


@FUZZ
@given(text=json_messages())
def test_random_json_messages(server, good, text):
    alternatives = expected_replies(text)
    longest = max(len(replies) for replies in alternatives)
    with wsraw.connect(server.port, timeout=TIMEOUT) as sock:
        wsraw.send_frame(sock, OP_TEXT, text.encode("utf-8"))
        wsraw.send_frame(sock, OP_TEXT, json.dumps({"streamId": SENTINEL, "action": "echo", "data": 1}).encode())
        seen, replies = False, []
        for _ in range(longest + 2):
            fin, opcode, payload = wsraw.recv_frame(sock)
            assert (fin, opcode) == (True, OP_TEXT)
            message = json.loads(payload.decode("utf-8"))
            if isinstance(message, dict) and message.get("streamId") == SENTINEL:
                seen = seen or message == {"streamId": SENTINEL, "data": None, "close": True}
            else:
                replies.append(shape(message))
            # The fuzz message's replies end with its stream's close, or with an error tied to no stream.
            ended = any(r[0] == "close" or (r[0] == "error" and r[1] is None) for r in replies)
            if seen and (ended or alternatives == [[]]):
                break
        assert seen
        assert replies in alternatives, f"sent {text!r}, got {replies!r}, expected one of {alternatives!r}"
        wsraw.send_frame(sock, OP_CLOSE, struct.pack("!H", 1000))
        assert wsraw.recv_close_code(sock) == 1000
    assert_healthy(server, good)


def test_fuzz_left_the_server_usable(server, good):
    """After all the fuzzing: fresh connections are accepted and served."""
    for _ in range(3):
        client = GoodClient(server.port)
        client.check()
        client.ws.close()
    assert server.running
