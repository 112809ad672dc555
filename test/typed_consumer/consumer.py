"""A small application written against igor's public API, for ``mypy --strict``.

Never run, only type-checked (test/test_client_typing.py): each line is what
a user's typed code would write, so an annotation igor lacks or gets wrong
shows up as a mypy error here.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

from igor import (
    CallTimeout,
    ConnectionClosed,
    IgorClient,
    IgorProcess,
    IgorServer,
    Inbound,
    RemoteError,
    Stream,
    flatten,
)
from igor.client import DEFAULT, ClientStream, Timeout


def hello(out: Stream, data: Dict[str, str]) -> None:
    out.send("Hello " + data["name"])


def count(out: Stream, data: int, session: Dict[str, Any]) -> None:
    for i in range(data):
        if out.wait(0.01):
            return
        out.send(i)
    session["counted"] = data


class Clock(IgorProcess):
    def run(self) -> None:
        while not self.wait(1.0):
            self.output.send("tick", {"n": 1})
            message: Optional[Inbound] = self.receive(0)
            if message is not None:
                self.output.send("echo", message.data, client_id=message.client_id)
        self.output.finish()


def serve() -> IgorServer:
    server = IgorServer(api=flatten({"hello": hello, "jobs": {"count": count}}), config={"port": 0})
    server.add_process("clock", Clock())
    server.run_forever(threaded=True)
    port: int = server.port
    assert port > 0
    answer: Any = server.call_client("main", "confirm", {"question": "?"}, timeout=5.0)
    assert answer is not None
    return server


def confirm(data: Any) -> bool:
    return bool(data)


def use(url: str, token: Optional[str]) -> List[int]:
    with IgorClient(url, token=token, client_id="main", timeout=5.0) as client:
        remove = client.expose("confirm", confirm)
        greeting: Any = client.call("hello", {"name": "Ada"})
        print(greeting)
        stream: ClientStream = client.stream("jobs.count", 3, timeout=None)
        values: Iterator[Any] = iter(stream)
        counted = [int(value) for value in values]
        wait: Timeout = DEFAULT
        client.call("hello", {"name": "Bob"}, timeout=wait)
        client.call("hello", {"name": "Eve"}, timeout=float("inf"))
        stream = client.stream("jobs.count", 1)
        stream.send("input")
        stream.end()
        stream.cancel()
        client.on("tick", lambda data: print(data), error=lambda error: print(error.code), complete=lambda: None)
        client.send_to_process("clock", "hi")
        remove()
        secret: Optional[str] = client.resume
        assert secret is None or isinstance(secret, str)
        try:
            client.call("missing")
        except RemoteError as error:
            code: int = error.code
            print(code, error.type)
        except CallTimeout:
            pass
        except ConnectionClosed as closed:
            close_code: int = closed.code
            reason: str = closed.reason
            print(close_code, reason)
        return counted
