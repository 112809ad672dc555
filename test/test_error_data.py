"""Errors that carry a value: ``IgorError(data=)``, ``out.send_error(data=)``, a process's errors; binary inside.

Protocol 3 clients get the data as any message's (bytes in place); clients of
protocols 1 and 2 get the error without binary data, told why, and keep working.
"""

import json
import logging
import pickle
import queue
import struct

import numpy
import pytest
import wsraw
from conftest import wait_for

from igor import ConnectionFailed, IgorError, IgorProcess, InputTimeout, ProtocolError, RemoteError

DATA = {"frame": b"\x00\xff", "at": [3, {"raw": bytearray(b"ab")}], "note": "text"}
DATA_BACK = {"frame": b"\x00\xff", "at": [3, {"raw": b"ab"}], "note": "text"}


class BadFrame(IgorError):
    code = 422


def api():
    def raises(out, data):
        raise BadFrame("bad frame", data=DATA)

    async def araises(out, data):
        raise BadFrame("bad frame", data=DATA)

    def yields_then_raises(out, data):
        yield 1
        raise BadFrame("bad frame", data=DATA)

    def sends_error(out, data):
        out.send_error(ValueError("no"), code=409, data={"why": memoryview(b"mv"), "n": 2})

    def overrides(out, data):
        out.send_error(BadFrame("bad frame", data="its own"), data=[b"given"])

    def plain(out, data):
        raise BadFrame("plain")

    def unsendable(out, data):
        raise BadFrame("odd", data={"what": object()})

    def non_contiguous(out, data):
        raise BadFrame("strided", data=numpy.arange(6).reshape(2, 3)[:, ::2])

    def big(out, data):
        raise BadFrame("big", data={"blob": bytes(range(256)) * (data // 256)})

    def echo(out, data):
        return data

    return {"raises": raises, "araises": araises, "yields_then_raises": yields_then_raises,
            "sends_error": sends_error, "overrides": overrides, "plain": plain, "unsendable": unsendable,
            "non_contiguous": non_contiguous, "big": big, "echo": echo}


class Failer(IgorProcess):
    """Fails with the bytes of the first message a client sends it, once that client is surely connected."""

    def run(self):
        message = None
        while message is None and not self.stopping:
            message = self.receive(0.1)
        if message is not None:
            raise IgorError("process failed", data={"got": message.data, "extra": b"\x01"})


# -- the Python client ---------------------------------------------------------------


@pytest.mark.parametrize("action", ["raises", "araises", "yields_then_raises"])
def test_a_raised_error_brings_its_nested_bytes(start_server, connect, action):
    client = connect(start_server(api()))
    with pytest.raises(RemoteError) as info:
        list(client.stream(action))
    assert (str(info.value), info.value.code, info.value.type) == ("BadFrame (422): bad frame", 422, "BadFrame")
    assert info.value.data == DATA_BACK
    assert client.call("echo", b"next") == b"next"


def test_send_error_takes_data_which_wins_over_the_errors_own(start_server, connect):
    client = connect(start_server(api()))
    with pytest.raises(RemoteError) as info:
        client.call("sends_error")
    assert (info.value.code, info.value.type, info.value.data) == (409, "ValueError", {"why": b"mv", "n": 2})
    with pytest.raises(RemoteError) as info:
        client.call("overrides")
    assert info.value.data == [b"given"]


def test_an_error_without_data_has_none_and_no_key_on_the_wire(start_server, connect):
    server = start_server(api())
    client = connect(server)
    with pytest.raises(RemoteError) as info:
        client.call("plain")
    assert info.value.data is None
    sock = v3(server.port)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "plain"}).encode())
    assert recv(sock) == {"streamId": 1, "error": "plain", "code": 422, "type": "BadFrame", "close": True}
    sock.close()


def test_a_process_error_carries_bytes(start_server, connect):
    client = connect(start_server(api(), processes={"failer": Failer()}))
    failures = queue.Queue()
    client.on("failer", error=failures.put)
    client.send_to_process("failer", [b"in"])
    failure = failures.get(timeout=5)
    assert (failure.args[0], failure.type) == ("process failed", "IgorError")
    assert failure.data == {"got": [b"in"], "extra": b"\x01"}


# -- the wire ------------------------------------------------------------------------


def v3(port):
    sock = wsraw.connect(port, {"Sec-WebSocket-Protocol": "igor.v3"})
    assert "hello" in recv(sock)
    return sock


def recv(sock):
    """The next message: a dict for text, ``(head, tail)`` for binary."""
    _, opcode, payload = wsraw.recv_frame(sock)
    if opcode == 1:
        return json.loads(payload)
    (length,) = struct.unpack("!I", payload[:4])
    return json.loads(payload[4:4 + length]), payload[4 + length:]


