"""Both directions at once, through the Python client against the real server.

Input into open calls (``stream.send`` / ``stream.end``), the server calling
functions the client exposed (``server.call_client``), and input to a
background process (``send_to_process``), as docs/protocol.md specifies them.
"""

import queue
import threading

import pytest
from conftest import wait_for

from igor import (
    CallTimeout,
    IgorProcess,
    InputEnded,
    RemoteError,
    StreamCancelled,
    StreamClosed,
    UnknownAction,
)


def count(out, data):
    for i in range(data):
        out.send(i)


def chat(out, data):
    """Answers each line as it comes; ends when the client ends its input."""
    for line in out:
        out.send(line.upper())
    out.send("bye")


class Pusher(IgorProcess):
    def run(self):
        while not self.wait(0.01):
            self.output.send("tick", "t")


# -- input into an open call ---------------------------------------------------


def test_chat_round_trip_both_ways_at_once(start_server, connect):
    client = connect(start_server({"chat": chat}))
    stream = client.stream("chat")
    for line in ["hello", "how are you", "ünïcode ✓"]:
        stream.send(line)
        # The answer to each line comes while the call is still open for input.
        assert next(stream) == line.upper()
    stream.end()
    assert list(stream) == ["bye"]
    assert stream.closed and not stream.cancelled


def test_receive_with_timeout_then_input_ended(start_server, connect):
    def two_then_end(out, data):
        out.send(out.receive(timeout=5))
        out.send(out.receive(timeout=5))
        try:
            out.receive(timeout=5)
        except InputEnded:
            out.send("ended")

    client = connect(start_server({"two_then_end": two_then_end}))
    stream = client.stream("two_then_end")
    stream.send({"n": 1})
    stream.send([2])
    stream.end()
    assert list(stream) == [{"n": 1}, [2], "ended"]


def test_input_on_a_closed_stream(start_server, connect):
    client = connect(start_server({"count": count, "chat": chat}))
    stream = client.stream("count", 2)
    assert list(stream) == [0, 1]
    # The client knows: a clear error at once, nothing sent.
    with pytest.raises(StreamClosed):
        stream.send("late")
    with pytest.raises(StreamClosed):
        stream.end()
    # The server knows too: input for a stream that is not open is a 404
    # without a streamId (the id may already be reused), collected in errors.
    client._send({"streamId": stream.stream_id, "data": "late"})
    error = client.errors.get(timeout=5)
    assert (error.code, error.type) == (404, "UnknownStream")
    # ...and so is input after the client's own end.
    chatting = client.stream("chat")
    chatting.end()
    with pytest.raises(StreamClosed):
        chatting.send("after the end")
    client._send({"streamId": chatting.stream_id, "data": "after the end"})
    error = client.errors.get(timeout=5)
    assert (error.code, error.type) == (404, "UnknownStream")
    assert list(chatting) == ["bye"]
    assert client.call("count", 3) == 2


def test_a_flood_into_a_handler_that_never_reads(start_server, connect):
    stopped, started = queue.Queue(), threading.Event()

    def deaf(out, data):
        started.set()
        out.wait(10)  # never reads its input; woken when the stream fails
        try:
            out.send("still here?")
        except StreamCancelled as exc:
            stopped.put(exc)
            raise

    client = connect(start_server({"deaf": deaf, "count": count}, config={"inbox_size": 10}))
    stream = client.stream("deaf")
    # Running first: a call whose stream fails before a worker takes it never runs at all.
    assert started.wait(5)
    for i in range(50):
        try:
            stream.send(i)
        except StreamClosed:
            break  # the server's 429 has reached the client: it refuses more itself
    with pytest.raises(RemoteError) as info:
        list(stream)
    assert (info.value.code, info.value.type) == (429, "InboxFull")
    assert stream.closed
    assert isinstance(stopped.get(timeout=5), StreamCancelled)
    with pytest.raises(StreamClosed):
        stream.send("more")
    assert client.call("count", 3) == 2  # the connection stays usable
    while not client.errors.empty():  # input sent before the 429 arrived: 404s, nothing else
        assert client.errors.get_nowait().type == "UnknownStream"


# -- the server calls the client -------------------------------------------------


def ask(out, data, server, client_id):
    """Calls the client's exposed function named in ``data`` and sends its answer."""
    out.send(server.call_client(client_id, data["name"], data.get("data"), timeout=data.get("timeout", 10)))


