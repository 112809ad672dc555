"""Sans-I/O pieces tested with plain values: flatten, messages, frames, handshake, registry."""

import os
import struct

import pytest

from igor import ClientIdTaken, ProtocolError, UnknownClient, flatten
from igor.encoding import encode
from igor.frames import FrameError, build_close, build_frame, parse_close, parse_header, unmask, unmask_translate
from igor.handshake import HandshakeError, SecurityPolicy, accept_key, parse_request, switching_protocols
from igor.protocol import Call, Cancel, data_message, error_message, parse_message
from igor.registry import ClientRegistry, ConnectedClient
from igor.static import resolve


def f(out, data):
    return data


def g(out, data):
    return data


# -- flatten -----------------------------------------------------------------------------


def test_flatten_any_depth_and_separator():
    api = {"a": f, "b": {"c": g, "d": {"e": f}}}
    assert flatten(api) == {"a": f, "b.c": g, "b.d.e": f}
    assert flatten(api, separator="/") == {"a": f, "b/c": g, "b/d/e": f}
    assert api == {"a": f, "b": {"c": g, "d": {"e": f}}}  # not mutated


def test_flatten_refuses_non_callables_and_collisions():
    with pytest.raises(ValueError, match="not callable"):
        flatten({"a": {"b": 3}})
    with pytest.raises(ValueError, match="same name"):
        flatten({"a.b": f, "a": {"b": g}})
    with pytest.raises(ValueError):
        flatten({"": f})


# -- messages ------------------------------------------------------------------------------


def test_parse_call_and_cancel():
    assert parse_message('{"streamId": 1, "action": "a", "data": [1]}') == Call(1, "a", [1])
    assert parse_message('{"streamId": "s", "action": "a"}') == Call("s", "a", None)
    assert parse_message('{"streamId": "s", "cancel": true}') == Cancel("s")


@pytest.mark.parametrize(
    "text, stream_id",
    [("{", None), ("null", None), ('{"streamId": null, "action": "a"}', None), ('{"streamId": false}', None),
     ('{"streamId": [1], "action": "a"}', None), ('{"streamId": 1, "action": ""}', 1),
     ('{"streamId": 1, "action": null}', 1), ('{"streamId": 1, "cancel": false}', 1)],
)
def test_parse_errors_say_which_stream(text, stream_id):
    with pytest.raises(ProtocolError) as info:
        parse_message(text)
    assert info.value.stream_id == stream_id and info.value.code == 400


def test_encode_refuses_what_javascript_cannot_read():
    assert encode({"a": "é"}) == '{"a":"é"}'.encode()
    assert encode({"a": "\ud800"}) == b'{"a":"\\ud800"}'  # a lone surrogate cannot be UTF-8: escaped
    with pytest.raises(ValueError):
        encode({"a": float("inf")})
    with pytest.raises(ValueError):
        encode({"a": object()})


def test_error_message_shapes():
    assert error_message(KeyError("k"), 1) == {"streamId": 1, "error": "k", "code": 500, "type": "KeyError"}
    assert error_message(UnknownClient("x"))["type"] == "UnknownClient"
    assert error_message("plain", None, 418) == {"error": "plain", "code": 418, "type": "Error"}
    assert error_message(ValueError(), 2)["error"] == "ValueError"


# -- frames ------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [unmask, unmask_translate])
def test_unmask_matches_the_definition(function):
    for size in (0, 1, 3, 4, 5, 63, 64, 125, 126, 4095, 4096, 4097, 65536, 100_003):
        payload, mask = os.urandom(size), os.urandom(4)
        buffer = bytearray(payload)
        function(buffer, mask)
        assert buffer == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size, header_size", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_build_frame_lengths(size, header_size):
    frame = build_frame(0x1, b"x" * size)
    assert len(frame) == size + header_size and frame[0] == 0x81


