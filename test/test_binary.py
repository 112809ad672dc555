"""Protocol 3: binary values anywhere in a message, both ways, every message kind; what v1/v2 clients get."""

import json
import logging
import queue
import struct
import threading

import numpy
import pytest
import websocket
import wsraw
from conftest import wait_for

from igor import BinaryUnsupported, ConnectionClosed, IgorError, IgorProcess, RemoteError, StreamClosed
from igor.binary import unpack

IMAGE = {"image": b"\x89PNG", "w": 2}
NESTED = {"a": [1, b"\x00\xff", {"b": bytearray(b"ba"), "c": [memoryview(b"mv")]}], "s": "text", "e": b""}
NESTED_BACK = {"a": [1, b"\x00\xff", {"b": b"ba", "c": [b"mv"]}], "s": "text", "e": b""}


def kinds(value):
    """Each value's type name, by path, to show what the handler got."""
    if isinstance(value, dict):
        return {key: kinds(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [kinds(inner) for inner in value]
    return type(value).__name__


def api():
    def echo(out, data):
        return data

    def kinds_of(out, data):
        return kinds(data)

    def send_image(out, data):
        out.send(IMAGE)

    def gen(out, data):
        yield NESTED
        yield b"bare"
        yield {"plain": True}

    def inputs(out, data):
        return [out.receive(), out.receive()]

    async def ainputs(out, data):
        return [await out.areceive(), await out.areceive()]

    def matrix(out, data):
        return {"m": numpy.arange(6, dtype=numpy.uint16).reshape(2, 3)}

    def fortran(out, data):
        return numpy.asfortranarray(numpy.arange(6, dtype=numpy.uint16).reshape(2, 3))

    def ask(out, data, client_id, server):
        return server.call_client(client_id, "twice", {"b": b"ab", "n": 1})

    def sink(out, data):
        out.wait(30)

    return {"echo": echo, "kinds": kinds_of, "send_image": send_image, "gen": gen, "inputs": inputs,
            "ainputs": ainputs, "matrix": matrix, "fortran": fortran, "ask": ask, "sink": sink}


class Echoer(IgorProcess):
    """Pushes back, as binary, what each client sends it; records what it got."""

    def __init__(self):
        super().__init__()
        self.got = queue.Queue()

    def run(self):
        while not self.stopping:
            message = self.receive(0.1)
            if message is not None:
                self.got.put(message.data)
                self.output.send("back", message.data, client_id=message.client_id)


# -- the Python client, each path ------------------------------------------------


def test_nested_bytes_round_trip_through_call_data_and_return(start_server, connect):
    client = connect(start_server(api()))
    assert client.protocol == 3
    assert client.call("echo", b"abc") == b"abc"
    assert client.call("echo", NESTED) == NESTED_BACK
    assert client.call("kinds", NESTED) == {"a": ["int", "bytes", {"b": "bytes", "c": ["bytes"]}], "s": "str",
                                             "e": "bytes"}
    assert client.call("echo", {"plain": [1, "x"]}) == {"plain": [1, "x"]}  # text as before


def test_yielded_values_and_input_carry_bytes(start_server, connect):
    client = connect(start_server(api()))
    assert list(client.stream("gen")) == [NESTED_BACK, b"bare", {"plain": True}]
    for action in ("inputs", "ainputs"):
        stream = client.stream(action)
        stream.send(b"one")
        stream.send({"two": [b"2"]})
        assert list(stream) == [[b"one", {"two": [b"2"]}]], action


def test_numpy_arrays_go_as_their_raw_bytes(start_server, connect):
    client = connect(start_server(api()))
    assert client.call("matrix") == {"m": numpy.arange(6, dtype=numpy.uint16).tobytes()}
    assert client.call("echo", numpy.arange(4, dtype=numpy.float32)) == numpy.arange(4, dtype=numpy.float32).tobytes()
    with pytest.raises(RemoteError, match="not C-contiguous") as info:
        client.call("fortran")
    assert info.value.type == "TypeError"
    with pytest.raises(TypeError, match="not C-contiguous"):
        client.call("echo", numpy.arange(6).reshape(2, 3)[:, ::2])


def test_process_inbox_and_push_carry_bytes(start_server, connect):
    process = Echoer()
    client = connect(start_server(api(), processes={"echoer": process}))
    pushed = queue.Queue()
    client.on("back", pushed.put)
    client.send_to_process("echoer", NESTED)
    assert process.got.get(timeout=5) == NESTED_BACK
    assert pushed.get(timeout=5) == NESTED_BACK


def test_call_client_carries_bytes_both_ways(start_server, connect):
    client = connect(start_server(api()))
    seen = []

    def twice(data):
        seen.append(data)
        return {"back": data["b"] * 2, "arr": numpy.array([1, 2], dtype=numpy.uint8)}

    client.expose("twice", twice)
    assert client.call("ask") == {"back": b"abab", "arr": b"\x01\x02"}
    assert seen == [{"b": b"ab", "n": 1}]


def test_an_exposed_functions_error_brings_its_data_to_call_client(start_server, connect, caplog):
    caught = queue.Queue()

    def ask_and_catch(out, data, client_id, server):
        try:
            server.call_client(client_id, data, None, timeout=10)
        except RemoteError as exc:
            caught.put(exc)

    class DialogClosed(IgorError):
        code = 409

    def refuse(data):
        raise DialogClosed("closed", data={"frame": b"\x00\xff", "n": [1, bytearray(b"z")]})

    def refuse_with_what_json_cannot_carry(data):
        raise IgorError("odd", data={"x": object()})

    client = connect(start_server({"ask": ask_and_catch}))
    client.expose("refuse", refuse)
    client.expose("odd", refuse_with_what_json_cannot_carry)
    client.call("ask", "refuse")
    error = caught.get(timeout=5)
    assert (str(error.args[0]), error.code, error.type) == ("closed", 409, "DialogClosed")
    assert error.data == {"frame": b"\x00\xff", "n": [1, b"z"]}
    # Data the wire cannot carry is left out, with a warning; the error itself still gets through.
    with caplog.at_level(logging.WARNING, logger="igor.client"):
        client.call("ask", "odd")
        error = caught.get(timeout=5)
    assert (str(error.args[0]), error.type, error.data) == ("odd", "IgorError", None)
    assert any("cannot be sent" in record.getMessage() for record in caplog.records)


def test_an_error_answer_by_hand_brings_its_data(start_server):
    """The wire of docs/protocol.md: an error answer's "data", JSON under protocol 2, bytes under 3."""
    server = start_server(api())
    old = wsraw.connect(server.port, {"Sec-WebSocket-Protocol": "igor.v2"})
    new, _ = v3(server.port)
    wait_for(lambda: len(server.registry.clients()) == 2)
    ids = {client.protocol: client.id for client in server.registry.clients()}
    errors = queue.Queue()

    def ask(client_id):
        try:
            server.call_client(client_id, "f", None, timeout=5)
        except RemoteError as exc:
            errors.put(exc)

    threading.Thread(target=ask, args=(ids[2],)).start()
    call = recv(old)
    wsraw.send_frame(old, 1, json.dumps({"callId": call["callId"], "error": "no", "code": 410, "type": "Gone",
                                         "data": {"why": ["json"]}}).encode())
    error = errors.get(timeout=5)
    assert (error.code, error.type, error.data) == (410, "Gone", {"why": ["json"]})
    threading.Thread(target=ask, args=(ids[3],)).start()
    call = recv(new)
    send_binary(new, {"callId": call["callId"], "error": "no", "type": "Gone", "data": {"raw": None},
                     "binary": [{"at": ["data", "raw"], "size": 3}]},
                b"\x01\x02\x03")
    error = errors.get(timeout=5)
    assert (error.code, error.type, error.data) == (500, "Gone", {"raw": b"\x01\x02\x03"})
    old.close()
    new.close()


# -- the wire, byte by byte --------------------------------------------------------


def v3(port):
    sock = wsraw.connect(port, {"Sec-WebSocket-Protocol": "igor.v3"})
    _, opcode, payload = wsraw.recv_frame(sock)
    assert opcode == 1
    return sock, json.loads(payload)


def recv(sock):
    """The next message: a dict for text, ``(head bytes, tail bytes)`` for binary."""
    _, opcode, payload = wsraw.recv_frame(sock)
    if opcode == 1:
        return json.loads(payload)
    assert opcode == 2, opcode
    (length,) = struct.unpack("!I", payload[:4])
    return payload[4:4 + length], payload[4 + length:]


def send_binary(sock, head, *values):
    head = head if isinstance(head, bytes) else json.dumps(head, separators=(",", ":")).encode()
    wsraw.send_frame(sock, 2, struct.pack("!I", len(head)) + head + b"".join(values))


def test_the_hello_comes_first_with_the_servers_figures(start_server):
    server = start_server(api(), config={"max_message_size": 1 << 20, "inbox_size": 10,
                                         "max_client_memory": 32 << 20})
    sock, hello = v3(server.port)
    assert hello == {"hello": {"protocol": 3, "max_message_size": 1 << 20, "inbox_size": 10,
                               "input_window": 2 << 20}}
    sock.close()


def test_a_binary_message_is_its_head_length_head_and_bytes(start_server):
    server = start_server(api())
    sock, _ = v3(server.port)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 7, "action": "send_image"}).encode())
    _, opcode, payload = wsraw.recv_frame(sock)
    head = b'{"streamId":7,"data":{"image":null,"w":2},"binary":[{"at":["data","image"],"size":4}]}'
    assert opcode == 2
    assert payload == struct.pack("!I", len(head)) + head + b"\x89PNG"
    assert recv(sock) == {"streamId": 7, "close": True}
    # A bare value, as the last one carrying the close.
    send_binary(sock, {"streamId": 8, "action": "echo", "data": None, "binary": [{"at": ["data"], "size": 3}]}, b"xyz")
    assert recv(sock) == (b'{"streamId":8,"data":null,"binary":[{"at":["data"],"size":3}],"close":true}', b"xyz")
    sock.close()


