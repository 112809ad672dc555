"""The server core end to end: actions, streams, processes, clients and sessions."""

import json
import logging
import queue
import threading
import time

import pytest
import websocket
from conftest import recv_json, recv_until_close, wait_for

import igor
from igor import (
    CONFIG,
    ConfigError,
    IgorProcess,
    IgorServer,
    RemoteError,
    StreamCancelled,
    StreamClosed,
    UnknownClient,
)

# -- calls and handlers --------------------------------------------------------


def test_readme_hello(start_server, connect):
    def hello(out, data, **kwargs):
        out.send("Hello " + data["name"])

    server = start_server({"hello": hello})
    assert connect(server).call("hello", {"name": "Ada"}) == "Hello Ada"


def test_nested_actions_are_called_by_their_flat_name(start_server, connect):
    api = {"events": {"create": lambda out, data: out.send(("created", data)), "deep": {"x": lambda out, data: 42}}}
    client = connect(start_server(api))
    assert client.call("events.create", 1) == ["created", 1]
    assert client.call("events.deep.x") == 42


def test_wire_format_of_a_call(start_server):
    def two(out, data):
        out.send(1)
        out.send(data)

    server = start_server({"two": two})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "s", "action": "two", "data": {"k": "v"}}))
    assert recv_until_close(ws, "s") == [
        {"streamId": "s", "data": 1},
        {"streamId": "s", "data": {"k": "v"}},
        {"streamId": "s", "data": None, "close": True},
    ]
    ws.close()


def test_handler_kwargs(start_server, connect):
    seen = {}

    def spy(out, data, **kwargs):
        seen.update(kwargs)

    server = start_server({"spy": spy})
    client = connect(server)
    client.call("spy")
    assert seen["client_id"] == 1
    assert seen["stream_id"] == 1
    assert seen["server"] is server
    assert seen["scope"] is server.scope
    assert isinstance(seen["session"], dict)


def test_handler_without_kwargs_gets_only_what_it_declares(start_server, connect):
    def plain(out, data):
        return data * 2

    def some(out, data, scope):
        scope["n"] = data
        return sorted(scope)

    client = connect(start_server({"plain": plain, "some": some}))
    assert client.call("plain", 21) == 42
    assert client.call("some", 1) == ["n"]


def test_return_value_and_generator(start_server, connect):
    def gen(out, data):
        yield from range(data)

    client = connect(start_server({"ret": lambda out, data: {"a": 1}, "gen": gen}))
    assert client.call("ret") == {"a": 1}
    assert list(client.stream("gen", 4)) == [0, 1, 2, 3]


def test_stream_api(start_server, connect):
    states = queue.Queue()

    def handler(out, data):
        states.put((out.closed, out.cancelled))
        out.send("a")
        out.close()
        states.put(out.closed)
        with pytest.raises(StreamClosed):
            out.send("b")
        states.put("raised")

    client = connect(start_server({"h": handler}))
    assert list(client.stream("h")) == ["a"]
    assert [states.get(timeout=5) for _ in range(3)] == [(False, False), True, "raised"]


def test_protocol_2_carries_the_close_on_a_stream_s_last_message(start_server):
    def answer(out, data):
        return data

    def two(out, data):
        out.send(1)
        out.send(2)

    def fail(out, data):
        raise KeyError("missing")

    big = "b" * 200_000  # sent as gathered pieces: the close must ride on them too
    server = start_server({"answer": answer, "two": two, "fail": fail})
    ws = websocket.create_connection(server.url, subprotocols=["igor.v2", "igor"])
    assert ws.getsubprotocol() == "igor.v2"
    ws.send(json.dumps({"streamId": 1, "action": "answer", "data": {"k": [1]}}))
    assert recv_until_close(ws, 1) == [{"streamId": 1, "data": {"k": [1]}, "close": True}]
    ws.send(json.dumps({"streamId": 2, "action": "answer", "data": big}))
    assert recv_until_close(ws, 2) == [{"streamId": 2, "data": big, "close": True}]
    # Values sent while the handler runs cannot know they are the last: the close comes alone.
    ws.send(json.dumps({"streamId": 3, "action": "two"}))
    assert recv_until_close(ws, 3) == [{"streamId": 3, "data": 1}, {"streamId": 3, "data": 2},
                                       {"streamId": 3, "close": True}]
    ws.send(json.dumps({"streamId": 4, "action": "fail"}))
    assert recv_until_close(ws, 4) == [{"streamId": 4, "error": "missing", "code": 500, "type": "KeyError",
                                        "close": True}]
    ws.close()