def test_a_slow_exposed_function_holds_up_nothing_else(start_server, connect):
    client = connect(start_server({"ask": ask, "count": count}, processes={"pusher": Pusher()}))
    asked, release = threading.Event(), threading.Event()

    def confirm(question):
        asked.set()
        assert release.wait(10)
        return {"confirmed": question}

    client.expose("confirm", confirm)
    client.expose("quick", lambda data: data * 2)
    slow = client.stream("ask", {"name": "confirm", "data": "delete 3 files?"})
    assert asked.wait(5)
    # While confirm() waits: calls, other server calls and pushes all get through.
    assert client.call("count", 4) == 3
    assert client.call("ask", {"name": "quick", "data": 21}) == 42
    ticks = queue.Queue()
    client.on("tick", ticks.put)
    assert ticks.get(timeout=5) == "t"
    assert not slow.closed
    release.set()
    assert list(slow) == [{"confirmed": "delete 3 files?"}]


def test_a_ui_error_reaches_python(start_server, connect):
    caught = queue.Queue()

    def ask_and_catch(out, data, server, client_id):
        try:
            server.call_client(client_id, data, None, timeout=10)
        except Exception as exc:
            caught.put(exc)

    class Cancelled(Exception):
        pass

    def refuse(data):
        raise Cancelled("the user closed the dialog")

    client = connect(start_server({"ask": ask_and_catch}))
    client.expose("confirm", refuse)
    client.expose("not_json", lambda data: object())
    client.call("ask", "confirm")
    error = caught.get(timeout=5)
    assert isinstance(error, RemoteError)
    assert error.type == "Cancelled" and "the user closed the dialog" in str(error)
    # A result JSON cannot carry is the function's error, not a broken connection.
    client.call("ask", "not_json")
    error = caught.get(timeout=5)
    assert isinstance(error, RemoteError) and error.type == "TypeError"
    # A name the client never exposed, or no longer does.
    client.call("ask", "nothing_by_that_name")
    assert isinstance(caught.get(timeout=5), UnknownAction)
    remove = client.expose("gone", lambda data: "here")
    remove()
    client.call("ask", "gone")
    assert isinstance(caught.get(timeout=5), UnknownAction)


def test_a_timeout_reaches_python_and_the_late_answer_is_dropped(start_server, connect):
    caught = queue.Queue()

    def ask_briefly(out, data, server, client_id):
        try:
            server.call_client(client_id, "confirm", None, timeout=0.3)
        except Exception as exc:
            caught.put(exc)

    client = connect(start_server({"ask": ask_briefly, "count": count}))
    release, returned = threading.Event(), threading.Event()

    def confirm(data):
        release.wait(10)
        returned.set()
        return True

    client.expose("confirm", confirm)
    client.call("ask")
    error = caught.get(timeout=5)
    assert isinstance(error, CallTimeout)
    # The server's {"callId": N, "cancel": true} has arrived: the client no
    # longer owes that answer...
    wait_for(lambda: not client._exposed._waiting, message="the server's cancel")
    release.set()
    assert returned.wait(5)
    assert client.call("count", 2) == 1
    # ...so it sent none, and the server had no UnknownCall to complain of.
    assert client.errors.empty()


# -- input to a background process ---------------------------------------------


class Echo(IgorProcess):
    """Answers each message in its inbox to the client that sent it."""

    def run(self):
        while not self.stopping:
            item = self.receive(0.05)
            if item is not None:
                sender, data = item
                self.output.send("echo", {"from": sender, "data": data}, client_id=sender)


class Deaf(IgorProcess):
    def run(self):
        self.wait()


def test_send_to_a_process_and_its_errors(start_server, connect):
    server = start_server({"count": count}, config={"inbox_size": 5},
                          processes={"echo": Echo(), "deaf": Deaf()})
    client = connect(server, client_id="alice")
    echoes = queue.Queue()
    client.on("echo", echoes.put)
    client.send_to_process("echo", {"text": "hi"})
    assert echoes.get(timeout=5) == {"from": "alice", "data": {"text": "hi"}}

    failures = queue.Queue()
    client.on("nobody", error=failures.put)
    client.send_to_process("nobody", 1)
    error = failures.get(timeout=5)
    assert (error.code, error.type) == (404, "UnknownProcess")
    assert client.errors.get(timeout=5) is error

    client.on("deaf", error=failures.put)
    for i in range(6):  # one more than its inbox holds
        client.send_to_process("deaf", i)
    error = failures.get(timeout=5)
    assert (error.code, error.type) == (429, "InboxFull")
    assert client.call("count", 2) == 1

    with pytest.raises(ValueError):
        client.send_to_process("", 1)
