"""A backend started as a UI starts it: a subprocess whose stdin is a pipe, ready once it prints ``IGOR_READY``."""

import json
import subprocess

import pytest
import websocket


class ReadyProcess:
    """``command`` run in ``cwd``, past its ready line; closing its stdin is the UI leaving."""

    def __init__(self, command, *, cwd, env):
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("IGOR_READY "), (line, "" if line else self.process.stderr.read())
        self.ready = json.loads(line[len("IGOR_READY "):])

    def connect(self):
        header = [f"Authorization: Bearer {self.ready['token']}"] if self.ready["token"] else []
        return websocket.create_connection(self.ready["url"], header=header, timeout=10)

    def stop(self):
        """Close stdin (the parent leaving): (exit status, the rest of stdout, stderr)."""
        stdout, stderr = self.process.communicate(timeout=15)
        return self.process.returncode, stdout, stderr

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def ready_processes():
    """Start ReadyProcesses with ``start(command, cwd=..., env=...)``; each is killed after the test."""
    started = []

    def start(command, *, cwd, env):
        started.append(ReadyProcess(command, cwd=cwd, env=env))
        return started[-1]

    yield start
    for process in started:
        process.kill()