def test_input_is_acknowledged_with_read(start_server):
    server = start_server(api())
    sock, _ = v3(server.port)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "inputs"}).encode())
    send_binary(sock, {"streamId": 1, "data": None, "binary": [{"at": ["data"], "size": 1}]}, b"a")
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "data": "b"}).encode())
    assert recv(sock) == {"streamId": 1, "read": 1}
    assert recv(sock) == {"streamId": 1, "read": 2}
    head, tail = recv(sock)
    assert unpack(struct.pack("!I", len(head)) + head + tail) == {"streamId": 1, "data": [b"a", "b"], "close": True}
    sock.close()


@pytest.mark.parametrize("payload, stream_id, why", [
    (b"\x00\x00", None, "shorter than its 4-byte head length"),
    (b"\x00\x00\x00\x09{}", None, "runs past its end"),
    (b"\x00\x00\x00\x03{x}", None, "not JSON"),
    (b"\x00\x00\x00\x02[]", None, "JSON object"),
    (b"\x00\x00\x00\x02\xff\xfe", None, "not JSON"),
])
def test_malformed_binary_messages_get_400_and_the_connection_stays(start_server, payload, stream_id, why):
    server = start_server(api())
    sock, _ = v3(server.port)
    wsraw.send_frame(sock, 2, payload)
    error = recv(sock)
    assert error["code"] == 400 and error["type"] == "ProtocolError" and why in error["error"], error
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "echo", "data": 5}).encode())
    assert recv(sock) == {"streamId": 1, "data": 5, "close": True}
    sock.close()


