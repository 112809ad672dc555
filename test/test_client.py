"""The Python client: calls, streams, cancel, timeouts, pushes, and a dropped connection."""

import queue
import threading

import pytest

from igor import CallTimeout, ConnectionClosed, IgorProcess, RemoteError, StreamCancelled


def count(out, data):
    for i in range(data):
        if out.wait(0.005):
            return
        out.send(i)


def forever(out, data):
    i = 0
    while not out.wait(0.005):
        out.send(i)
        i += 1


class Pusher(IgorProcess):
    def run(self):
        while not self.wait(0.01):
            self.output.send("ping", "p")


def test_call_stream_and_context_manager(start_server, connect):
    server = start_server({"count": count})
    client = connect(server)
    assert client.call("count", 3) == 2
    assert list(client.stream("count", 5)) == [0, 1, 2, 3, 4]
    assert client.call("count", 0) is None


def test_cancel_ends_iteration_and_the_server_stream(start_server, connect):
    cancelled = threading.Event()

    def watched(out, data):
        forever(out, data)
        cancelled.set()

    client = connect(start_server({"forever": watched, "count": count}))
    stream = client.stream("forever")
    values = [next(stream) for _ in range(3)]
    stream.cancel()
    assert values == [0, 1, 2] and list(stream) == []
    assert cancelled.wait(5)
    assert client.call("count", 2) == 1  # the connection is fine


def test_timeout_raises_and_cancels(start_server, connect):
    gone = threading.Event()

    def slow(out, data):
        out.wait(10)
        gone.set()

    client = connect(start_server({"slow": slow}))
    with pytest.raises(CallTimeout):
        client.call("slow", timeout=0.2)
    assert gone.wait(5)


def test_remote_error_fields(start_server, connect):
    client = connect(start_server({"count": count}))
    with pytest.raises(RemoteError) as info:
        client.call("missing")
    assert (info.value.code, info.value.type) == (404, "UnknownAction")
    assert "missing" in str(info.value)


def test_push_listeners(start_server, connect):
    client = connect(start_server(processes={"pusher": Pusher()}))
    by_action, everything = queue.Queue(), queue.Queue()
    remove = client.on("ping", by_action.put)
    client.on(None, everything.put)
    assert by_action.get(timeout=5) == "p"
    assert everything.get(timeout=5) == {"streamId": "pusher", "action": "ping", "data": "p"}
    remove()
    while not by_action.empty():
        by_action.get_nowait()
    everything.get(timeout=5)
    everything.get(timeout=5)  # two more pushes arrived...
    assert by_action.empty()  # ...and none reached the removed listener


def test_call_fails_clearly_when_the_server_goes_away(start_server, connect):
    server = start_server({"forever": forever})
    client = connect(server)
    stream = client.stream("forever")
    next(stream)
    server.shutdown()
    list(stream)  # ends: the shutdown closes every stream before the connection
    assert client.wait_closed(5) and client.close_code == 1001
    with pytest.raises(ConnectionClosed):
        client.call("forever")


def test_errors_without_a_stream_are_collected(start_server, connect):
    client = connect(start_server({"count": count}))
    client._ws.send("not json")
    error = client.errors.get(timeout=5)
    assert error.code == 400


def test_leaving_a_for_loop_early_cancels_the_call(start_server, connect):
    cancelled = threading.Event()

    def watched(out, data):
        i = 0
        try:
            while True:
                out.send(i)
                i += 1
                out.wait(0.005)
        except StreamCancelled:
            cancelled.set()
            raise

    client = connect(start_server({"watched": watched, "count": count}))
    stream = client.stream("watched")
    for value in stream:
        if value == 2:
            break
    assert stream.cancelled and stream.closed
    assert cancelled.wait(5)
    assert client.call("count", 2) == 1