@pytest.mark.parametrize("offered", [None, ["igor"]])
def test_protocol_1_clients_get_the_last_value_and_the_close_apart(start_server, offered):
    server = start_server({"answer": lambda out, data: data})
    ws = websocket.create_connection(server.url, subprotocols=offered)
    assert ws.getsubprotocol() == (offered[0] if offered else None)
    ws.send(json.dumps({"streamId": 1, "action": "answer", "data": 5}))
    assert recv_until_close(ws, 1) == [{"streamId": 1, "data": 5}, {"streamId": 1, "data": None, "close": True}]
    ws.close()


def test_send_error_closes_the_stream(start_server):
    def handler(out, data):
        out.send(1)
        out.send_error("bad input", code=422)

    server = start_server({"h": handler})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 7, "action": "h"}))
    assert recv_until_close(ws, 7) == [
        {"streamId": 7, "data": 1},
        {"streamId": 7, "error": "bad input", "code": 422, "type": "Error", "data": None},
        {"streamId": 7, "data": None, "close": True},
    ]
    ws.close()


def test_handler_raising_sends_500_without_traceback(start_server, connect, caplog):
    def broken(out, data):
        raise KeyError("missing")

    client = connect(start_server({"broken": broken, "ok": lambda out, data: "fine"}))
    with caplog.at_level(logging.ERROR, logger="igor"), pytest.raises(RemoteError) as info:
        client.call("broken")
    assert (info.value.code, info.value.type, info.value.traceback) == (500, "KeyError", None)
    assert "Traceback" in caplog.text and "KeyError" in caplog.text
    assert client.call("ok") == "fine"


def test_debug_sends_the_traceback(start_server, connect):
    def broken(out, data):
        raise RuntimeError("boom")

    client = connect(start_server({"broken": broken}, {"debug": True}))
    with pytest.raises(RemoteError) as info:
        client.call("broken")
    assert "RuntimeError: boom" in info.value.traceback


def test_non_json_value_is_an_error_not_a_crash(start_server, connect):
    client = connect(start_server({"bad": lambda out, data: {1, 2}, "nan": lambda out, data: float("nan")}))
    for action in ("bad", "nan"):
        with pytest.raises(RemoteError) as info:
            client.call(action)
        assert info.value.code == 500


# -- protocol errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("not json", {"error": "message is not valid JSON", "code": 400, "type": "ProtocolError"}),
        ("[1, 2]", {"error": "message must be a JSON object", "code": 400, "type": "ProtocolError"}),
        ('{"action": "x"}', {"error": "message has no streamId", "code": 400, "type": "ProtocolError"}),
        ('{"streamId": true, "action": "x"}', {"code": 400}),
        ('{"streamId": "", "action": "x"}', {"code": 400}),
        ('{"streamId": 1.5, "action": "x"}', {"code": 400}),
    ],
)
def test_message_without_usable_stream_id(start_server, raw, expected):
    server = start_server({"ok": lambda out, data: "fine"})
    ws = websocket.create_connection(server.url)
    ws.send(raw)
    answer = recv_json(ws)
    assert "streamId" not in answer
    assert expected.items() <= answer.items()
    ws.send(json.dumps({"streamId": 1, "action": "ok"}))
    assert recv_until_close(ws, 1)[0] == {"streamId": 1, "data": "fine"}
    ws.close()