@pytest.mark.parametrize("binary, data, tail, why", [
    (None, None, b"", "non-empty array"),
    ([], None, b"", "non-empty array"),
    ([{"at": ["data"], "size": -1}], None, b"", "non-negative"),
    ([{"at": ["data"], "size": True}], None, b"x", "non-negative"),
    ([{"at": ["data"], "size": 2}], None, b"x", "add up"),
    ([{"at": ["data"], "size": 1}], None, b"xy", "add up"),
    ([{"at": ["other"], "size": 1}], None, b"x", 'starts with "data"'),
    ([{"at": [], "size": 1}], None, b"x", 'starts with "data"'),
    ([{"at": ["data", "k"], "size": 1}], {"k": 1}, b"x", "does not lead to a null"),
    ([{"at": ["data", "k"], "size": 1}, {"at": ["data", "k"], "size": 1}], {"k": None}, b"xy", "repeat"),
    ([{"at": ["data", "k", 0], "size": 1}, {"at": ["data", "k"], "size": 1}], {"k": [None]}, b"xy",
     "does not lead to a null"),
    ([{"at": ["data", "k"], "size": 1}, {"at": ["data", "k", 0], "size": 1}], {"k": None}, b"xy",
     "does not lead to a value"),
    ([{"at": ["data", 0], "size": 1}], {"0": None}, b"x", "does not lead to a value"),
    ([{"at": ["data", 3], "size": 1}], [None], b"x", "does not lead to a value"),
    ([{"at": ["data"], "size": 0}] * 1025, None, b"", "over 1024"),
])
def test_bad_binary_tables_get_400_on_their_stream(start_server, binary, data, tail, why):
    server = start_server(api())
    sock, _ = v3(server.port)
    head = {"streamId": 4, "action": "echo", "data": data}
    if binary is not None:
        head["binary"] = binary
    send_binary(sock, head, tail)
    error = recv(sock)
    assert error["code"] == 400 and error["streamId"] == 4 and why in error["error"], error
    assert recv(sock) == {"streamId": 4, "close": True}
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 4, "action": "echo", "data": 5}).encode())
    assert recv(sock) == {"streamId": 4, "data": 5, "close": True}
    sock.close()


