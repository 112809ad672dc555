"""The transport on raw sockets: one test per close code and per HTTP refusal."""

import json
import socket
import struct
import threading

import pytest
import websocket
import wsraw
from conftest import wait_for

from igor import ConfigError, IgorServer

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def echo(out, data):
    return data


@pytest.fixture
def server(start_server):
    return start_server({"echo": echo}, {"max_message_size": 1 << 20})


def call_frame(stream_id, data):
    return json.dumps({"streamId": stream_id, "action": "echo", "data": data}, ensure_ascii=False).encode()


def answer(sock, stream_id):
    for _ in range(100):
        _, opcode, payload = wsraw.recv_frame(sock)
        if opcode == TEXT:
            message = json.loads(payload)
            if message.get("streamId") == stream_id and "data" in message:
                return message["data"]
    raise AssertionError("no answer")


# -- frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, code",
    [
        (dict(opcode=TEXT, payload=b"{}", rsv=4), 1002),             # reserved bit without extension
        (dict(opcode=TEXT, payload=b"{}", mask=False), 1002),       # unmasked client frame
        (dict(opcode=0x3, payload=b""), 1002),                       # unknown data opcode
        (dict(opcode=0xB, payload=b""), 1002),                       # unknown control opcode
        (dict(opcode=CONT, payload=b"x"), 1002),                     # continuation with nothing to continue
        (dict(opcode=PING, payload=b"x", fin=False), 1002),          # fragmented control frame
        (dict(opcode=PING, payload=b"x" * 126), 1002),               # control frame over 125 bytes
        (dict(opcode=BINARY, payload=b"\x00\x01"), 1003),            # binary refused, after reading it
        (dict(opcode=TEXT, payload=b"\xff\xfe"), 1007),              # invalid UTF-8
        (dict(opcode=CLOSE, payload=b"\x03"), 1002),                 # one-byte close payload
        (dict(opcode=CLOSE, payload=struct.pack("!H", 999)), 1002),  # invalid close code
    ],
)
def test_bad_frames_close_with_the_right_code(server, connect, frame, code):
    sock = wsraw.connect(server.port)
    wsraw.send_frame(sock, **frame)
    assert wsraw.recv_close_code(sock) == code
    sock.close()
    assert connect(server).call("echo", "still serving") == "still serving"


def test_binary_frame_payload_is_read_before_refusing(server):
    sock = wsraw.connect(server.port)
    wsraw.send_frame(sock, BINARY, b"x" * 100_000)
    assert wsraw.recv_close_code(sock) == 1003


def test_too_big_is_refused_from_the_header_alone(server):
    sock = wsraw.connect(server.port)
    # Announce 2 MiB but send no payload: the answer must come from the header.
    wsraw.send_frame(sock, TEXT, b"", length=2 << 20)
    assert wsraw.recv_close_code(sock) == 1009


def test_too_big_counts_all_fragments(server):
    sock = wsraw.connect(server.port)
    wsraw.send_frame(sock, TEXT, b"x" * (600 << 10), fin=False)
    wsraw.send_frame(sock, CONT, b"", fin=True, length=600 << 10)
    assert wsraw.recv_close_code(sock) == 1009


def test_new_message_inside_a_fragmented_one_is_1002(server):
    sock = wsraw.connect(server.port)
    wsraw.send_frame(sock, TEXT, b'{"a"', fin=False)
    wsraw.send_frame(sock, TEXT, b"{}")
    assert wsraw.recv_close_code(sock) == 1002


def test_fragmented_message_with_a_ping_between(server):
    sock = wsraw.connect(server.port)
    payload = call_frame(1, "é" * 1000)
    wsraw.send_frame(sock, TEXT, payload[:10], fin=False)
    wsraw.send_frame(sock, PING, b"hi")
    wsraw.send_frame(sock, CONT, payload[10:501], fin=False)
    wsraw.send_frame(sock, CONT, payload[501:], fin=True)
    assert wsraw.recv_frame(sock) == (True, PONG, b"hi")
    assert answer(sock, 1) == "é" * 1000
    sock.close()


def test_utf8_split_across_fragments_is_fine(server):
    sock = wsraw.connect(server.port)
    payload = call_frame(2, "ü")
    cut = payload.index("ü".encode()) + 1  # inside the two-byte character
    wsraw.send_frame(sock, TEXT, payload[:cut], fin=False)
    wsraw.send_frame(sock, CONT, payload[cut:], fin=True)
    assert answer(sock, 2) == "ü"
    sock.close()


