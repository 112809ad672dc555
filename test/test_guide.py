"""docs/your-own-app.md, done as it says: its files written, its commands run, in an empty folder.

The guide's commands are this test's commands: each line of its ``bash``
blocks runs here as written (``$IGOR`` holds a copy of this checkout's
``clients/js``, as a fresh clone has it; igor itself is the installed one). The ones that serve
run until they have shown what the guide says they do, then stop. The only
thing added is what a headless machine needs to show a window (Xvfb, or
``--headless=new``; ``--no-sandbox`` as root), which the guide also tells.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT, wait_for

from igor import IgorClient
from igor.window import BrowserNotFound, find_browser

GUIDE = os.path.join(ROOT, "docs", "your-own-app.md")
BLOCK = re.compile(r"^```(\w*)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)


def guide_steps():
    """The guide in order: ("file", path, text) for each named file, ("run", command) for each command."""
    with open(GUIDE, encoding="utf-8") as guide:
        text = guide.read()
    steps = []
    for language, path, body in BLOCK.findall(text):
        if path:
            steps.append(("file", path, body))
        elif language == "bash":
            steps += [("run", line) for line in body.splitlines()
                      if line.strip() and not line.startswith(("#", "export IGOR="))]
    return steps


def test_the_guide_has_the_steps_this_test_knows():
    commands = [step[1] for step in guide_steps() if step[0] == "run"]
    assert [_kind(command) for command in commands] == [
        "run", "run", "run", "serve", "run", "dev", "app", "freeze", "run", "run"], commands


def _kind(command):
    for kind in ("dev", "app", "freeze", "types"):
        if command.startswith(f"python -m igor {kind} "):
            return "run" if kind == "types" else kind
    return "serve" if command.startswith("python -m igor ") else "run"


@pytest.fixture
def shell(tmp_path):
    """Runs the guide's commands in an empty folder: ``python`` is this Python, ``$IGOR`` holds this JS client."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    app = tmp_path / "hello-app"
    app.mkdir()
    # $IGOR/clients/js as a fresh clone has it (no node_modules, no build), so the guide's npm steps run whole.
    igor = tmp_path / "igor"
    shutil.copytree(os.path.join(ROOT, "clients", "js"), igor / "clients" / "js",
                    ignore=shutil.ignore_patterns("node_modules", "dist", "*.tsbuildinfo"))
    env = dict(os.environ, IGOR=str(igor), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYINSTALLER_CONFIG_DIR=str(tmp_path / "pyinstaller"))
    env.pop("IGOR_TOKEN", None)
    return app, env


class Serving:
    """A guide command that serves: started, past its ready line, stopped with SIGTERM."""

    def __init__(self, command, app, env):
        self.command = command
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=app, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("IGOR_READY "), (command, line, "" if line else self.process.stderr.read())
        self.ready = json.loads(line[len("IGOR_READY "):])

    def client(self):
        return IgorClient(self.ready["url"], token=self.ready["token"], timeout=10)

    def call(self, action, data=None):
        with self.client() as igor:
            return igor.call(action, data)

    def stderr_line(self, fragment):
        """The first line of stderr holding ``fragment`` (read up to it)."""
        for line in self.process.stderr:
            if fragment in line:
                return line
        raise AssertionError(f"{self.command}: no line with {fragment!r}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=15)
        assert self.process.returncode == 0, (self.command, stderr)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def test_the_guide_builds_the_app_it_describes(shell, request):
    app, env = shell
    started = []
    try:
        for step in guide_steps():
            if step[0] == "file":
                _, path, body = step
                (app / path).parent.mkdir(parents=True, exist_ok=True)
                (app / path).write_text(body)
                continue
            command = step[1]
            kind = _kind(command)
            if kind in ("run", "freeze"):
                result = subprocess.run(["bash", "-c", command], cwd=app, env=env, stdin=subprocess.DEVNULL,
                                        capture_output=True, text=True, timeout=300)
                assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-4000:])
                if kind == "freeze":
                    executable = result.stdout.splitlines()[-1]
                    assert executable == str(app / "dist" / "hello-app" / "hello-app"), result.stdout
                    assert os.access(executable, os.X_OK)
                elif command.startswith("node smoke.mjs"):
                    assert result.stdout.strip() == "Hello Electron!", result
                continue
            if kind == "app":
                command += _window_flags(request, env)
            served = Serving(command, app, env)
            started.append(served)
            CHECKS[kind](served, app)
    finally:
        for served in started:
            served.kill()
    assert (app / "ui" / "api.d.ts").read_text().count("'hello'") == 1


def _check_serve(served, app):
    assert served.call("hello", {"name": "Ada"}) == "Hello Ada!"
    with served.client() as igor:
        assert list(igor.stream("count", {"to": 3})) == [1, 2, 3]
    page = served.stderr_line("igor: open ").split("igor: open ", 1)[1].strip()
    assert "#token=" + served.ready["token"] in page
    with urllib.request.urlopen(page.split("#")[0]) as answer:
        assert answer.read().decode() == (app / "ui" / "index.html").read_text()
    served.stop()


def _check_dev(served, app):
    assert served.call("hello", {"name": "Ada"}) == "Hello Ada!"
    api = app / "api.py"
    original = api.read_text()
    api.write_text(original.replace('f"Hello', 'f"Hi'))  # "Change Hello to Hi in api.py and save"

    def answer():
        try:
            return served.call("hello", {"name": "Ada"})
        except (OSError, ConnectionError):
            return None  # between backends: the next try reaches the new one

    wait_for(lambda: answer() == "Hi Ada!", timeout=15, message="the reloaded backend's answer")
    api.write_text(original)
    wait_for(lambda: answer() == "Hello Ada!", timeout=15, message="the backend reloaded back")
    served.stop()


def _check_app(served, app):
    # The page in the window greets Ada; closing the window (the browser ending) ends the backend with 0.
    wait_for(lambda: served.call("history") == ["Ada"], timeout=30, message="the page's call from the window")
    pid = int(served.stderr_line("window opened:").split(", pid ")[1].split(",")[0])
    os.kill(pid, signal.SIGTERM)
    assert served.process.wait(5) == 0


CHECKS = {"serve": _check_serve, "dev": _check_dev, "app": _check_app}


def _window_flags(request, env):
    """What this machine needs to show the guide's window: a display (Xvfb) or headless, and no sandbox as root."""
    try:
        find_browser()
    except BrowserNotFound:
        pytest.skip("no Chromium, Chrome or Edge for the guide's window")
    flags = " --browser-arg=--no-sandbox" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    if shutil.which("Xvfb"):
        env["DISPLAY"] = request.getfixturevalue("display")
        return flags
    return flags + " --browser-arg=--headless=new"
