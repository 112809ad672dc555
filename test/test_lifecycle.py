"""The server as a child process: ready line, exit codes, signals, exit with parent, static files."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
import wsraw
from conftest import ROOT

from igor import ConnectionFailed, IgorClient, RemoteError

APP = textwrap.dedent(
    """
    import sys, threading
    from igor import IgorProcess

    def hello(out, data, **kwargs):
        out.send('Hello ' + data['name'])

    def shutdown(out, data, **kwargs):
        sys.exit(0)

    def crash(out, data, **kwargs):
        sys.exit(3)

    def hang(out, data, **kwargs):
        out.wait(60)

    API = {'hello': hello, 'shutdown': shutdown, 'crash': crash, 'hang': hang}
    """
)


class Child:
    """A server subprocess whose ready line has been read."""

    def __init__(self, args, cwd, stdin=subprocess.PIPE):
        self.proc = subprocess.Popen(args, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("IGOR_READY "):
            self.proc.kill()
            raise AssertionError(f"no ready line: {line!r} {self.proc.stderr.read()}")
        self.ready = json.loads(line[len("IGOR_READY "):])

    def client(self, **kwargs):
        return IgorClient(self.ready["url"], token=self.ready["token"], **kwargs)

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream:
                stream.close()


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def spawn():
    children = []

    def start(args, cwd, **kwargs):
        child = Child(args, cwd, **kwargs)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


def cli(*extra):
    return [sys.executable, "-m", "igor", "app:API", "--port", "0", *extra]


def test_ready_line_and_call(spawn, app_dir):
    child = spawn(cli(), app_dir)
    assert set(child.ready) == {"url", "port", "token"}
    assert child.ready["url"] == f"ws://127.0.0.1:{child.ready['port']}/"
    assert len(child.ready["token"]) >= 22
    with child.client() as igor:
        assert igor.call("hello", {"name": "Ada"}) == "Hello Ada"
    with pytest.raises(ConnectionFailed) as refused:
        IgorClient(child.ready["url"])
    assert refused.value.status == 401  # no token


def test_shutdown_action_ends_the_program_with_code_0(spawn, app_dir):
    child = spawn(cli(), app_dir)
    watcher = child.client()
    with child.client() as igor:
        igor.call("shutdown")
    assert child.wait(10) == 0
    assert watcher.wait_closed(5) and watcher.close_code == 1001
    # The port is released: a new server can listen on it (connections in
    # TIME_WAIT remain, as after any server-initiated close).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", child.ready["port"]))
        sock.listen()


def test_sys_exit_code_is_the_program_exit_code(spawn, app_dir):
    child = spawn(cli(), app_dir)
    with child.client() as igor:
        igor.call("crash")
    assert child.wait(10) == 3


def test_server_instance_shutdown_action(spawn):
    child = spawn([sys.executable, "server_instance.py"], ROOT)
    with child.client() as igor:
        assert igor.call("hello", {"name": "Ada"}) == "Hello Ada"
        assert igor.call("whoami")["calls"] == 1
        with pytest.raises(RemoteError):
            igor.call("fail")
        igor.call("shutdown")
    assert child.wait(10) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_gracefully(spawn, app_dir, signum):
    child = spawn(cli(), app_dir)
    igor = child.client()
    stream = igor.stream("hang")
    child.proc.send_signal(signum)
    assert child.wait(10) == 0
    assert list(stream) == []  # the stream got its close
    assert igor.wait_closed(5) and igor.close_code == 1001


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_as_soon_as_the_ready_line_appears_is_graceful(app_dir, signum):
    """An app quit right after it started signals its backend at once: the handlers are in before the line.

    Before they were, about 1 run in 12 ended with -2 or -15. 50 runs of each, four at a time.
    """
    codes, batch = [], []
    for run in range(50):
        proc = subprocess.Popen(cli(), cwd=app_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        batch.append(proc)
        assert proc.stdout.readline().startswith("IGOR_READY ")
        proc.send_signal(signum)  # the instant the line is read: nothing else has happened yet
        if len(batch) == 4 or run == 49:
            for done in batch:
                codes.append(done.wait(15))
                done.stdout.close()
                done.stdin.close()
            batch.clear()
    assert codes == [0] * 50, codes


def test_exits_when_stdin_closes(spawn, app_dir):
    child = spawn(cli(), app_dir)  # stdin is a pipe: exit-with-parent is on by default
    start = time.monotonic()
    child.proc.stdin.close()
    assert child.wait(5) == 0
    assert time.monotonic() - start < 2


def test_no_exit_with_parent_keeps_running_after_stdin_closes(spawn, app_dir):
    child = spawn(cli("--no-exit-with-parent"), app_dir)
    child.proc.stdin.close()
    with child.client() as igor:  # still serving after EOF was seen
        assert igor.call("hello", {"name": "still"}) == "Hello still"
        igor.call("shutdown")
    assert child.wait(10) == 0


def test_exits_when_the_parent_is_killed(tmp_path, app_dir):
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys
        child = subprocess.Popen({cli()!r}, cwd={str(app_dir)!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = child.stdout.readline()
        print(child.pid, flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # The child is reaped by init; poll until it is gone.
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the server outlived its parent")
    finally:
        parent.kill()
        parent.stdin.close()
        parent.stdout.close()


def test_unknown_module_fails_with_a_clear_message(app_dir):
    result = subprocess.run([sys.executable, "-m", "igor", "nope:API", "--port", "0"], cwd=app_dir,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "nope" in result.stderr


# -- static files ----------------------------------------------------------------------


@pytest.fixture
def static_server(start_server, tmp_path):
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<h1>demo</h1>")
    (site / "js" / "app.js").write_text("export const x = 1;")
    (site / ".secret").write_text("hidden")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", site / "link.txt")
    return start_server(config={"static_dir": str(site), "token": "t"})


def http_get(port, path, headers=None, method="GET"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, None, b""


def test_static_files(static_server):
    port = static_server.port
    assert http_get(port, "/") == (200, "text/html; charset=utf-8", b"<h1>demo</h1>")
    assert http_get(port, "/js/app.js")[:2] == (200, "text/javascript; charset=utf-8")
    assert http_get(port, "/js/app.js", method="HEAD") == (200, "text/javascript; charset=utf-8", b"")
    assert http_get(port, "/missing.css")[0] == 404
    assert http_get(port, "/.secret")[0] == 404
    assert http_get(port, "/link.txt")[0] == 404
    assert http_get(port, "/index.html", method="POST")[0] == 405


@pytest.mark.parametrize("path", ["/../outside.txt", "/%2e%2e/outside.txt", "/js/../../outside.txt",
                                  "/..%2foutside.txt", "//etc/passwd", "/%00", "/..\\outside.txt"])
def test_static_path_traversal_is_refused(static_server, path):
    with socket.create_connection(("127.0.0.1", static_server.port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert wsraw.read_http_head(sock)[0] == 404


def test_static_files_check_the_host(static_server):
    assert http_get(static_server.port, "/", {"Host": "evil.example"})[0] == 403


def test_no_static_dir_is_404(start_server):
    assert http_get(start_server().port, "/")[0] == 404


SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading
    from igor import IgorServer

    class Pusher(threading.Thread):
        def run(self):
            self.output.send('tick', 1, client_id='nobody yet')  # raises UnknownClient: the process dies

    server = IgorServer(api={'quit': lambda out, data: sys.exit(0)}, port=0, ready_line=True)
    server.add_process('pusher', Pusher())
    if sys.argv[1:] == ['configured']:
        logging.basicConfig(level=logging.CRITICAL)  # the program's own choice: nothing below CRITICAL
    server.run_forever()
    """
)


@pytest.mark.parametrize("configured", [False, True])
def test_errors_reach_stderr_unless_the_program_configured_logging(tmp_path, configured):
    (tmp_path / "script.py").write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "script.py"] + (["configured"] if configured else []), cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = json.loads(proc.stdout.readline()[len("IGOR_READY "):])
    with IgorClient(ready["url"]) as igor:
        igor.call("quit")  # the stream closes as the program exits
    assert proc.wait(10) == 0
    stderr = proc.stderr.read()
    if configured:
        assert "pusher" not in stderr, stderr
    else:
        assert "process 'pusher' failed" in stderr and "nobody yet" in stderr, stderr