# -- limits ---------------------------------------------------------------------------


def test_a_binary_message_over_max_message_size_closes_with_1009(start_server, connect):
    client = connect(start_server(api(), config={"max_message_size": 1 << 20}))
    with pytest.raises(ConnectionClosed):
        client.call("echo", bytes(1 << 20))  # the head makes it one message over the limit
    assert client.wait_closed(5) and client.close_code == 1009


def test_binary_input_over_the_budget_gets_429_and_is_given_back(start_server, connect):
    server = start_server(api(), config={"max_client_memory": 1 << 20})
    client = connect(server)
    stream = client.stream("sink")
    for _ in range(8):
        try:
            stream.send(bytes(300_000))
        except StreamClosed:  # the error has come back already
            break
    with pytest.raises(RemoteError) as info:
        list(stream)
    assert info.value.code == 429
    wait_for(lambda: server.stats()["held_bytes"] == 0 and server.stats()["open_streams"] == 0,
             message="the budget given back")
    assert client.call("echo", b"still here") == b"still here"


def test_binary_counts_in_the_outbox_bytes(start_server):
    """A client that reads nothing holds no more than send_queue_bytes of binary before it is cut off."""
    sent = queue.Queue()

    def flood(out, data):
        try:
            for _ in range(64):
                out.send(bytes(1 << 20))
                sent.put(1)
        except Exception as exc:
            sent.put(exc)

    server = start_server({"flood": flood}, config={"send_queue_bytes": 4 << 20, "send_timeout": 0.5})
    sock, _ = v3(server.port)
    sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "flood"}).encode())
    results = []
    while not results or results[-1] == 1:
        results.append(sent.get(timeout=10))
    # Socket buffers take some; the outbox at most 4 MiB more: far from all 64.
    assert len(results) - 1 < 32 and not isinstance(results[-1], int)
    sock.close()


# -- protocols 1 and 2 ----------------------------------------------------------------


