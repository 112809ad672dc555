"""The Python client's connection life: clear failures to connect, and a clean close."""

import logging
import socket
import threading

import pytest

from igor import ConnectionClosed, ConnectionFailed, IgorClient, IgorError, IgorProcess
from igor.handshake import accept_key


def free_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wrong_or_missing_token_is_401(start_server):
    server = start_server(config={"token": "right"})
    for token in (None, "wrong"):
        with pytest.raises(ConnectionFailed) as info:
            IgorClient(server.url, token=token)
        assert info.value.status == 401
        assert isinstance(info.value, IgorError)
        assert "token" in str(info.value) and "401" in str(info.value)
        assert info.value.__cause__ is not None  # the websocket-client error, chained


def test_the_token_in_the_url_is_not_repeated_in_the_message(start_server):
    server = start_server(config={"token": "right"})
    with pytest.raises(ConnectionFailed) as info:
        IgorClient(f"ws://127.0.0.1:{server.port}/?token=guessed-secret")
    assert info.value.status == 401
    assert "guessed-secret" not in str(info.value)


def test_a_foreign_origin_is_403(start_server):
    server = start_server()
    with pytest.raises(ConnectionFailed) as info:
        IgorClient(server.url, token=server.token, headers={"Origin": "http://evil.example"})
    assert info.value.status == 403
    assert "Origin" in str(info.value)


def test_a_full_server_is_503(start_server, connect):
    server = start_server(config={"max_clients": 1})
    connect(server)
    with pytest.raises(ConnectionFailed) as info:
        IgorClient(server.url, token=server.token)
    assert info.value.status == 503


def test_a_refused_tcp_connection_has_no_status():
    url = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(ConnectionFailed) as info:
        IgorClient(url, timeout=5)
    assert info.value.status is None
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert url in str(info.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "not a url"])
def test_a_bad_url_is_connection_failed(url):
    with pytest.raises(ConnectionFailed) as info:
        IgorClient(url, timeout=5)
    assert info.value.status is None
    assert info.value.__cause__ is not None


class Pusher(IgorProcess):
    def run(self):
        while not self.wait(0.002):
            self.output.send("tick", "t")


def test_close_is_clean_every_time(start_server, caplog):
    """The reader alone reads the server's close answer: code 1000 back, nothing logged, every time.

    While close() and the reader both read, the close answer could be taken
    by close() and the reader woke up to a shut socket: close_code None and
    a "reader stopped" record.
    """
    def forever(out, data):
        while not out.wait(0.002):
            out.send("x")

    server = start_server({"forever": forever}, processes={"pusher": Pusher()})
    caplog.set_level(logging.DEBUG, logger="igor.client")
    caplog.set_level(logging.WARNING, logger="igor")
    for _ in range(20):
        client = IgorClient(server.url, token=server.token)
        stream = client.stream("forever")
        next(stream)  # frames are flowing while we close
        client.close()
        assert not client._reader.is_alive()
        # The server answers a close with the code it received: ours, 1000.
        assert client.close_code == 1000
        with pytest.raises(ConnectionClosed) as info:
            list(stream)
        assert info.value.code == 1000
        with pytest.raises(ConnectionClosed) as info:
            client.call("forever")
        assert info.value.code == 1000
    assert [r.getMessage() for r in caplog.records] == []


def test_close_after_the_server_went_away(start_server):
    server = start_server()
    client = IgorClient(server.url, token=server.token)
    server.shutdown()
    assert client.wait_closed(5) and client.close_code == 1001
    client.close()  # nothing left to close: returns, raises nothing
    assert not client.connected


def test_close_from_a_listener_on_the_reader_thread(start_server):
    server = start_server(processes={"pusher": Pusher()})
    client = IgorClient(server.url, token=server.token)
    closed = threading.Event()

    def close_now(data):
        client.close()
        closed.set()

    client.on("tick", close_now)
    assert closed.wait(5)  # the reader did not wait on itself
    assert client.wait_closed(5)
    client._reader.join(5)
    assert client.close_code == 1000 and not client._reader.is_alive()


def test_a_waiting_call_gets_the_servers_close_code_and_reason(start_server, connect):
    def kick(out, data, client):
        client.close(4000, "kicked out")

    client = connect(start_server({"kick": kick}))
    with pytest.raises(ConnectionClosed) as info:
        client.call("kick")
    closed = info.value
    assert (closed.code, closed.reason) == (4000, "kicked out")
    assert "4000" in str(closed) and "kicked out" in str(closed)
    assert isinstance(closed, ConnectionError) and isinstance(closed, IgorError)
    assert (client.close_code, client.close_reason) == (4000, "kicked out")
    with pytest.raises(ConnectionError) as later:  # what a caller who knows no igor would catch
        client.call("kick")
    assert (later.value.code, later.value.reason) == (4000, "kicked out")


def test_a_server_shutdown_is_code_1001(start_server, connect):
    server = start_server({"kick": lambda out, data: None})
    client = connect(server)
    server.shutdown()
    assert client.wait_closed(5)
    with pytest.raises(ConnectionClosed) as info:
        client.call("kick")
    assert info.value.code == 1001 and info.value.reason == client.close_reason


class OneConnectionServer:
    """Accepts one WebSocket, waits for the client's first message, then does ``then(sock)``.

    For what the real server never does: drop a connection with no close
    frame, or send a close frame with no code.
    """

    def __init__(self, then):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.then = then
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        sock, _ = self.listener.accept()
        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            key = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: igor.v2\r\n\r\n")
                         .encode())
            sock.recv(4096)  # the client's call
            self.then(sock)

    def close(self):
        self.thread.join(5)
        self.listener.close()


@pytest.mark.parametrize(("then", "code"), [
    (lambda sock: None, 1006),  # the socket just closes
    (lambda sock: sock.sendall(b"\x88\x00"), 1005),  # a close frame with no payload
])
def test_a_close_with_no_code_is_named_as_rfc_6455_does(then, code):
    server = OneConnectionServer(then)
    client = IgorClient(server.url, timeout=5)
    try:
        with pytest.raises(ConnectionClosed) as info:
            client.call("anything")
        assert (info.value.code, info.value.reason) == (code, "")
        assert client.close_code == code
    finally:
        client.close()
        server.close()