def test_close_frame_is_answered(server):
    sock = wsraw.connect(server.port)
    wsraw.send_frame(sock, CLOSE, struct.pack("!H", 1000) + b"bye")
    assert wsraw.recv_close_code(sock) == 1000
    assert sock.recv(10) == b""  # then the server closes TCP
    wait_for(lambda: len(server.registry) == 0)


def test_large_message_round_trip(server):
    sock = wsraw.connect(server.port)
    data = "x" * 700_000
    wsraw.send_frame(sock, TEXT, call_frame(3, data))
    assert answer(sock, 3) == data
    sock.close()


def test_server_pings_idle_clients_and_drops_silent_ones(start_server):
    server = start_server({"echo": echo}, {"ping_interval": 0.2, "ping_timeout": 0.3})
    sock = wsraw.connect(server.port)
    wait_for(lambda: len(server.registry) == 1)
    fin, opcode, payload = wsraw.recv_frame(sock)
    assert opcode == PING
    # Not answering: the server must drop the connection.
    sock.settimeout(5)
    wait_for(lambda: len(server.registry) == 0, message="silent client to be dropped")
    sock.close()


def test_answering_pings_keeps_the_connection(start_server):
    server = start_server({"echo": echo}, {"ping_interval": 0.1, "ping_timeout": 0.3})
    sock = wsraw.connect(server.port)
    for _ in range(5):
        _, opcode, payload = wsraw.recv_frame(sock)
        assert opcode == PING
        wsraw.send_frame(sock, PONG, payload)
    wsraw.send_frame(sock, TEXT, call_frame(9, "alive"))
    assert answer(sock, 9) == "alive"
    sock.close()


def test_tcp_nodelay_is_set_on_accepted_sockets(start_server):
    server = start_server()
    ws = websocket.create_connection(server.url)
    connection = wait_for(lambda: server._transport.connections())[0]
    assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    ws.close()


def test_handshake_request_is_kept_on_the_client(start_server):
    server = start_server({"who": lambda out, data, client: [client.path, client.query, client.headers["x-app"]]})
    ws = websocket.create_connection(server.url + "app/v1?mode=dark", header=["X-App: demo"])
    ws.send(json.dumps({"streamId": 1, "action": "who"}))
    assert json.loads(ws.recv())["data"] == ["/app/v1", {"mode": ["dark"]}, "demo"]
    ws.close()


def test_frames_from_many_threads_never_interleave(start_server):
    """8 handler threads x 1,000 messages plus one 5 MB message, every frame intact and ordered."""
    barrier = threading.Barrier(9, timeout=10)

    def burst(out, data):
        barrier.wait()
        if data == "big":
            out.send("B" * (5 << 20))
        else:
            for i in range(1000):
                out.send([data, i])

    server = start_server({"burst": burst})
    ws = websocket.create_connection(server.url, timeout=30)
    for name in [f"t{n}" for n in range(8)] + ["big"]:
        ws.send(json.dumps({"streamId": name, "action": "burst", "data": name}))
    next_index = {f"t{n}": 0 for n in range(8)}
    closed, big = set(), None
    while len(closed) < 9:
        message = json.loads(ws.recv())
        stream = message["streamId"]
        if message.get("close"):
            closed.add(stream)
        elif stream == "big":
            big = message["data"]
        else:
            assert message["data"] == [stream, next_index[stream]]
            next_index[stream] += 1
    assert big == "B" * (5 << 20)
    assert all(count == 1000 for count in next_index.values())
    ws.close()


# -- handshake ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, method, status",
    [
        ({}, "POST", 400),
        ({"Sec-WebSocket-Key": None}, "GET", 400),
        ({"Sec-WebSocket-Key": "short"}, "GET", 400),
        ({"Sec-WebSocket-Version": "8"}, "GET", 400),
        ({"Host": None}, "GET", 400),
        ({"Host": "evil.example:80"}, "GET", 403),
        ({"Origin": "https://evil.example"}, "GET", 403),
        ({"Origin": "null"}, "GET", 403),
        ({"Origin": "http://localhost.evil.example"}, "GET", 403),
        # Without a token, a page on another localhost port is refused (see the next test).
        ({"Origin": "http://localhost:3000"}, "GET", 403),
        ({"Origin": "https://127.0.0.1"}, "GET", 403),
        ({"Origin": "http://[::1]:8080"}, "GET", 403),
        ({"Origin": "file://"}, "GET", 101),
        ({"Host": "localhost:1234"}, "GET", 101),
    ],
)
def test_handshake_checks(server, headers, method, status):
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, headers, method=method)) == status


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_without_a_token_only_the_servers_own_origin_and_file_get_in(server, host):
    own = {"Origin": f"http://{host}:{server.port}"}
    other = {"Origin": f"http://{host}:{server.port + 1 if server.port < 65535 else 1}"}
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, own)) == 101
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, other)) == 403
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Origin": "file://"})) == 101
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {})) == 101  # Node, Python: no Origin


