"""Code written for the original Igor: its CONFIG dict, its file server, its protocol's shapes."""

import http.client
import json
import os
import threading
import warnings

import pytest
import websocket
from conftest import recv_json

from igor import CONFIG, IgorProcess, IgorServer
from igor.config import Config


def get(port, path, method="GET", host="127.0.0.1"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path, headers={"Host": f"{host}:{port}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


@pytest.fixture
def file_server(tmp_path, monkeypatch, start_server):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    (root / "img").mkdir()
    (root / "img" / "p.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    # The original's server script: CONFIG written, then IgorServer(api) with no config.
    monkeypatch.setitem(CONFIG, "port", 0)
    monkeypatch.setitem(CONFIG, "file_server_config", {"enable": True, "port": 0, "root_directory": str(root)})
    with pytest.warns(DeprecationWarning, match="read-only"):
        server = IgorServer(api={"echo": lambda out, data, **kwargs: out.send(data)})
    server.run_forever(threaded=True)
    yield server, server._file_server.port
    server.shutdown()


def test_file_server_serves_its_root_read_only(file_server):
    server, port = file_server
    status, headers, body = get(port, "/a.txt")
    assert (status, body) == (200, b"hello") and "Access-Control-Allow-Origin" not in headers
    status, headers, body = get(port, "/img/p.png", "HEAD")
    assert status == 200 and headers["Content-Type"] == "image/png" and body == b""
    for path in ("/../secret.txt", "/link.txt", "/%2e%2e/secret.txt", "/nope.txt", "/img/"):
        assert get(port, path)[0] == 404, path
    assert get(port, "/a.txt", "POST")[0] == 501  # the original wrote any path a POST named
    assert get(port, "/a.txt", host="evil.example")[0] == 403  # DNS rebinding
    # The WebSocket side is the ordinary server.
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "x", "action": "echo", "data": "DATA"}))
    assert recv_json(ws) == {"streamId": "x", "data": "DATA"}
    ws.close()


def test_file_server_stops_with_the_server(file_server):
    server, port = file_server
    server.shutdown()
    with pytest.raises(OSError):
        get(port, "/a.txt")


def test_file_server_needs_a_root():
    with pytest.raises(Exception, match="root_directory"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Config.from_mapping({"file_server_config": {"enable": True, "port": 0, "root_directory": None}})
    # Off, as in the original's defaults: accepted quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Config.from_mapping({"file_server_config": {"enable": False, "port": 8080, "root_directory": None}})


def test_keys_only_the_original_had_are_accepted_with_a_warning():
    with pytest.warns(DeprecationWarning, match="file_server"):
        Config.from_mapping({"file_server": True})
    with pytest.warns(DeprecationWarning, match="'file'"):
        config = Config.from_mapping({"logging": {"level": "ERROR", "file_name": None}})
    assert config.logging["level"] == 40


def test_protocol_1_messages_all_carry_data(start_server):
    """The original's clients read message['data'] of whatever arrives: closes and errors included."""
    ready = threading.Event()

    class Once(IgorProcess):
        def run(self):
            ready.wait(5)
            self.output.send_error("failed")
            self.output.finish()

    server = start_server({"echo": lambda out, data: data}, processes={"p": Once()})
    v1 = websocket.create_connection(server.url)
    v2 = websocket.create_connection(server.url, subprotocols=["igor.v2"])
    for ws in (v1, v2):
        ws.send(json.dumps({"streamId": 1, "action": "introduce_self", "data": {"client_id": f"c{id(ws)}"}}))
        ws.send(json.dumps({"streamId": 2, "action": "nope"}))
    v1_messages = [recv_json(v1) for _ in range(4)]
    assert all("data" in message for message in v1_messages), v1_messages
    assert v1_messages[1] == {"streamId": 1, "data": None, "close": True}
    v2_messages = [recv_json(v2) for _ in range(4)]
    assert v2_messages[1] == {"streamId": 1, "close": True}  # version 2 joins closes to data: no null there
    ready.set()
    assert recv_json(v1) == {"streamId": "p", "error": "failed", "code": 500, "type": "Error", "data": None}
    assert recv_json(v1) == {"streamId": "p", "data": None, "close": True}
    assert recv_json(v2) == {"streamId": "p", "error": "failed", "code": 500, "type": "Error"}
    assert recv_json(v2) == {"streamId": "p", "close": True}
    v1.close()
    v2.close()


def test_the_old_name_of_the_servers_client_still_works_with_a_warning():
    import igor

    with pytest.warns(DeprecationWarning, match="igor.ConnectedClient"):
        from igor import Client
    assert Client is igor.ConnectedClient
    assert "Client" not in igor.__all__ and "ConnectedClient" in igor.__all__