def test_build_close_cuts_long_reasons_on_a_character_boundary():
    frame = build_close(1001, "é" * 100)
    assert len(frame) <= 127
    assert parse_close(frame[2:]) == (1001, "é" * 61)


def test_parse_header_rules():
    assert parse_header(0x81, 0x85) == (True, 0x1, 5)
    assert parse_header(0x01, 0xFE) == (False, 0x1, 126)
    for first, second in [(0xC1, 0x80), (0x81, 0x05), (0x83, 0x80), (0x09, 0x80), (0x89, 0xFE)]:
        with pytest.raises(FrameError) as info:
            parse_header(first, second)
        assert info.value.close_code == 1002


def test_parse_close():
    assert parse_close(b"") == (None, "")
    assert parse_close(struct.pack("!H", 4000) + b"ok") == (4000, "ok")
    for payload, code in [(b"\x03", 1002), (struct.pack("!H", 1005), 1002), (struct.pack("!H", 1000) + b"\xff", 1007)]:
        with pytest.raises(FrameError) as info:
            parse_close(payload)
        assert info.value.close_code == code


# -- handshake -----------------------------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(*headers, line="GET /x?token=t HTTP/1.1"):
    base = ["Host: localhost:5678", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13", *headers]
    return parse_request(f"{line}\r\n{chr(10).join(base)}".encode().split(b"\n"))


def test_accept_key_is_the_rfc_example():
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_parsing():
    req = request("X-Twice: a", "X-Twice: b")
    assert (req.method, req.path, req.query, req.headers["x-twice"]) == ("GET", "/x", {"token": ["t"]}, "a, b")
    for bad in ([b"GET /"], [b"GET / HTTP/1.1", b"no colon"], [b"GET / HTTP/1.1", b" Host: x"]):
        with pytest.raises(HandshakeError):
            parse_request(bad)


def test_policy_token_ways():
    policy = SecurityPolicy(token="t")
    policy.check_websocket(request())
    policy.check_websocket(request("Authorization: Bearer t", line="GET / HTTP/1.1"))
    policy.check_websocket(request("Sec-WebSocket-Protocol: igor, igor.token.t", line="GET / HTTP/1.1"))
    with pytest.raises(HandshakeError) as info:
        policy.check_websocket(request(line="GET / HTTP/1.1"))
    assert info.value.status == 401


def test_switching_protocols_answer():
    answer = switching_protocols(request("Sec-WebSocket-Protocol: igor.token.t, igor"))
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer
    assert b"Sec-WebSocket-Protocol: igor\r\n" in answer and b"token" not in answer
    assert b"Sec-WebSocket-Protocol" not in switching_protocols(request())


# -- static paths ------------------------------------------------------------------------------------


def test_static_resolve(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text("x")
    (tmp_path / "f.js").write_text("x")
    assert resolve(str(tmp_path), "/") is None
    assert resolve(str(tmp_path), "/a/") == str(tmp_path / "a" / "index.html")
    assert resolve(str(tmp_path), "/f.js") == str(tmp_path / "f.js")
    assert resolve(str(tmp_path), "/a/../f.js") is None  # any dot segment is refused outright
    assert resolve(str(tmp_path / "a"), "/../f.js") is None


# -- registry ----------------------------------------------------------------------------------------


def make_client():
    return ConnectedClient(link=None)


def test_registry_ids_rename_and_sessions():
    now = [0.0]
    registry = ClientRegistry(session_timeout=10, clock=lambda: now[0])
    first, second = make_client(), make_client()
    assert (registry.add(first), registry.add(second)) == (1, 2)
    secret = registry.rename(first, "w")
    assert registry.get("w") is first and first.resume == secret
    with pytest.raises(ClientIdTaken):
        registry.rename(second, "w")
    with pytest.raises(UnknownClient):
        registry.get(1)
    first.session["k"] = "v"
    registry.remove(first)
    now[0] = 5
    third = make_client()
    registry.add(third)
    # While parked, the id and its session go only to the one who has the secret.
    # One character off (never the same one: a secret ending in "x" made this pass once in 64).
    off_by_one = secret[:-1] + ("y" if secret.endswith("x") else "x")
    for wrong in (None, "", off_by_one, "nope"):
        with pytest.raises(ClientIdTaken):
            registry.rename(third, "w", wrong)
        assert third.session == {} and third.id == 3
    newer = registry.rename(third, "w", secret)
    assert third.session == {"k": "v"} and newer != secret
    registry.remove(third)
    with pytest.raises(ClientIdTaken):
        registry.rename(make_client(), "w", secret)  # the old secret was used up
    now[0] = 20
    registry.purge_sessions()
    fourth = make_client()
    registry.add(fourth)
    registry.rename(fourth, "w")
    assert fourth.session == {}


def test_registry_parks_integer_ids_too():
    registry = ClientRegistry(session_timeout=10, clock=lambda: 0.0)
    first = make_client()
    registry.add(first)
    first.session["secret"] = 1
    registry.remove(first)
    thief = make_client()
    registry.add(thief)
    with pytest.raises(ClientIdTaken):
        registry.rename(thief, 1)
    assert thief.session == {}


# -- large messages: orjson where it gives the standard library's answer ------------------------

BIG_TEXTS = [
    "a" * 100_000,
    ("héllo ✓ \u2028 \x00\x1f \" \\ " * 5000),
    "\U0001F600" * 40_000,
]


@pytest.mark.parametrize("text", BIG_TEXTS)
def test_large_string_values_encode_the_same_with_or_without_orjson(monkeypatch, text):
    import json

    from igor import encoding as protocol

    fast = protocol.encode(data_message(7, text))
    monkeypatch.setattr(protocol, "orjson", None)
    slow = protocol.encode(data_message(7, text))
    assert json.loads(fast) == json.loads(slow) == {"streamId": 7, "data": text}


def test_large_values_orjson_refuses_fall_back_to_the_standard_answers():
    import json

    from igor import encoding as protocol

    lone = "x" * 100_000 + "\ud800"
    assert json.loads(protocol.encode(data_message(1, lone))) == {"streamId": 1, "data": lone}
    padding = "p" * 100_000
    # NaN is refused on the way out, whatever the size, as JavaScript cannot read it.
    with pytest.raises(ValueError):
        protocol.encode(data_message(1, [padding, float("nan")]))
    # On the way in, a lone surrogate in a big message is read as json reads it; a NaN literal is refused.
    message = parse_message('{"streamId": 1, "action": "a", "data": ["' + padding + '", "\\ud800"]}')
    assert message.data[0] == padding and message.data[1] == "\ud800"
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ProtocolError, match="not a JSON value"):
            parse_message('{"streamId": 1, "action": "a", "data": ["' + padding + '", ' + constant + ']}')
        with pytest.raises(ProtocolError, match="not a JSON value"):
            parse_message('{"streamId": 1, "action": "a", "data": ' + constant + '}')


@pytest.mark.parametrize("text", [
    '{"streamId":1,"action":"a","data":123456789012345678901234567890}',  # past 64 bits: still an int
    '{"streamId":1,"action":"a","data":[' + "7," * 40_000 + '-9223372036854775809]}',  # the same, in a big message
    ' {"streamId":1,"action":"a","data":1e400} ',  # whitespace around, and an infinity
    '{"streamId":1,"action":"a","data":["\\ud800",{"k":1,"k":2}]}',
])
def test_messages_parse_exactly_as_json_loads_parses_them(text):
    import json

    expected = json.loads(text)["data"]
    data = parse_message(text).data
    assert repr(data) == repr(expected) and type(data) is type(expected)


@pytest.mark.parametrize("text", ['{"streamId":1,"action":"a"} x', '{"streamId":1,', "", "[1] [2]"])
def test_a_message_json_refuses_is_refused(text):
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_message(text)