def test_an_errors_binary_data_is_a_binary_message_with_its_close(start_server):
    sock = v3(start_server(api()).port)
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 5, "action": "raises"}).encode())
    assert recv(sock) == ({"streamId": 5, "error": "bad frame", "code": 422, "type": "BadFrame",
                           "data": {"frame": None, "at": [3, {"raw": None}], "note": "text"},
                           "binary": [{"at": ["data", "frame"], "size": 2},
                                      {"at": ["data", "at", 1, "raw"], "size": 2}],
                           "close": True}, b"\x00\xffab")
    sock.close()


@pytest.mark.parametrize("offer, protocol", [("igor.v2", 2), ("igor", 1)])
def test_old_clients_get_the_error_without_its_binary_data(start_server, offer, protocol, caplog):
    server = start_server(api())
    sock = wsraw.connect(server.port, {"Sec-WebSocket-Protocol": offer})
    with caplog.at_level(logging.WARNING, logger="igor"):
        wsraw.send_frame(sock, 1, json.dumps({"streamId": 1, "action": "raises"}).encode())
        error = recv(sock)
    hint = f"protocol {protocol} cannot carry binary data; connect with igor.v3"
    assert error == {"streamId": 1, "error": f"bad frame [its data was left out: {hint}]", "code": 422,
                     "type": "BadFrame", **({"close": True} if protocol == 2 else {"data": None})}
    if protocol == 1:
        assert recv(sock) == {"streamId": 1, "data": None, "close": True}
    assert any(hint in record.getMessage() and "bad frame" in record.getMessage() for record in caplog.records)
    # Errors without binary go as before, and the server keeps serving.
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 2, "action": "plain"}).encode())
    assert recv(sock)["error"] == "plain"
    if protocol == 1:
        assert recv(sock) == {"streamId": 2, "data": None, "close": True}
    wsraw.send_frame(sock, 1, json.dumps({"streamId": 3, "action": "echo", "data": "y"}).encode())
    assert recv(sock)["data"] == "y"
    sock.close()


def test_a_process_error_reaches_every_protocol_each_as_it_can(start_server):
    process = IgorProcess()  # its run() ends at once: its output is all the test needs
    server = start_server(api(), processes={"p": process})
    new, old, oldest = v3(server.port), wsraw.connect(server.port, {"Sec-WebSocket-Protocol": "igor.v2"}), \
        wsraw.connect(server.port)
    wait_for(lambda: len(server.registry.clients()) == 3, message="three clients")
    process.output.send_error(IgorError("stuck"), code=503, data={"dump": b"\x07"})
    head, tail = recv(new)
    assert head == {"streamId": "p", "error": "stuck", "code": 503, "type": "IgorError", "data": {"dump": None},
                    "binary": [{"at": ["data", "dump"], "size": 1}]} and tail == b"\x07"
    without = "stuck [its data was left out: protocol 2 cannot carry binary data; connect with igor.v3]"
    assert recv(old) == {"streamId": "p", "error": without, "code": 503, "type": "IgorError"}
    assert recv(oldest) == {"streamId": "p", "error": without.replace("protocol 2", "protocol 1"), "code": 503,
                            "type": "IgorError", "data": None}
    process.output.send_error("json only", data={"n": 1})
    for sock in (new, old, oldest):
        assert recv(sock)["data"] == {"n": 1}
        sock.close()


# -- data that cannot go, and size ---------------------------------------------------


@pytest.mark.parametrize("action, why", [("unsendable", "not JSON serialisable"),
                                         ("non_contiguous", "not C-contiguous")])
def test_an_error_whose_data_cannot_go_still_arrives_saying_why(start_server, connect, action, why):
    client = connect(start_server(api()))
    with pytest.raises(RemoteError) as info:
        client.call(action)
    assert info.value.type == "BadFrame" and "[its data was left out: " in info.value.args[0]
    assert why in info.value.args[0] and info.value.data is None
    assert client.call("echo", 1) == 1


def test_error_data_over_max_message_size_arrives_whole_like_any_value(start_server, connect):
    """max_message_size bounds what the server reads; what it sends, data or error, is bounded by its outbox."""
    client = connect(start_server(api(), config={"max_message_size": 1 << 20}))
    size = 3 << 20
    with pytest.raises(RemoteError) as info:
        client.call("big", size, timeout=10)
    assert info.value.data == {"blob": bytes(range(256)) * (size // 256)}
    assert client.call("echo", "still here") == "still here"



def test_every_igor_error_takes_data_and_keeps_its_own_arguments():
    assert (ProtocolError("m", 3, data=[b"x"]).stream_id, ProtocolError("m", 3, data=[b"x"]).data) == (3, [b"x"])
    timeout = InputTimeout("t", data={"waited": 1})
    assert isinstance(timeout, TimeoutError) and timeout.data == {"waited": 1} and str(timeout) == "t"
    assert ConnectionFailed("refused", 403).data is None and IgorError("plain").data is None
    remote = pickle.loads(pickle.dumps(RemoteError("m", 409, "T", None, data=b"\x01")))
    assert (remote.code, remote.type, remote.data) == (409, "T", b"\x01")
    assert pickle.loads(pickle.dumps(BadFrame("b", data=DATA))).data == DATA