@pytest.mark.parametrize(
    "message, code",
    [
        ({"streamId": 3, "action": "nope"}, 404),
        ({"streamId": 3, "action": 5}, 400),
        ({"streamId": 3}, 400),
        ({"streamId": 3, "action": "ok", "cancel": True}, 400),
        ({"streamId": 3, "cancel": "yes"}, 400),
    ],
)
def test_errors_tied_to_a_stream_are_followed_by_its_close(start_server, message, code):
    server = start_server({"ok": lambda out, data: "fine"})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps(message))
    error, close = recv_until_close(ws, 3)
    assert error["code"] == code and error["streamId"] == 3 and error["error"]
    assert close == {"streamId": 3, "data": None, "close": True}
    ws.close()


def test_reusing_an_open_stream_id_is_409(start_server):
    release = threading.Event()

    def slow(out, data):
        release.wait(5)
        return "done"

    server = start_server({"slow": slow})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "slow"}))
    ws.send(json.dumps({"streamId": 1, "action": "slow"}))
    assert recv_json(ws) == {"error": "streamId 1 names a stream that is still open", "code": 409,
                             "type": "StreamIdInUse", "data": None}
    release.set()
    assert recv_until_close(ws, 1) == [{"streamId": 1, "data": "done"}, {"streamId": 1, "data": None, "close": True}]
    # Closed ids may be used again.
    ws.send(json.dumps({"streamId": 1, "action": "slow"}))
    assert recv_until_close(ws, 1)[-1] == {"streamId": 1, "data": None, "close": True}
    ws.close()


# -- concurrency and cancellation ---------------------------------------------------


def test_two_slow_calls_on_one_socket_overlap(start_server):
    both_running = threading.Barrier(2, timeout=5)

    def slow(out, data):
        both_running.wait()  # only passes if both calls run at the same time
        out.send(data)

    server = start_server({"slow": slow})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "a", "action": "slow", "data": "A"}))
    ws.send(json.dumps({"streamId": "b", "action": "slow", "data": "B"}))
    got = {}
    while len(got) < 4:
        message = recv_json(ws)
        got[(message["streamId"], "close" in message)] = message
    assert got[("a", False)]["data"] == "A" and got[("b", False)]["data"] == "B"
    ws.close()


def test_a_slow_handler_does_not_delay_other_clients(start_server, connect):
    release = threading.Event()
    server = start_server({"block": lambda out, data: release.wait(10), "ok": lambda out, data: "fine"})
    first = connect(server)
    blocked = first.stream("block")
    assert connect(server).call("ok", timeout=5) == "fine"
    assert first.call("ok", timeout=5) == "fine"
    release.set()
    assert list(blocked) == [True]


def test_cancel(start_server):
    progress = queue.Queue()

    def job(out, data):
        for i in range(1000):
            if out.wait(0.01):
                break
            out.send(i)
        progress.put(out.cancelled)
        with pytest.raises(StreamCancelled):
            out.send("after")
        progress.put("raised")

    server = start_server({"job": job})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": "j", "action": "job"}))
    assert recv_json(ws) == {"streamId": "j", "data": 0}
    ws.send(json.dumps({"streamId": "j", "cancel": True}))
    messages = recv_until_close(ws, "j")
    assert messages[-1] == {"streamId": "j", "close": True, "cancelled": True, "data": None}
    assert all("data" in m for m in messages[:-1])
    assert progress.get(timeout=5) is True
    assert progress.get(timeout=5) == "raised"
    ws.close()


def test_client_vanishing_mid_stream(start_server, connect):
    started, finished = threading.Event(), queue.Queue()

    def job(out, data):
        started.set()
        try:
            while True:
                out.send("x" * 100)
                out.wait(0.001)
        except StreamCancelled:
            finished.put(out.cancelled)
            raise

    server = start_server({"job": job, "ok": lambda out, data: "fine"}, {"worker_idle_timeout": 0.2})
    baseline = threading.active_count()
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "job"}))
    assert started.wait(5)
    ws.sock.close()  # vanish without a close frame
    assert finished.get(timeout=5) is True
    other = connect(server)
    assert other.call("ok") == "fine"
    other.close()
    wait_for(lambda: threading.active_count() <= baseline, message="threads to end")


# -- processes ----------------------------------------------------------------------


