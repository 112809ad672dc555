"""IgorServer.open_window: a real Chromium in app mode, whose process the backend lives and dies with.

Chromium runs headless (--headless=new) so that the tests run without a
display; the window's flags, the throwaway profile and the process watch are
the same with a display. A page that calls the backend (and reloads itself)
proves the window got the token from its fragment; a second client reads what
the backend recorded.
"""

import os
import signal
import subprocess
import sys
import time

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
CALLS = []


def hello(out, data):
    CALLS.append(data)
    out.send("hello " + str(data["load"]))


def calls(out, data):
    out.send(CALLS)


API = {"hello": hello, "calls": calls}
'''

# The page calls hello once per load; it reloads itself until it has loaded RELOADS + 1 times.
# A bare WebSocket, not the JS client: these tests need no npm build.
PAGE = '''\
<!doctype html>
<meta charset="utf-8">
<title>igor window test</title>
<pre id="out">loading</pre>
<script>
  const RELOADS = %d;
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const load = Number(sessionStorage.getItem('load') || 0) + 1;
  sessionStorage.setItem('load', String(load));
  const socket = new WebSocket(`ws://${location.host}/`, ['igor.v2', 'igor.token.' + token]);
  socket.onopen = () => socket.send(JSON.stringify({ streamId: 1, action: 'hello', data: { load } }));
  socket.onmessage = (event) => {
    document.getElementById('out').textContent = event.data;
    if (load <= RELOADS) location.reload();
  };
</script>
'''


def _write_app(folder, reloads=0):
    (folder / "app.py").write_text(API)
    static = folder / "static"
    static.mkdir()
    (static / "index.html").write_text(PAGE % reloads)
    return static


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    env.pop("IGOR_TOKEN", None)
    return env


def _exits_within(process, seconds):
    """The exit code, asserting it came within ``seconds``."""
    start = time.monotonic()
    try:
        code = process.wait(seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the backend did not exit within {seconds}s") from None
    return code, time.monotonic() - start


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
        code, _ = _exits_within(process, 2.0)
        assert code == 0, process.stderr.read()
        assert not os.path.exists(profile)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