@pytest.mark.parametrize("origin, status", [
    ("http://localhost:3000", 101), ("https://127.0.0.1", 101), ("http://[::1]:8080", 101),
    ("https://evil.example", 403), ("null", 403),
])
def test_with_a_token_any_loopback_origin_may_try(start_server, origin, status):
    server = start_server(config={"token": "s3cret"})
    headers = {"Origin": origin, "Authorization": "Bearer s3cret"}
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, headers)) == status


def test_garbage_request_is_400_and_logged(server, caplog):
    with caplog.at_level("WARNING", logger="igor"):
        assert wsraw.handshake_status(server.port, b"HELLO\r\n\r\n") == 400
    assert "refused handshake" in caplog.text


def test_configured_origins(start_server):
    server = start_server(config={"allowed_origins": ["null", "https://app.example"]})
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Origin": "null"})) == 101
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Origin": "https://app.example"})) == 101
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Origin": "http://localhost"})) == 403


@pytest.mark.parametrize(
    "headers, path, status",
    [
        ({}, "/", 401),
        ({}, "/?token=wrong", 401),
        ({}, "/?token=s3cret", 101),
        ({"Authorization": "Bearer s3cret"}, "/", 101),
        ({"Authorization": "Bearer nope"}, "/", 401),
        ({"Sec-WebSocket-Protocol": "igor, igor.token.s3cret"}, "/", 101),
        ({"Sec-WebSocket-Protocol": "igor, igor.token.s3cre"}, "/", 401),
    ],
)
def test_token(start_server, headers, path, status):
    server = start_server(config={"token": "s3cret"})
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, headers, path)) == status


def test_subprotocol_answer_never_echoes_the_token(start_server):
    server = start_server(config={"token": "s3cret"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(wsraw.request(server.port, {"Sec-WebSocket-Protocol": "igor, igor.token.s3cret"}))
        status, head = wsraw.read_http_head(sock)
    assert status == 101
    assert b"Sec-WebSocket-Protocol: igor\r\n" in head + b"\r\n" and b"s3cret" not in head


def test_generated_token_and_env_token(start_server, monkeypatch):
    generated = start_server(config={"token": True})
    assert len(generated.token) >= 22  # 32 random bytes, url-safe base64
    assert wsraw.handshake_status(generated.port, wsraw.request(generated.port)) == 401
    monkeypatch.setenv("IGOR_TOKEN", "from-env")
    assert IgorServer(config={"port": 0}).token == "from-env"
    assert IgorServer(config={"port": 0, "token": False}).token is None


def test_max_clients(start_server):
    server = start_server(config={"max_clients": 2})
    socks = [wsraw.connect(server.port) for _ in range(2)]
    wait_for(lambda: len(server.registry) == 2)
    assert wsraw.handshake_status(server.port, wsraw.request(server.port)) == 503
    socks[0].close()
    wait_for(lambda: len(server.registry) == 1)
    socks.append(wsraw.connect(server.port))
    for sock in socks:
        sock.close()


def test_binding_beyond_loopback_needs_a_token():
    with pytest.raises(ConfigError):
        IgorServer(config={"host": "0.0.0.0", "port": 0}).start()


def test_wrong_version_answer_names_the_supported_one(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(wsraw.request(server.port, {"Sec-WebSocket-Version": "8"}))
        status, head = wsraw.read_http_head(sock)
    assert status == 400 and b"Sec-WebSocket-Version: 13" in head


def test_connection_header_must_ask_for_the_upgrade(server):
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Connection": "keep-alive"})) == 400
    assert wsraw.handshake_status(server.port, wsraw.request(server.port, {"Connection": "keep-alive, Upgrade"})) == 101