class Ticker(IgorProcess):
    def __init__(self):
        super().__init__()
        self.targets = queue.Queue()

    def run(self):
        n = 0
        while not self.wait(0.02):
            n += 1
            self.output.send("tick", n)
            try:
                target = self.targets.get_nowait()
            except queue.Empty:
                continue
            try:
                self.output.send("for_you", target, client_id=target)
            except UnknownClient as exc:
                self.output.send("unknown", str(exc))


def test_process_attributes_and_start(start_server):
    class Plain(threading.Thread):
        def run(self):
            self.ran = (self.process_id, self.scope is self.server.scope, self.output is not None)

    plain = Plain()
    start_server(processes={"plain": plain})
    plain.join(5)
    assert plain.ran == ("plain", True, True)
    assert plain.daemon


def test_process_ids_are_strings(start_server):
    server = start_server()
    for bad in (1, "", None):
        with pytest.raises(ValueError):
            server.add_process(bad, threading.Thread(target=lambda: None))


def test_process_added_while_running_starts_at_once(start_server):
    done = threading.Event()
    server = start_server()
    server.add_process("late", threading.Thread(target=done.set))
    assert done.wait(5)


def test_broadcast_and_targeted_process_sends(start_server, connect):
    ticker = Ticker()
    server = start_server(processes={"ticker": ticker})
    alice, bob = connect(server, client_id="alice"), connect(server)
    inboxes = {name: queue.Queue() for name in ("alice", "bob")}
    alice.on("for_you", inboxes["alice"].put)
    bob.on("for_you", inboxes["bob"].put)
    ticks = queue.Queue()
    bob.on("tick", ticks.put)
    unknown = queue.Queue()
    bob.on("unknown", unknown.put)

    assert isinstance(ticks.get(timeout=5), int)  # broadcast reaches bob
    ticker.targets.put("alice")
    assert inboxes["alice"].get(timeout=5) == "alice"
    ticker.targets.put("nobody")
    assert "nobody" in unknown.get(timeout=5)
    assert inboxes["bob"].empty()


def test_push_wire_format(start_server):
    ticker = Ticker()
    server = start_server(processes={"ticker": ticker})
    ws = websocket.create_connection(server.url)
    message = recv_json(ws)
    assert message["streamId"] == "ticker" and message["action"] == "tick" and isinstance(message["data"], int)
    ws.close()


def test_process_output_to_unknown_client_raises(start_server):
    ticker = Ticker()
    start_server(processes={"ticker": ticker})
    with pytest.raises(UnknownClient):
        ticker.output.send("x", client_id=12345)


def test_process_that_raises_is_reported_and_server_lives(start_server, connect, caplog):
    go = threading.Event()

    class Broken(IgorProcess):
        def run(self):
            go.wait(5)
            raise RuntimeError("process broke")

    server = start_server({"ok": lambda out, data: "fine"}, processes={"broken": Broken()})
    ws = websocket.create_connection(server.url)
    wait_for(lambda: len(server.registry) == 1)
    with caplog.at_level(logging.ERROR, logger="igor"):
        go.set()
        assert recv_json(ws) == {"streamId": "broken", "error": "process broke", "code": 500, "type": "RuntimeError",
                                 "data": None}
    assert "process 'broken' failed" in caplog.text and "Traceback" in caplog.text
    assert connect(server).call("ok") == "fine"
    ws.close()


def test_process_finish_and_send_error(start_server):
    ready = threading.Event()

    class Once(IgorProcess):
        def run(self):
            ready.wait(5)
            self.output.send_error("warming up failed", code=503)
            self.output.finish()

    server = start_server(processes={"once": Once()})
    ws = websocket.create_connection(server.url)
    wait_for(lambda: len(server.registry) == 1)
    ready.set()
    assert recv_json(ws) == {"streamId": "once", "error": "warming up failed", "code": 503, "type": "Error",
                             "data": None}
    assert recv_json(ws) == {"streamId": "once", "data": None, "close": True}
    ws.close()


def test_shutdown_stops_igor_processes(start_server):
    ticker = Ticker()
    server = start_server(processes={"ticker": ticker})
    server.shutdown()
    ticker.join(5)
    assert not ticker.is_alive() and ticker.stopping


# -- client ids and sessions -------------------------------------------------------


