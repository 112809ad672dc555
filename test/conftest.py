import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from igor import IgorClient, IgorServer, flatten

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ready_process import ready_processes  # noqa: E402,F401 - a fixture every test module may use


def pytest_configure(config):
    # Long runs carry it so they can be picked out (-m slow); CI runs them all the same.
    config.addinivalue_line("markers", "slow: a long soak or attack (tens of seconds); still run by default")
    config.addinivalue_line("markers", "long: minutes long; run only when asked for, with -m long")


def pytest_collection_modifyitems(config, items):
    if "long" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="minutes long: run it with -m long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def wait_for(condition, timeout=5.0, interval=0.01, message="condition"):
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(autouse=True)
def no_client_left_reconnecting():
    """A Python client left reconnecting by a test would retry for ever beside the tests that follow."""
    yield
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "igor-client-reconnect"],
             message="every reconnecting client to be closed by its test")


@pytest.fixture
def start_server():
    """Start servers on ephemeral ports; every one is shut down after the test."""
    servers = []

    def start(api=None, config=None, processes=None):
        server = IgorServer(api=flatten(api or {}), config={"port": 0, **(config or {})})
        for process_id, thread in (processes or {}).items():
            server.add_process(process_id, thread)
        server.run_forever(threaded=True)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        assert not server.running, "the server did not stop"


@pytest.fixture
def connect():
    """Open Python clients; every one is closed after the test."""
    clients = []

    def open_client(server, **kwargs):
        client = IgorClient(server.url, token=server.token, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def server_process():
    """test/transfer_server.py in a process of its own (its RSS measured apart from the test's): it and its URL."""
    process = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "transfer_server.py")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield process, f"ws://127.0.0.1:{port}/"
    finally:
        process.stdin.close()
        process.wait(10)


def igor_threads():
    return [t for t in threading.enumerate() if t.name.startswith(("igor-", "Thread-"))]


def recv_json(ws):
    return json.loads(ws.recv())


def recv_until_close(ws, stream_id, limit=1000):
    """Messages of ``stream_id`` up to and including its close."""
    messages = []
    for _ in range(limit):
        message = recv_json(ws)
        if message.get("streamId") == stream_id:
            messages.append(message)
            if message.get("close"):
                return messages
    raise AssertionError("no close")


@pytest.fixture(scope="session")
def display():
    """A display of Xvfb's own (-displayfd picks a free number), for a real window."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb)")
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()  # written once the display accepts clients
    assert number, "Xvfb did not start"
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(5)