def test_an_exception_in_the_loop_body_cancels_too(start_server, connect):
    stopped = threading.Event()

    def watched(out, data):
        forever(out, data)
        if out.cancelled:
            stopped.set()

    client = connect(start_server({"watched": watched}))
    with pytest.raises(KeyError):
        for _ in client.stream("watched"):
            raise KeyError("the caller's own bug")
    assert stopped.wait(5)


def test_a_finished_loop_does_not_cancel(start_server, connect):
    client = connect(start_server({"count": count}))
    stream = client.stream("count", 3)
    assert [v for v in stream] == [0, 1, 2]
    assert stream.closed and not stream.cancelled


def test_call_timeout_states_the_callers_timeout(start_server, connect):
    def ticking(out, data):
        forever(out, data)

    client = connect(start_server({"ticking": ticking}))
    # Values keep arriving, so only a bound on the whole call can end it.
    with pytest.raises(CallTimeout) as info:
        client.call("ticking", timeout=0.3)
    assert "0.3s" in str(info.value) and "ticking" in str(info.value)


def test_stream_timeout_is_per_value(start_server, connect):
    def silent(out, data):
        out.send("first")
        out.wait(10)

    client = connect(start_server({"silent": silent}))
    stream = client.stream("silent", timeout=0.2)
    assert next(stream) == "first"
    with pytest.raises(CallTimeout) as info:
        next(stream)
    assert "0.2s" in str(info.value)
    assert stream.cancelled


class Finisher(IgorProcess):
    """Pushes one step when told to, then says it has finished."""

    def __init__(self):
        super().__init__()
        self.go = threading.Event()

    def run(self):
        self.go.wait()
        self.output.send("step", 1)
        self.output.finish()


class Crasher(Finisher):
    def run(self):
        self.go.wait()
        self.output.send("step", 2)
        raise ValueError("boom")


def test_on_a_process_id_gets_its_pushes_its_end_and_its_failure(start_server, connect):
    finisher, crasher = Finisher(), Crasher()
    client = connect(start_server({"count": count}, processes={"finisher": finisher, "crasher": crasher}))
    client.call("count", 1)  # a call answered: the server has this client in its list for pushes
    pushes, failures = queue.Queue(), queue.Queue()
    finished = threading.Event()
    client.on("finisher", pushes.put, complete=finished.set)
    client.on("crasher", pushes.put, error=failures.put)
    any_failure, any_end = queue.Queue(), threading.Event()
    client.on(None, error=any_failure.put, complete=any_end.set)
    finisher.go.set()
    assert finished.wait(5) and any_end.wait(5)
    assert pushes.get(timeout=5) == 1
    crasher.go.set()
    assert pushes.get(timeout=5) == 2
    failure = failures.get(timeout=5)
    assert isinstance(failure, RemoteError)
    assert (failure.type, failure.code) == ("ValueError", 500) and "boom" in str(failure)
    assert any_failure.get(timeout=5) is failure
    assert client.errors.get(timeout=5) is failure  # errors of no call are collected too


def test_on_action_and_on_everything_still_work_beside_process_ids(start_server, connect):
    finisher = Finisher()
    client = connect(start_server({"count": count}, processes={"finisher": finisher}))
    client.call("count", 1)  # a call answered: the server has this client in its list for pushes
    by_action, by_process, everything = queue.Queue(), queue.Queue(), queue.Queue()
    client.on("step", by_action.put)
    client.on("finisher", by_process.put)
    client.on(None, everything.put)
    finisher.go.set()
    assert by_action.get(timeout=5) == 1 and by_process.get(timeout=5) == 1
    assert everything.get(timeout=5) == {"streamId": "finisher", "action": "step", "data": 1}


def test_on_needs_something_to_call(start_server, connect):
    client = connect(start_server())
    with pytest.raises(TypeError):
        client.on("x")


def held_until(release):
    """A handler that answers only once the test says so."""
    def held(out, data):
        release.wait(10)
        out.send("done")
    return held