def test_client_ids_count_from_one(start_server, connect):
    server = start_server({"me": lambda out, data, client_id: client_id})
    assert [connect(server).call("me") for _ in range(3)] == [1, 2, 3]


def test_introduce_self_renames_and_refuses_taken_ids(start_server, connect):
    server = start_server({"me": lambda out, data, client_id: client_id})
    first = connect(server, client_id="main-window")
    assert first.call("me") == "main-window"
    second = connect(server)
    with pytest.raises(RemoteError) as info:
        second.introduce_self("main-window")
    assert (info.value.code, info.value.type) == (409, "ClientIdTaken")
    assert second.call("me") == 2
    with pytest.raises(RemoteError) as info:
        second.call("introduce_self", {"client_id": ""})
    assert info.value.code == 400


def test_session_is_handed_back_after_reconnect(start_server, connect):
    def remember(out, data, session):
        session.setdefault("items", []).append(data)
        return session["items"]

    server = start_server({"remember": remember})
    first = connect(server)
    secret = first.call("introduce_self", {"client_id": "w"})["resume"]
    assert first.call("remember", 1) == [1]
    first.close()
    wait_for(lambda: len(server.registry) == 0)
    thief = connect(server)
    for claim in ({"client_id": "w"}, {"client_id": "w", "resume": "guess"}, {"client_id": "w", "resume": 7}):
        with pytest.raises(RemoteError) as info:
            thief.call("introduce_self", claim)
        assert (info.value.code, info.value.type) == (409, "ClientIdTaken")
    assert thief.call("remember", "x") == ["x"]  # its own session, not w's
    again = connect(server)
    answer = again.call("introduce_self", {"client_id": "w", "resume": secret})
    assert answer["client_id"] == "w" and answer["resume"] != secret
    assert again.call("remember", 2) == [1, 2]
    stranger = connect(server, client_id="other")
    assert stranger.call("remember", 3) == [3]


def test_session_expires_after_session_timeout(start_server, connect):
    server = start_server({"remember": lambda out, data, session: session.setdefault("v", data)},
                          {"session_timeout": 0.1})
    first = connect(server, client_id="w")
    assert first.call("remember", "old") == "old"
    first.close()
    wait_for(lambda: len(server.registry) == 0)
    time.sleep(0.2)  # the timeout under test is a duration; nothing to wait on
    assert connect(server, client_id="w").call("remember", "new") == "new"


# -- configuration and life cycle ---------------------------------------------------


def test_config_defaults_and_merge():
    assert CONFIG["host"] == "127.0.0.1" and CONFIG["port"] == 5678 and CONFIG["session_timeout"] == 10
    server = IgorServer(api={}, config={"port": 6000})
    assert server.config.port == 6000 and server.config.host == "127.0.0.1"
    assert CONFIG["port"] == 5678  # the defaults are not mutated by a config given


def test_config_dict_written_before_the_server_is_used(monkeypatch):
    # The original Igor's way: set keys in CONFIG, then IgorServer(api) with no config.
    monkeypatch.setitem(CONFIG, "port", 0)
    monkeypatch.setitem(CONFIG, "session_timeout", 3.5)
    server = IgorServer(api={})
    assert server.config.port == 0 and server.config.session_timeout == 3.5
    monkeypatch.setitem(CONFIG, "session_timeout", "soon")
    with pytest.raises(ConfigError, match="session_timeout"):
        IgorServer(api={})


@pytest.mark.parametrize("config", [{"prot": 1}, {"port": "80"}, {"port": -1}, {"session_timeout": 0},
                                    {"logging": {"lvl": 1}}, {"static_dir": "/no/such/dir"}, {"token": "a b"}])
def test_bad_config_is_a_clear_error(config):
    with pytest.raises(ConfigError):
        IgorServer(api={}, config=config)


def test_bad_api_is_a_clear_error():
    with pytest.raises(ConfigError):
        IgorServer(api={"x": 1})
    with pytest.raises(ConfigError):
        IgorServer(api={"introduce_self": lambda out, data: None})


def test_port_zero_binds_a_free_port(start_server):
    server = start_server()
    assert server.port > 0 and server.url == f"ws://127.0.0.1:{server.port}/"


