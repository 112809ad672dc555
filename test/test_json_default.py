"""``json_default``: the application's hook to encode its own types, for handler values and process pushes."""

import asyncio
import dataclasses
import datetime
import decimal
import json
import queue

import pytest
import websocket

from igor import ConfigError, IgorProcess, IgorServer, RemoteError


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    """A type the application's json_default does not know either."""


VALUES = {
    "datetime": (datetime.datetime(2026, 12, 2, 4, 30, tzinfo=datetime.timezone.utc), "2026-12-02T04:30:00+00:00"),
    "set": ({3, 1, 2}, [1, 2, 3]),
    "dataclass": (Point(1, 2), {"x": 1, "y": 2}),
    "decimal": (decimal.Decimal("0.10"), "0.10"),
}


def app_default(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"app_default cannot encode {type(value).__name__}")


def api():
    def returns(out, data):
        return VALUES[data][0]

    def yields(out, data):
        yield VALUES[data][0]

    async def async_returns(out, data):
        await asyncio.sleep(0)
        return VALUES[data][0]

    def opaque(out, data):
        return {"thing": Opaque()}

    return {"returns": returns, "yields": yields, "async_returns": async_returns, "opaque": opaque}


@pytest.mark.parametrize("action", ["returns", "yields", "async_returns"])
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_without_json_default_the_error_names_the_hook(start_server, connect, kind, action):
    client = connect(start_server(api()))
    with pytest.raises(RemoteError) as info:
        client.call(action, kind)
    assert info.value.code == 500
    message = info.value.args[0]
    assert "not JSON serialisable" in message
    assert "json_default" in message
    # The handler's value is named, so the author can tell which of their types it was.
    assert type(VALUES[kind][0]).__name__ in message


@pytest.mark.parametrize("action", ["returns", "yields", "async_returns"])
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_with_json_default_the_value_is_encoded(start_server, connect, kind, action):
    client = connect(start_server(api(), config={"json_default": app_default}))
    assert client.call(action, kind) == VALUES[kind][1]


def test_a_json_default_that_raises_type_error_gives_its_message(start_server, connect):
    client = connect(start_server(api(), config={"json_default": app_default}))
    with pytest.raises(RemoteError) as info:
        client.call("opaque")
    assert info.value.code == 500
    assert info.value.args[0] == "value is not JSON serialisable: app_default cannot encode Opaque"
    # The connection and the server go on.
    assert client.call("returns", "set") == [1, 2, 3]


class Pusher(IgorProcess):
    """Pushes the value a client asks for; records what its send raised."""

    def __init__(self):
        super().__init__()
        self.errors = queue.Queue()

    def run(self):
        while not self.stopping:
            message = self.receive()
            if message is None:
                continue
            try:
                self.output.send("value", VALUES[message.data][0])
            except ValueError as exc:
                self.errors.put(str(exc))


def ask_process(server, kind):
    ws = websocket.create_connection(server.url)
    ws.settimeout(5)
    ws.send(json.dumps({"process": "pusher", "data": kind}))
    return ws


def test_process_pushes_use_json_default(start_server):
    pusher = Pusher()
    server = start_server(config={"json_default": app_default}, processes={"pusher": pusher})
    ws = ask_process(server, "datetime")
    assert json.loads(ws.recv()) == {"streamId": "pusher", "action": "value", "data": VALUES["datetime"][1]}
    assert pusher.errors.empty()
    ws.close()


def test_a_process_push_without_json_default_raises_the_clear_error(start_server):
    pusher = Pusher()
    server = start_server(processes={"pusher": pusher})
    ws = ask_process(server, "decimal")
    error = pusher.errors.get(timeout=5)
    assert "Decimal" in error and "json_default" in error
    ws.close()


def test_json_default_must_be_callable():
    with pytest.raises(ConfigError, match="json_default"):
        IgorServer(api={}, config={"port": 0, "json_default": "isoformat"})
