"""The core's shape and life cycle: module layout, handler checks, with-blocks, the heartbeat, logging."""

from __future__ import annotations

import ast
import logging
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, wait_for

from igor import ConfigError, IgorClient, IgorProcess, IgorServer, flatten

PACKAGE = os.path.join(ROOT, "igor")


def runtime_imports(path: str) -> set:
    """The igor modules ``path`` imports when it runs (not those imported only for type checking)."""
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    found = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 1:
                found.add((child.module or "").split(".")[0])
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # a deferred import inside a function does not make a cycle at import time
            else:
                visit(child)

    visit(tree)
    return found - {""}


def test_the_package_imports_form_no_cycle():
    modules = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py"}
    graph = {name: runtime_imports(os.path.join(PACKAGE, name + ".py")) & modules for name in modules}
    assert "server" not in graph["transport"] and "server" not in graph["dispatch"]
    state: dict = {}

    def walk(name: str, path: list) -> None:
        state[name] = "visiting"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "visiting", f"import cycle: {' -> '.join(path + [name, dep])}"
            if dep not in state:
                walk(dep, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [])


def test_the_seed_imports_keep_working():
    from igor.core import flatten as core_flatten
    from igor.server import CONFIG
    from igor.server import IgorServer as ServerFromServer

    assert core_flatten is flatten and ServerFromServer is IgorServer and CONFIG["port"] == 5678


@pytest.mark.parametrize("handler, words", [
    (lambda out: None, "(out, data"),
    (lambda out, data, user: None, "'user'"),
    (lambda out, data, *, db: None, "'db'"),
])
def test_a_handler_igor_cannot_call_is_refused_at_construction(handler, words):
    with pytest.raises(ConfigError) as error:
        IgorServer(api={"act": handler})
    assert "'act'" in str(error.value) and words in str(error.value)


def test_handlers_with_defaults_and_known_keywords_are_fine():
    IgorServer(api={"a": lambda out, data, user=None, *, session, scope=None: None, "b": print})


def test_an_unflattened_api_says_to_flatten_it():
    with pytest.raises(ConfigError, match="flatten"):
        IgorServer(api={"events": {"create": lambda out, data: None}})


def test_with_block_starts_and_shuts_down():
    with IgorServer(api={"hi": lambda out, data: "hi"}, port=0) as server:
        assert server.running
        with IgorClient(server.url) as client:
            assert client.call("hi") == "hi"
    assert not server.running


def test_shutdown_says_whether_it_finished(start_server):
    server = start_server({"hi": lambda out, data: "hi"})
    assert server.shutdown() is True
    # From a handler the shutdown cannot wait for itself: it says it has not finished yet.
    answers = []
    server = start_server({"stop": lambda out, data, server: answers.append(server.shutdown())})
    with IgorClient(server.url) as client:
        client.call("stop")
    assert server.wait(10) == 0 and answers == [False]


def test_processes_start_before_connections_are_accepted(monkeypatch):
    class Waiting(IgorProcess):
        def run(self):
            self.wait()

    server = IgorServer(port=0)
    process = server.add_process("waiting", Waiting())
    alive_when_accepting = []
    spawn = server._spawn

    def spawn_and_check(target, name, **kwargs):
        if name == "igor-accept":
            alive_when_accepting.append(process.is_alive())
        spawn(target, name, **kwargs)

    monkeypatch.setattr(server, "_spawn", spawn_and_check)
    with server:
        pass
    assert alive_when_accepting == [True]


def test_the_heartbeat_survives_a_failing_tick(start_server, monkeypatch, caplog):
    server = start_server(config={"handshake_timeout": 0.4})
    calls = []

    def broken_purge():
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(server.registry, "purge_sessions", broken_purge)
    wait_for(lambda: len(calls) >= 3, message="the heartbeat to keep ticking after a failure")
    # Handshake expiry (the other step of each tick) still runs: a silent socket is dropped.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert sock.recv(1) == b""
    assert "error in the heartbeat" in caplog.text


def test_the_library_prints_nothing_unless_the_application_configures_logging():
    code = ("import logging, igor; logging.getLogger('igor').warning('hidden'); "
            "s = igor.IgorServer(port=0, logging={'level': 'INFO'}); "
            "print(logging.getLogger('igor').level)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "hidden" not in done.stderr and "No handlers" not in done.stderr
    assert done.stdout.strip() == str(logging.INFO)


def test_a_sync_only_server_never_loads_asyncio_or_numpy():
    # Each adds 8-14 MiB to the process; an app that does not need them should not pay for them.
    code = ("import sys, igor; from igor import IgorClient\n"
            "with igor.IgorServer({'echo': lambda out, data: data}, port=0) as s, IgorClient(s.url) as c:\n"
            "    assert c.call('echo', 'x' * 1000) == 'x' * 1000\n"
            "print(sorted(m for m in ('asyncio', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
