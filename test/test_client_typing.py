"""igor's public API under ``mypy --strict``, as a typed application sees it."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra (Python 3.10+)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSUMER = os.path.join(ROOT, "test", "typed_consumer", "consumer.py")


def mypy(tmp_path, *files):
    """mypy --strict on ``files``, reading igor from this tree; its error lines.

    ``--follow-imports=silent``: igor's own modules are read for their types
    but not reported on, as for an installed package.
    """
    env = {**os.environ, "MYPYPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
         "--cache-dir", str(tmp_path / "mypy-cache"), *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return [line for line in result.stdout.splitlines() if ": error:" in line]


def test_the_typed_consumer_passes_mypy_strict(tmp_path):
    assert mypy(tmp_path, CONSUMER) == []


def test_mypy_does_catch_a_misuse(tmp_path):
    """The check above means something: igor's names are typed, not Any."""
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        "import igor\n"
        "from igor import IgorClient, IgorServer\n"
        "IgorClient('ws://127.0.0.1:1/').call(1)\n"
        "IgorServer(api={}).port.upper()\n"
        "igor.NoSuchName\n"
    )
    errors = mypy(tmp_path, str(misuse))
    assert [error.split(":")[1] for error in errors] == ["3", "4", "5"], errors


def test_the_client_modules_pass_mypy_strict(tmp_path):
    files = [os.path.join(ROOT, "igor", name)
             for name in ("client.py", "client_socket.py", "client_stream.py", "client_support.py",
                           "client_transfer.py", "client_pushes.py", "client_reconnect.py", "binary.py",
                           "exceptions.py", "__init__.py")]
    assert mypy(tmp_path, *files) == []
