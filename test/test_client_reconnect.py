"""The Python client's ``reconnect``: after a drop it connects again by itself, as the same client.

Servers here listen on one socket bound by the test, handed to each server
in turn (as ``igor dev`` hands its socket to each backend), so a successor
serves on the same port and a connect made between them waits in the backlog.
"""

import logging
import socket
import threading
import time

import pytest
from conftest import wait_for
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from igor import (
    BackendReloaded,
    ConnectionClosed,
    IgorClient,
    IgorServer,
    Reconnect,
    RemoteError,
    flatten,
)


def remember(out, data, session):
    session["kept"] = data
    return True


def kept(out, data, session):
    return session.get("kept")


def slow(out, data):
    out.send("started")
    out.wait(30)


def hello(out, data):
    return f"hello {data}"


API = {"remember": remember, "kept": kept, "slow": slow, "hello": hello}


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def serve(listener):
    """Start a server on the shared listening socket; every one is shut down after the test."""
    servers = []

    def start(config=None):
        server = IgorServer(api=flatten(API), config={"token": "t", **(config or {})})
        server.start(sock=listener.dup())
        threading.Thread(target=server.run_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def reconnect_threads():
    return [t for t in threading.enumerate() if t.name == "igor-client-reconnect"]


def cut(client):
    """Drop the client's connection under it, as a network failure would (no close frame: 1006)."""
    client._ws.sock.shutdown(socket.SHUT_RDWR)


def test_a_dropped_connection_comes_back_with_its_id_and_session(serve, connect):
    server = serve()
    client = connect(server, timeout=5, client_id="window", reconnect=Reconnect(initial_delay=0.01))
    assert client.call("remember", {"n": 1}) is True
    slow_call = iter(client.stream("slow"))
    assert next(slow_call) == "started"
    first_secret = client.resume

    cut(client)
    with pytest.raises(ConnectionClosed) as raised:
        next(slow_call)  # a call in flight is not replayed: its handler may have done half its work
    assert raised.value.code == 1006 and not isinstance(raised.value, BackendReloaded)
    assert client.wait_open(5), client.status
    assert client.status == "open" and client.connected
    # The server may still have held the old connection at the first attempt (409): that one is retried.
    assert client.call("kept") == {"n": 1}
    assert client.client_id == "window" and client.resume not in (None, first_secret)
    wait_for(lambda: not reconnect_threads(), message="the reconnecting thread to end")


def test_a_call_made_just_after_the_drop_waits_for_the_next_connection(serve, connect):
    server = serve()
    client = connect(server, timeout=5, reconnect=Reconnect(initial_delay=0.01))
    for n in range(5):
        cut(client)
        # Whether the reader has seen the drop yet or the send meets the dead socket, nothing was
        # sent: the call is not an error, it goes on the next connection.
        assert client.call("hello", n) == f"hello {n}"


def test_a_reload_fails_calls_with_backend_reloaded_and_is_retried_at_once(serve, connect):
    first = serve()
    # A delay this long would fail the test: a reload is retried without one.
    client = connect(first, timeout=5, reconnect=Reconnect(initial_delay=60))
    slow_call = iter(client.stream("slow"))
    assert next(slow_call) == "started"

    first.shutdown(close_code=1012, reason="backend reloaded")
    with pytest.raises(BackendReloaded) as raised:
        next(slow_call)
    assert (raised.value.code, raised.value.reason) == (1012, "backend reloaded")
    assert isinstance(raised.value, ConnectionClosed)
    assert "the backend reloaded" in str(raised.value)
    # The call made now waits for the successor, which starts after it.
    answer = []
    caller = threading.Thread(target=lambda: answer.append(client.call("hello", "again")))
    caller.start()
    wait_for(lambda: client.status == "reconnecting" or answer, message="the client to start reconnecting")
    second = serve()
    caller.join(10)
    assert answer == ["hello again"]
    assert client.status == "open" and client.url == second.url


def test_it_gives_up_after_max_attempts_and_closes_for_good(serve, connect, listener):
    server = serve()
    client = connect(server, timeout=5, reconnect=Reconnect(initial_delay=0.01, max_attempts=3))
    server.shutdown()
    listener.close()  # nobody listens: each attempt is refused
    assert client.wait_closed(10), client.status
    assert client.status == "closed" and not client.connected and not client.wait_open(0)
    with pytest.raises(ConnectionClosed):
        client.call("hello", 1)
    wait_for(lambda: not reconnect_threads(), message="the reconnecting thread to end")


def test_a_refused_handshake_is_not_retried(serve, connect, caplog):
    first = serve()
    client = connect(first, timeout=5, reconnect=Reconnect(initial_delay=0.01))
    first.shutdown()
    with caplog.at_level(logging.WARNING, logger="igor.client"):
        serve({"token": "another"})
        assert client.wait_closed(10), client.status
    assert "HTTP 401" in caplog.text and "not retrying" in caplog.text


def reconnecting_at_length(serve, connect, listener):
    """A client whose server went for good, waiting a minute before its first retry."""
    server = serve()
    client = connect(server, timeout=5, reconnect=Reconnect(initial_delay=60, jitter=0))
    server.shutdown()
    listener.close()
    wait_for(lambda: client.status == "reconnecting", message="the client to start reconnecting")
    return client


def test_close_while_it_waits_to_reconnect_stops_at_once(serve, connect, listener):
    client = reconnecting_at_length(serve, connect, listener)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 2
    assert client.status == "closed" and client.wait_closed(0)
    wait_for(lambda: not reconnect_threads(), message="the reconnecting thread to end")


def test_a_call_waiting_for_the_connection_fails_at_its_timeout(serve, connect, listener):
    client = reconnecting_at_length(serve, connect, listener)
    with pytest.raises(ConnectionClosed, match="still reconnecting"):
        client.call("hello", 1, timeout=0.2)
    assert client.status == "reconnecting"


def test_exposed_functions_and_listeners_outlive_the_drop(serve, connect):
    first = serve()
    client = connect(first, timeout=5, client_id="window", reconnect=Reconnect(initial_delay=0.01))
    client.expose("double", lambda n: 2 * n)
    removed = client.on("tick", lambda data: None)
    first.shutdown(close_code=1012, reason="backend reloaded")
    second = serve()
    assert client.wait_open(10)
    assert second.call_client("window", "double", 21, timeout=5) == 42
    assert client._listeners._by_name["tick"], "the listener is still registered"
    removed()


def test_without_reconnect_a_drop_closes_for_good(serve, connect):
    server = serve()
    client = connect(server, timeout=5)
    cut(client)
    assert client.wait_closed(5)
    assert client.status == "closed"
    with pytest.raises(ConnectionClosed):
        client.call("hello", 1)
    assert not reconnect_threads()


def test_a_wrong_reconnect_option_is_refused_before_connecting():
    with pytest.raises(TypeError, match="reconnect is True, False or an igor.Reconnect"):
        IgorClient("ws://127.0.0.1:9/", reconnect="yes")
    for wrong in ({"jitter": 2}, {"initial_delay": -1}, {"factor": float("inf")}, {"max_attempts": 0},
                  {"max_attempts": True}, {"max_delay": "5"}):
        with pytest.raises(ValueError, match="Reconnect"):
            Reconnect(**wrong)


def test_the_delays_grow_to_their_ceiling_and_jitter_only_shortens_them():
    policy = Reconnect(initial_delay=1, factor=2, max_delay=5, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]
    assert Reconnect(factor=1e300, max_delay=7, jitter=0).delay(10_000) == 7  # no overflow
    jittered = Reconnect(initial_delay=1, jitter=0.5)
    assert all(0.5 <= jittered.delay(1) <= 1 for _ in range(100))


def test_an_id_taken_at_the_first_introduction_is_raised_as_without_reconnect(serve, connect):
    # RemoteError on the first introduction is raised to the caller, as without reconnect.
    server = serve()
    connect(server, timeout=5, client_id="window")
    with pytest.raises(RemoteError, match="ClientIdTaken"):
        connect(server, timeout=5, client_id="window", reconnect=True)


class ReconnectingClient(RuleBasedStateMachine):
    """Any sequence of calls, drops, reloads and restarts: the client never hangs, never holds more
    than one reader and one reconnecting thread, and is back as the same client (its session, where
    the server kept it) whenever a server listens."""

    def __init__(self):
        super().__init__()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.server = self.serve()
        self.client = IgorClient(self.server.url, token="t", timeout=5, client_id="window",
                                 reconnect=Reconnect(initial_delay=0.005, max_delay=0.05))
        self.kept = None  # what the session holds, as far as the model knows

    def serve(self):
        server = IgorServer(api=flatten(API), config={"token": "t"})
        server.start(sock=self.listener.dup())
        threading.Thread(target=server.run_forever, daemon=True).start()
        return server

    @rule(n=st.integers(0, 9))
    def call(self, n):
        try:
            assert self.client.call("hello", n, timeout=None if self.server else 0.3) == f"hello {n}"
        except ConnectionClosed:
            pass  # dropped in flight, or no server listening: never anything else, never a hang

    @rule(n=st.integers(0, 9))
    def remember(self, n):
        try:
            self.client.call("remember", n, timeout=None if self.server else 0.3)
            self.kept = n
        except ConnectionClosed:
            self.kept = "unknown"  # the handler may or may not have run

    @rule()
    def cancel_a_stream(self):
        try:
            stream = self.client.stream("slow", timeout=None if self.server else 0.3)
            stream.cancel()
        except ConnectionClosed:
            pass

    @precondition(lambda self: self.server is not None)
    @rule()
    def cut(self):
        try:
            self.client._ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # down already

    @precondition(lambda self: self.server is not None)
    @rule(code=st.sampled_from([1001, 1012]))
    def stop_the_server(self, code):
        self.server.shutdown(close_code=code, reason="test")
        self.server = None
        self.kept = None  # a new server has sessions of its own

    @precondition(lambda self: self.server is None)
    @rule()
    def start_a_server(self):
        self.server = self.serve()

    @invariant()
    def bounded_and_back(self):
        wait_for(lambda: len(reader_threads()) <= 1 and len(reconnect_threads()) <= 1, message="threads to end")
        if self.server is not None:
            assert self.client.wait_open(5), self.client.status
            kept = self.client.call("kept")
            if self.kept != "unknown":
                assert kept == self.kept
            self.kept = kept
            assert self.client.client_id == "window"

    def teardown(self):
        self.client.close()
        assert self.client.status == "closed"
        if self.server is not None:
            self.server.shutdown()
        self.listener.close()
        wait_for(lambda: not reader_threads() and not reconnect_threads(), message="the client's threads to end")


def reader_threads():
    return [t for t in threading.enumerate() if t.name == "igor-client-reader"]


def test_any_sequence_of_drops_and_restarts_finds_the_client_back():
    ReconnectingClient.TestCase.settings = settings(
        max_examples=12, stateful_step_count=15, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck))
    ReconnectingClient.TestCase().runTest()
