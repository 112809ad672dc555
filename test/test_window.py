"""igor app and IgorServer.open_window: a real Chromium in app mode, whose process the backend lives and dies with.

Chromium runs headless (--headless=new) so that the tests run without a
display; the window's flags, the throwaway profile and the process watch are
the same with a display. A page that calls the backend (and reloads itself)
proves the window got the token from its fragment; a second client reads what
the backend recorded.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import wait_for

from igor import ConfigError, IgorClient, IgorServer
from igor.window import BrowserNotFound, find_browser, page_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    BROWSER = find_browser()
except BrowserNotFound:
    BROWSER = None
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium, Chrome or Edge installed")

# Headless: CI has no display. As root (a container) Chromium refuses to start without --no-sandbox.
BROWSER_ARGS = ["--headless=new"] + (["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])

API = '''\
import threading

CALLS = []
RELEASED = threading.Event()


def hello(out, data):
    CALLS.append(data)
    out.send("hello " + str(data["load"]))


def calls(out, data):
    out.send(CALLS)


def wait_for_release(out, data):
    # Polls its cancel: a handler that ignored it would hold the shutdown for shutdown_timeout.
    while not RELEASED.wait(0.05):
        if out.cancelled:
            return
    out.send(True)


def release(out, data):
    RELEASED.set()


API = {"hello": hello, "calls": calls, "wait_for_release": wait_for_release, "release": release}
'''

# The page calls hello once per load; it reloads itself until it has loaded RELOADS + 1 times. With
# CLOSE it then waits for the test's release and closes its own window, as a person closing it would:
# Chromium quits with its last window. A bare WebSocket, not the JS client: these tests need no npm build.
PAGE = '''\
<!doctype html>
<meta charset="utf-8">
<title>igor window test</title>
<pre id="out">loading</pre>
<script>
  const RELOADS = %d, CLOSE = %s;
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const load = Number(sessionStorage.getItem('load') || 0) + 1;
  sessionStorage.setItem('load', String(load));
  const socket = new WebSocket(`ws://${location.host}/`, ['igor.v2', 'igor.token.' + token]);
  socket.onopen = () => socket.send(JSON.stringify({ streamId: 1, action: 'hello', data: { load } }));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.streamId === 1) {
      document.getElementById('out').textContent = message.data;
      if (load <= RELOADS) location.reload();
      else if (CLOSE) socket.send(JSON.stringify({ streamId: 2, action: 'wait_for_release' }));
    } else if (message.streamId === 2) {
      window.close();
    }
  };
</script>
'''


def _write_app(folder, reloads=0, close=False):
    (folder / "app.py").write_text(API)
    static = folder / "static"
    static.mkdir()
    (static / "index.html").write_text(PAGE % (reloads, "true" if close else "false"))
    return static


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    env.pop("IGOR_TOKEN", None)
    return env


class App:
    """``python -m igor app`` in a subprocess: its ready line, its stderr, the browser's pid it logs."""

    def __init__(self, folder, args, env):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "igor", "app", "app:API", *args],
            cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = self.process.stdout.readline()
        assert line.startswith("IGOR_READY "), (line, self.process.stderr.read() if not line else "")
        self.ready = json.loads(line[len("IGOR_READY "):])
        self.stderr = []
        for line in self.process.stderr:  # the window's line comes right after the ready line
            self.stderr.append(line)
            if "window opened:" in line:
                self.browser_pid = int(line.split(", pid ")[1].split(",")[0])
                self.profile = line.rsplit("profile ", 1)[1].strip()
                break
        else:
            raise AssertionError("no window line:\n" + "".join(self.stderr))

    def call(self, action):
        with IgorClient(self.ready["url"], token=self.ready["token"], timeout=5) as igor:
            return igor.call(action)

    def calls(self):
        return self.call("calls")

    def exits_within(self, seconds):
        """The backend's exit code, asserting it came within ``seconds``; the rest of its stderr is read."""
        code = _exits_within(self.process, seconds)
        self.stderr.extend(self.process.stderr)
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        try:
            os.kill(self.browser_pid, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


@pytest.fixture
def app(tmp_path):
    apps = []

    def start(reloads=0, close=False, browser_args=BROWSER_ARGS, env=None):
        static = _write_app(tmp_path, reloads, close)
        started = App(tmp_path, ["--static", str(static), *[f"--browser-arg={arg}" for arg in browser_args]],
                      env or _env())
        apps.append(started)
        return started

    yield start
    for started in apps:
        started.kill()


def _exits_within(process, seconds):
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the backend did not exit within {seconds}s") from None


@needs_browser
def test_app_survives_a_reload_and_exits_0_when_the_browser_is_killed(app):
    started = app(reloads=1)
    # The page loaded, called with the token from its fragment, reloaded (a new socket), and called again.
    wait_for(lambda: len(started.calls()) == 2, timeout=20, message="two page loads' calls")
    assert started.calls() == [{"load": 1}, {"load": 2}]
    assert started.process.poll() is None, "a reload ended the backend"
    os.kill(started.browser_pid, signal.SIGKILL)
    assert started.exits_within(2.0) == 0, "".join(started.stderr)
    assert not os.path.exists(started.profile), "the throwaway profile was left behind"


@needs_browser
def test_app_exits_0_when_the_window_closes(app):
    started = app(close=True)
    wait_for(lambda: started.calls() == [{"load": 1}], timeout=20, message="the page's call")
    started.call("release")  # the page closes its window: Chromium quits with its last window
    assert started.exits_within(2.0) == 0, "".join(started.stderr)
    assert any("browser ended (exit code 0)" in line for line in started.stderr), "".join(started.stderr)
    assert not os.path.exists(started.profile)


@needs_browser
def test_app_in_a_real_window_survives_a_reload_and_exits_0_when_it_closes(app, display):
    no_headless = [arg for arg in BROWSER_ARGS if not arg.startswith("--headless")]
    started = app(reloads=1, close=True, browser_args=no_headless, env=_env(DISPLAY=display))
    wait_for(lambda: len(started.calls()) == 2, timeout=20, message="two page loads' calls")
    assert started.calls() == [{"load": 1}, {"load": 2}]
    assert started.process.poll() is None, "a reload ended the backend"
    started.call("release")
    assert started.exits_within(2.0) == 0, "".join(started.stderr)
    assert any("browser ended (exit code 0)" in line for line in started.stderr), "".join(started.stderr)
    assert not os.path.exists(started.profile)


def _run_app(tmp_path, *args, env=None):
    static = _write_app(tmp_path)
    return subprocess.run([sys.executable, "-m", "igor", "app", "app:API", "--static", str(static), *args],
                          cwd=tmp_path, env=env or _env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


def test_a_browser_that_does_not_exist_is_one_line_and_exit_2(tmp_path):
    result = _run_app(tmp_path, "--browser", "/no/such")
    assert result.returncode == 2
    assert result.stderr == "igor: no browser at '/no/such': give the path of a Chromium, Chrome or Edge executable\n"
    assert result.stdout == "", "nothing listened"


def test_no_browser_found_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = _run_app(tmp_path, env=_env(PATH=str(empty)))
    assert result.returncode == 2
    assert result.stderr == "igor: no Chromium, Chrome or Edge found: install Chromium or pass --browser PATH\n"


def test_app_without_static_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "app.py").write_text(API)
    result = subprocess.run([sys.executable, "-m", "igor", "app", "app:API"], cwd=tmp_path, env=_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--static DIR" in result.stderr


def test_page_url_puts_the_token_in_the_fragment():
    assert page_url("http://127.0.0.1:5678/", "/", "a/b c") == "http://127.0.0.1:5678/#token=a%2Fb%20c"
    assert page_url("http://127.0.0.1:5678/", "app.html?x=1") == "http://127.0.0.1:5678/app.html?x=1"
    assert page_url("http://127.0.0.1:5678", "/#view", "t") == "http://127.0.0.1:5678/#view&token=t"


def test_open_window_needs_a_static_dir():
    server = IgorServer(api={}, config={"port": 0})
    with pytest.raises(ConfigError, match="static_dir"):
        server.open_window()
    assert not server.running, "nothing started for a window that cannot show a page"


SCRIPT = '''\
import sys
from igor import IgorServer, flatten
from app import API

server = IgorServer(api=flatten(API), config={"port": 0, "static_dir": sys.argv[1]})
window = server.open_window(args=sys.argv[2:])
print("WINDOW", server.url, server.token, window.pid, window.profile, flush=True)
sys.exit(server.run_forever())
'''


@needs_browser
def test_open_window_from_a_script(tmp_path):
    static = _write_app(tmp_path, reloads=1)
    (tmp_path / "script.py").write_text(SCRIPT)
    process = subprocess.Popen([sys.executable, "script.py", str(static), *BROWSER_ARGS], cwd=tmp_path,
                               env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("WINDOW "), process.stderr.read()
        url, token, pid, profile = line.split()[1:]

        def calls():
            with IgorClient(url, token=token, timeout=5) as igor:
                return igor.call("calls")

        wait_for(lambda: len(calls()) == 2, timeout=20, message="two page loads' calls")
        assert calls() == [{"load": 1}, {"load": 2}]
        assert process.poll() is None
        os.kill(int(pid), signal.SIGKILL)
        code = _exits_within(process, 2.0)
        assert code == 0, process.stderr.read()
        assert not os.path.exists(profile)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _gone(pid):
    """True once ``pid`` has ended (a zombie that nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@needs_browser
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to see the browser end")
def test_the_window_closes_when_the_backend_ends(app):
    # The backend ending first (SIGTERM, Ctrl-C, a sys.exit) takes its window along, profile and all.
    started = app()
    wait_for(lambda: started.calls() == [{"load": 1}], timeout=20, message="the page's call")
    started.process.send_signal(signal.SIGTERM)
    code = _exits_within(started.process, 5.0)
    assert code == 0
    assert _gone(started.browser_pid), "the window outlived its backend"
    assert not os.path.exists(started.profile)


def test_find_browser_takes_a_name_on_path(tmp_path, monkeypatch):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), os.environ.get("PATH", "")]))
    assert find_browser("my-chrome") == str(fake)
    assert find_browser(str(fake)) == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(BrowserNotFound, match="install Chromium or pass --browser PATH"):
        find_browser()


def test_find_browser_takes_a_macos_app_bundle(tmp_path):
    executable = tmp_path / "Google Chrome.app" / "Contents" / "MacOS" / "Google Chrome"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    assert find_browser(str(tmp_path / "Google Chrome.app")) == str(executable)


def test_the_usual_install_folders_are_looked_in(monkeypatch):
    from igor import window

    monkeypatch.setattr(sys, "platform", "darwin")
    assert "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" in window._candidates()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(window.os, "name", "nt")  # window.os is os: restored by monkeypatch at once after
    monkeypatch.setenv("PROGRAMFILES", "C:/Program Files")
    candidates = window._candidates()
    monkeypatch.undo()
    assert os.path.join("C:/Program Files", r"Microsoft\Edge\Application\msedge.exe") in candidates
    assert os.path.join("C:/Program Files", r"Google\Chrome\Application\chrome.exe") in candidates


def _fake_browser(folder, body):
    """An executable standing in for the browser: a Python script with ``body``, its argv ignored."""
    fake = folder / "fake-browser"
    fake.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    fake.chmod(0o755)
    return fake


def test_a_browser_that_fails_at_start_ends_the_backend_with_1(tmp_path):
    # No display, a flag it refuses: the browser exits with an error, and the app must not say all went well.
    fake = _fake_browser(tmp_path, 'print("Missing X server or $DISPLAY", file=sys.stderr)\nsys.exit(1)')
    result = _run_app(tmp_path, "--browser", str(fake))
    assert result.returncode == 1, result.stderr
    assert "exit code 1" in result.stderr and "Missing X server or $DISPLAY" in result.stderr, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_window_closes_when_the_backend_is_killed_outright(tmp_path):
    # SIGKILL runs no atexit: the kernel's parent-death signal is what takes the window along.
    fake = _fake_browser(tmp_path, "time.sleep(60)")
    started = App(tmp_path, ["--static", str(_write_app(tmp_path)), "--browser", str(fake)], _env())
    try:
        assert not _gone(started.browser_pid)
        started.process.kill()
        started.process.wait()
        wait_for(lambda: _gone(started.browser_pid), timeout=2.0, message="the browser ending with its backend")
    finally:
        started.kill()