@pytest.mark.parametrize("forever", [None, float("inf")])
def test_no_timeout_outlasts_the_clients_default(start_server, connect, forever):
    release = threading.Event()
    client = connect(start_server({"held": held_until(release)}), timeout=0.2)
    results = queue.Queue()
    waiting = threading.Thread(target=lambda: results.put(client.call("held", timeout=forever)))
    waiting.start()
    stream = client.stream("held", timeout=forever)
    # A call on the client's default gives up meanwhile: the two above have waited past it.
    with pytest.raises(CallTimeout):
        client.call("held")
    release.set()
    waiting.join(5)
    assert results.get(timeout=5) == "done"
    assert list(stream) == ["done"]


def test_default_says_the_clients_own_timeout(start_server, connect):
    from igor.client import DEFAULT

    release = threading.Event()
    client = connect(start_server({"held": held_until(release)}), timeout=0.2)
    try:
        with pytest.raises(CallTimeout) as info:
            client.call("held", timeout=DEFAULT)
        assert "0.2s" in str(info.value)
        with pytest.raises(CallTimeout):
            next(client.stream("held", timeout=DEFAULT))
    finally:
        release.set()  # the handlers end now, not 10 s into later tests


def test_an_infinite_client_timeout_connects_and_means_none(start_server, connect):
    client = connect(start_server({"count": count}), timeout=float("inf"))
    assert client.timeout is None
    assert client.call("count", 2) == 1
    client.timeout = float("inf")
    assert client.timeout is None
    client.close()
    assert client.wait_closed(float("inf"))


@pytest.mark.parametrize(("timeout", "error"), [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError),
                                                (True, TypeError)])
def test_a_timeout_that_is_no_duration_is_refused_at_once(start_server, connect, timeout, error):
    client = connect(start_server({"count": count}))
    with pytest.raises(error):
        client.call("count", 1, timeout=timeout)
    assert client.call("count", 2) == 1  # nothing was sent for the refused call


def remember(out, data, session):
    session.setdefault("items", []).append(data)
    return session["items"]


def test_a_new_client_resumes_a_parked_session_with_the_last_secret(start_server, connect):
    from conftest import wait_for

    server = start_server({"remember": remember})
    first = connect(server, client_id="w")
    assert isinstance(first.resume, str) and first.resume
    assert first.call("remember", 1) == [1]
    first.introduce_self("w")  # again, as the same id: it presents its secret and gets a new one
    secret = first.resume
    first.close()
    wait_for(lambda: len(server.registry) == 0, message="the server to park w's session")
    for claim in (None, "guessed"):
        with pytest.raises(RemoteError) as info:
            connect(server, client_id="w", resume=claim)
        assert (info.value.code, info.value.type) == (409, "ClientIdTaken")
    second = connect(server, client_id="w", resume=secret)
    assert second.call("remember", 2) == [1, 2]  # w's session, handed back
    assert second.resume not in (None, secret)  # rotated on every introduction
    stale, secret = secret, second.resume
    second.close()
    wait_for(lambda: len(server.registry) == 0, message="the server to park w's session")
    with pytest.raises(RemoteError):
        connect(server, client_id="w", resume=stale)
    third = connect(server)
    third.introduce_self("w", secret)
    assert third.call("remember", 3) == [1, 2, 3]


def test_introducing_again_presents_the_latest_secret(start_server, connect):
    server = start_server({"remember": remember})
    client = connect(server, client_id="w")
    sent = []
    send = client._send
    client._send = lambda message: (sent.append(message), send(message))[1]
    for _ in range(2):
        secret = client.resume
        client.introduce_self("w")
        assert sent[-1]["data"] == {"client_id": "w", "resume": secret}
        assert client.resume != secret
    client.introduce_self("other")  # a new id: the old id's secret is not for it
    assert sent[-1]["data"] == {"client_id": "other"}
    assert client.client_id == "other" and client.resume