def test_shutdown_from_any_thread_closes_connections_with_1001(start_server):
    server = start_server({"hang": lambda out, data: out.wait(10)})
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "hang"}))
    wait_for(lambda: server.stats()["open_streams"])
    threading.Thread(target=server.shutdown).start()
    assert recv_json(ws) == {"streamId": 1, "close": True, "cancelled": True, "data": None}
    opcode, payload = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(payload[:2], "big") == 1001
    assert server.wait(10) == 0
    with pytest.raises(OSError):
        websocket.create_connection(server.url, timeout=2)


def test_library_configures_no_root_logger():
    import subprocess
    import sys

    code = "import logging, igor, igor.transport; print(len(logging.getLogger().handlers))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "0"


def test_public_names():
    for name in ("IgorServer", "IgorProcess", "flatten", "Stream", "ProcessOutput", "IgorClient", "CONFIG"):
        assert hasattr(igor, name)
    from igor.core import flatten  # noqa: F401  the original Igor's README imports these
    from igor.server import CONFIG, IgorServer  # noqa: F401


def test_one_worker_waits_from_the_start_and_a_burst_s_extra_workers_end(start_server, connect):
    def workers():  # this server's handler threads
        return sum(1 for thread in threading.enumerate() if server.dispatcher.owns_thread(thread))

    release = threading.Event()
    running = queue.Queue()

    def hold(out, data):
        running.put(data)
        release.wait(10)
        return data

    server = start_server({"hold": hold}, {"worker_idle_timeout": 0.2})
    assert workers() == 1  # started with the server: the first call does not wait for a thread
    clients = [connect(server) for _ in range(5)]
    results = queue.Queue()
    callers = [threading.Thread(target=lambda c=c, k=k: results.put(c.call("hold", k))) for k, c in enumerate(clients)]
    for caller in callers:
        caller.start()
    assert sorted(running.get(timeout=5) for _ in range(5)) == [0, 1, 2, 3, 4]
    assert workers() == 5
    release.set()
    assert sorted(results.get(timeout=5) for _ in range(5)) == [0, 1, 2, 3, 4]
    wait_for(lambda: workers() == 1, message="the burst's extra workers to end")
    time.sleep(0.5)  # more than worker_idle_timeout: the kept worker must not end too
    assert workers() == 1
    assert clients[0].call("hold", 9) == 9
    for client in clients:
        client.close()


def test_call_client_with_data_that_is_not_json_raises_at_once_and_leaves_nothing(start_server, connect):
    server = start_server()
    client = connect(server, client_id="ui")
    client.expose("echo", lambda data: data)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        server.call_client("ui", "echo", {"when": object()})
    peer = server.dispatcher._peer(server.registry.get("ui"))
    assert peer.calls == {}  # no pending entry left for the life of the connection
    assert server.call_client("ui", "echo", [1]) == [1]


def test_input_to_a_process_that_has_ended_is_refused_at_once(start_server):
    class Brief(IgorProcess):
        def run(self):
            pass  # ends at once

    brief = Brief()
    server = start_server(processes={"brief": brief})
    brief.join(5)
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"process": "brief", "data": 1}))
    assert recv_json(ws) == {"process": "brief", "error": "process 'brief' has ended", "code": 404,
                             "type": "UnknownProcess", "data": None}
    ws.close()


def test_shutdown_abandons_a_handler_that_ignores_its_cancel_and_says_so(caplog):
    entered = threading.Event()

    def stubborn(out, data):
        entered.set()
        time.sleep(5)  # ignores the cancel, as a blocking query does

    server = IgorServer(api={"stubborn": stubborn}, port=0, shutdown_timeout=0.5)
    server.run_forever(threaded=True)
    ws = websocket.create_connection(server.url)
    ws.send(json.dumps({"streamId": 1, "action": "stubborn"}))
    assert entered.wait(5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="igor"):
        assert server.shutdown() is False
    assert time.monotonic() - started < 1.0
    assert "action 'stubborn' of client 1 ignored its cancel and is abandoned" in caplog.text
    assert not server.running
