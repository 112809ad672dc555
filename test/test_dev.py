"""``python -m igor dev``, run for real: a module in a temporary folder, edited while a client is connected."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest
from conftest import wait_for

from igor import BackendReloaded, ConnectionClosed, ConnectionFailed, IgorClient
from igor.registry import ClientRegistry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(os.name != "posix", reason="igor dev hands its socket to children on POSIX only")

APP = textwrap.dedent('''
    def hello(out, data):
        return "one"

    def remember(out, data, session):
        session["kept"] = data
        session["not_json"] = {1, 2}
        return True

    def recall(out, data, session):
        return sorted(session)

    def kept(out, data, session):
        return session.get("kept")

    def slow(out, data):
        out.send("started")
        out.wait(30)

    def quit(out, data):
        import sys
        sys.exit(data)

    API = {"hello": hello, "remember": remember, "recall": recall, "kept": kept, "slow": slow, "quit": quit}
''')


class Dev:
    """A running ``igor dev``: its ready line, and its stderr as it comes."""

    def __init__(self, folder, *args, stdin=subprocess.DEVNULL):
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("IGOR_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "igor", "dev", "app:API", "--port", "0", *args],
            cwd=folder, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        line = self.process.stdout.readline()
        assert line.startswith("IGOR_READY "), (line, self.stderr())
        self.ready = json.loads(line[len("IGOR_READY "):])
        self.url, self.token, self.port = self.ready["url"], self.ready["token"], self.ready["port"]

    def _read_stderr(self):
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def stderr(self):
        with self._changed:
            return "".join(self.lines)

    def wait_stderr(self, text, count=1, timeout=10.0):
        """Wait until ``text`` has appeared ``count`` times on stderr."""
        with self._changed:
            if not self._changed.wait_for(lambda: "".join(self.lines).count(text) >= count, timeout):
                raise AssertionError(f"no {text!r} (x{count}) on stderr within {timeout}s:\n{''.join(self.lines)}")

    def client(self, **kwargs):
        return IgorClient(self.url, token=self.token, timeout=5, **kwargs)

    def answer(self, action="hello"):
        with self.client() as client:
            return client.call(action)

    def answered(self, expected, action="hello"):
        """Whether a new connection's call answers ``expected``; a connection made in the instant backends
        change places may be dropped in its handshake or closed with 1012, and is then tried again."""
        try:
            return self.answer(action) == expected
        except (ConnectionFailed, ConnectionClosed):
            return False

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def dev(app):
    running = Dev(app)
    yield running
    running.stop()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_an_edit_reloads_on_the_same_port_and_the_session_comes_back(app, dev):
    assert dev.port != 0 and dev.url == f"ws://127.0.0.1:{dev.port}/" and dev.token
    assert dev.answer() == "one"
    window = dev.client(client_id="window")
    assert window.call("remember", {"n": 1}) is True
    slow = iter(window.stream("slow"))
    assert next(slow) == "started"

    written = time.monotonic()
    (app / "app.py").write_text(APP.replace('"one"', '"two"'))  # the same size, within the same second
    wait_for(lambda: dev.answered("two"), timeout=5, message="the edited handler's answer")
    took = time.monotonic() - written
    assert took < 1.0, f"the reload took {took:.2f}s from the write:\n{dev.stderr()}"

    # The call in flight failed with the reload's close, and so did the connection.
    with pytest.raises(ConnectionClosed) as raised:
        next(slow)
    assert (raised.value.code, raised.value.reason) == (1012, "backend reloaded")
    assert "backend reloaded" in str(raised.value)
    assert window.wait_closed(5) and (window.close_code, window.close_reason) == (1012, "backend reloaded")

    # Reconnected with its secret, the client has its session back, less what JSON cannot hold.
    again = dev.client(client_id="window", resume=window.resume)
    assert again.call("kept") == {"n": 1}, dev.stderr()
    assert again.call("recall") == ["kept"]
    assert "not JSON" in dev.stderr() and "not_json" in dev.stderr()
    # Without the secret the id is not handed over.
    again.close()
    with pytest.raises(Exception, match="resume secret"):
        dev.client(client_id="window")
    dev.wait_stderr("1 session(s) handed over")
    assert dev.stop() == 0
    assert dev.process.stdout.read() == ""  # one ready line, for the first backend only


def test_a_python_client_with_reconnect_comes_back_by_itself_with_its_session(app, dev, request):
    window = dev.client(client_id="window", reconnect=True)
    request.addfinalizer(window.close)  # else it would try to reconnect after this test's igor dev is gone
    assert window.call("remember", {"n": 2}) is True
    slow = iter(window.stream("slow"))
    assert next(slow) == "started"
    (app / "app.py").write_text(APP.replace('"one"', '"two"'))
    with pytest.raises(BackendReloaded, match="the backend reloaded"):
        next(slow)
    assert window.wait_open(5), window.status
    # Nothing but the reconnect option: the same client object, id, session and port.
    assert window.call("hello") == "two"
    assert window.call("kept") == {"n": 2}
    assert window.client_id == "window" and window.url == dev.url


def test_a_syntax_error_keeps_the_old_backend_until_the_file_is_fixed(app, dev):
    assert dev.answer() == "one"
    (app / "app.py").write_text(APP + "\ndef broken(:\n    pass\n")
    dev.wait_stderr("SyntaxError")
    dev.wait_stderr("keeps serving")
    assert 'app.py", line' in dev.stderr()
    assert dev.answer() == "one"
    (app / "app.py").write_text(APP.replace('"one"', '"three"'))
    wait_for(lambda: dev.answered("three"), timeout=5, message="the fixed module's answer")
    assert dev.stop() == 0


def test_any_import_error_keeps_the_old_backend(app, dev):
    (app / "app.py").write_text("import no_such_module_here\n" + APP)
    dev.wait_stderr("ModuleNotFoundError")
    dev.wait_stderr("keeps serving")
    assert dev.answer() == "one"


def test_a_watched_folder_reloads_too(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "words.py").write_text('WORD = "first"\n')
    (tmp_path / "app" / "app.py").write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(tmp_path / "lib")!r})
        import words

        API = {{"word": lambda out, data: words.WORD}}
    '''))
    dev = Dev(tmp_path / "app", "--watch", str(tmp_path / "lib"))
    try:
        assert dev.answer("word") == "first"
        (tmp_path / "lib" / "words.py").write_text('WORD = "other"\n')
        wait_for(lambda: dev.answered("other", "word"), timeout=5, message="the watched module's new value")
    finally:
        dev.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_and_its_backend_with_code_0(dev, sig):
    assert dev.answer() == "one"
    assert dev.stop(sig) == 0
    assert refused(dev.port)


def test_a_backend_that_exits_by_itself_ends_igor_dev_with_its_code(dev):
    with dev.client() as client:
        try:
            client.call("quit", 3)  # the stream closes as at any shutdown, or the connection first
        except ConnectionClosed:
            pass
    assert dev.process.wait(10) == 3
    assert refused(dev.port)


def test_its_backends_end_when_it_is_killed(dev):
    assert dev.answer() == "one"
    dev.process.kill()
    dev.process.wait(10)
    # Each backend sees its end of the control channel close, and shuts down: the port is let go.
    wait_for(lambda: refused(dev.port), timeout=10, message="the port to be released")


def test_it_takes_the_serve_options_and_prints_the_page_address(app):
    (app / "ui").mkdir()
    (app / "ui" / "index.html").write_text("<p>page</p>")
    dev = Dev(app, "--token", "fixed-token", "--static", "ui")
    try:
        assert dev.token == "fixed-token"
        dev.wait_stderr(f"igor: open http://127.0.0.1:{dev.port}/#token=fixed-token")
        (app / "app.py").write_text(APP.replace('"one"', '"two"'))
        wait_for(lambda: dev.answered("two"), timeout=5, message="the edited handler's answer")
        with urllib.request.urlopen(f"http://127.0.0.1:{dev.port}/index.html", timeout=5) as page:
            assert page.read() == b"<p>page</p>"
        assert dev.stderr().count("igor: open ") == 1
    finally:
        dev.stop()


def test_exit_with_parent_when_stdin_closes(app):
    dev = Dev(app, "--exit-with-parent", stdin=subprocess.PIPE)
    try:
        assert dev.answer() == "one"
        dev.process.stdin.close()
        assert dev.process.wait(10) == 0
        assert refused(dev.port)
    finally:
        dev.stop()


def test_a_mistake_in_the_command_is_one_line_and_status_2(app):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "igor", "dev", "app:NOPE", "--port", "0"], cwd=app, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "has no attribute 'NOPE'" in result.stderr and result.stdout == ""


def test_help_lists_dev_and_its_options():
    env = dict(os.environ, PYTHONPATH=ROOT)
    top = subprocess.run([sys.executable, "-m", "igor", "--help"], env=env, capture_output=True, text=True)
    assert "  dev " in top.stdout and "igor dev MODULE:API" in top.stdout
    own = subprocess.run([sys.executable, "-m", "igor", "dev", "--help"], env=env, capture_output=True, text=True)
    assert "--watch DIR" in own.stdout and "--port" in own.stdout and "--child" not in own.stdout


def test_sessions_are_exported_as_json_and_parked_where_imported():
    old = ClientRegistry()
    kept, left = type("C", (), {})(), type("C", (), {})()
    for client, client_id, resume in ((kept, "w1", "secret1"), (left, 7, None)):
        client.id, client.session, client.resume = client_id, {"a": [1, "x"], "t": (1, 2), 3: "int key"}, resume
        old._clients[client_id] = client
    exported = old.export_sessions()
    assert exported == [{"id": "w1", "session": {"a": [1, "x"]}, "resume": "secret1"}]  # no secret: not claimable
    assert json.loads(json.dumps(exported)) == exported
    new = ClientRegistry()
    new.import_sessions(exported)
    newcomer = type("C", (), {"id": 1, "session": {}, "resume": None})()
    new._clients[1] = newcomer
    with pytest.raises(Exception, match="resume secret"):
        new.rename(newcomer, "w1", "wrong")
    new.rename(newcomer, "w1", "secret1")
    assert newcomer.session == {"a": [1, "x"]}


def test_an_app_that_does_not_import_at_the_start_is_status_1_with_its_traceback(app):
    (app / "app.py").write_text("def broken(:\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "igor", "dev", "app:API", "--port", "0"], cwd=app, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stdout == ""
    assert 'app.py", line 1' in result.stderr and "SyntaxError" in result.stderr