@pytest.mark.parametrize("offer, protocol", [("igor.v2", 2), ("igor", 1), (None, 1)])
def test_old_clients_get_415_on_the_stream_and_keep_working(start_server, offer, protocol, caplog):
    server = start_server(api())
    sock = wsraw.connect(server.port, {"Sec-WebSocket-Protocol": offer} if offer else None)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "echo", "data": "x"}).encode())
    first = recv(sock)  # no hello: it is protocol 3's
    assert first["data"] == "x"
    if protocol == 1:
        assert recv(sock) == {"streamId": 1, "data": None, "close": True}
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 2, "action": "gen"}).encode())
    error = recv(sock)
    assert error["code"] == 415 and error["type"] == "BinaryUnsupported" and error["streamId"] == 2
    assert f"protocol {protocol} cannot carry binary data; connect with igor.v3" in error["error"]
    assert recv(sock) == ({"streamId": 2, "close": True} if protocol == 2 else
                          {"streamId": 2, "data": None, "close": True})
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 3, "action": "echo", "data": "y"}).encode())
    assert recv(sock)["data"] == "y"
    # A binary frame from them is still refused with 1003, as it always was.
    wsraw.send_frame(sock, 2, b"\x00\x00\x00\x02{}")
    assert wsraw.recv_close_code(sock) == 1003
    sock.close()


def test_old_clients_are_skipped_by_binary_pushes_logged_once(start_server, caplog):
    process = Echoer()
    server = start_server(api(), processes={"echoer": process})
    old = wsraw.connect(server.port, {"Sec-WebSocket-Protocol": "igor.v2"})
    new, _ = v3(server.port)
    wait_for(lambda: len(server.registry.clients()) == 2)
    with caplog.at_level(logging.WARNING, logger="igor"):
        process.output.send("pic", b"\x01")
        process.output.send("pic", {"p": b"\x02"})
        process.output.send("text", "plain")
    assert recv(old) == {"streamId": "echoer", "action": "text", "data": "plain"}
    assert recv(new)[1] == b"\x01" and recv(new)[1] == b"\x02"
    assert recv(new) == {"streamId": "echoer", "action": "text", "data": "plain"}
    skipped = [r for r in caplog.records if "cannot carry binary" in r.getMessage()]
    assert len(skipped) == 1
    old.close()
    new.close()


def test_call_client_with_bytes_to_an_old_client_raises_at_once(start_server):
    server = start_server(api())
    sock = wsraw.connect(server.port, {"Sec-WebSocket-Protocol": "igor.v2"})
    wait_for(lambda: server.registry.clients())
    (client,) = server.registry.clients()
    with pytest.raises(TypeError, match="protocol 2 cannot carry binary") as info:
        server.call_client(client.id, "f", {"b": b"x"}, timeout=5)
    assert isinstance(info.value, BinaryUnsupported)
    assert server.dispatcher._peer(client).calls == {}  # nothing left pending
    answer = []
    caller = threading.Thread(target=lambda: answer.append(server.call_client(client.id, "f", "json", timeout=5)))
    caller.start()
    call = recv(sock)  # the first thing it ever got is the JSON call
    assert call["action"] == "f" and call["data"] == "json"
    wsraw.send_frame(sock, 1, json.dumps({"callId": call["callId"], "data": "ok"}).encode())
    caller.join(5)
    assert answer == ["ok"]
    sock.close()


def test_the_python_client_refuses_bytes_to_an_old_server(start_server, connect):
    client = connect(start_server(api()))
    client.protocol = 2  # as if the server had chosen igor.v2
    with pytest.raises(BinaryUnsupported):
        client.call("echo", b"x")
    with pytest.raises(BinaryUnsupported):
        client.upload("sink", b"x")
    assert client.call("echo", "json") == "json"


def test_a_websockets_library_client_sees_the_same_wire(start_server):
    """websocket-client, offering igor.v3, gets the binary frame a browser would."""
    server = start_server(api())
    ws = websocket.create_connection(server.url, subprotocols=["igor.v3"])
    assert ws.getsubprotocol() == "igor.v3"
    assert json.loads(ws.recv())["hello"]["protocol"] == 3
    ws.send(json.dumps({"streamId": 1, "action": "echo", "data": {"x": [1]}}))
    assert json.loads(ws.recv()) == {"streamId": 1, "data": {"x": [1]}, "close": True}
    ws.send(json.dumps({"streamId": 2, "action": "send_image"}))
    opcode, payload = ws.recv_data()
    assert opcode == websocket.ABNF.OPCODE_BINARY and unpack(payload) == {"streamId": 2, "data": IMAGE}
    ws.close()
