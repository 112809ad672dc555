"""The client as a package: what importing it needs, and what it ships with."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Blocks websocket-client as if it were not installed: an import of it raises ModuleNotFoundError.
WITHOUT_WEBSOCKET = "import sys; sys.modules['websocket'] = None\n"


def run_python(code):
    """Run ``code`` in a fresh interpreter that imports igor from this tree; return its stdout."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_this_tree_is_the_igor_the_subprocesses_import():
    assert run_python("import igor; print(igor.__file__)").strip() == os.path.join(ROOT, "igor", "__init__.py")


def test_star_import_works_without_the_client_extra():
    out = run_python(WITHOUT_WEBSOCKET + (
        "from igor import *\n"
        "import json\n"
        "print(json.dumps([IgorServer.__name__, flatten.__name__, ConnectionClosed.__name__]))\n"
    ))
    assert json.loads(out) == ["IgorServer", "flatten", "ConnectionClosed"]


def test_the_client_without_its_extra_says_what_to_install():
    out = run_python(WITHOUT_WEBSOCKET + (
        "import json\n"
        "answers = []\n"
        "for how in ('from igor import IgorClient', 'from igor.client import IgorClient'):\n"
        "    try:\n"
        "        exec(how)\n"
        "    except ImportError as exc:\n"
        "        answers.append([type(exc).__name__, str(exc), exc.name])\n"
        "print(json.dumps(answers))\n"
    ))
    answers = json.loads(out)
    assert len(answers) == 2
    for kind, message, name in answers:
        assert kind == "ImportError" and name == "websocket"
        assert "pip install 'igor[client]'" in message


def test_the_client_with_its_extra_imports_from_the_package():
    import igor
    from igor import IgorClient
    from igor.client import IgorClient as direct

    assert IgorClient is direct is igor.IgorClient
    assert "IgorClient" in dir(igor)
    with pytest.raises(AttributeError):
        igor.NoSuchName  # noqa: B018


def test_every_name_in_all_resolves():
    import igor

    for name in igor.__all__:
        assert getattr(igor, name) is not None, name


SERVER_MODULES = ("api", "config", "connection", "core", "dispatch", "encoding", "executor", "file_urls", "files",
                  "frames", "handshake", "lifecycle", "loader", "outbox", "peer", "process", "registry", "runner",
                  "server", "static", "stream", "transfer", "transport", "typescript")


def test_the_client_imports_nothing_of_the_server():
    out = run_python(
        "import sys, json\n"
        "import igor.client\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'igor' or m.startswith('igor.'))))\n"
    )
    loaded = json.loads(out)
    assert loaded == ["igor", "igor.binary", "igor.client", "igor.client_pushes", "igor.client_reconnect",
                      "igor.client_socket", "igor.client_stream", "igor.client_support", "igor.client_transfer",
                      "igor.exceptions", "igor.protocol", "igor.version"]
    # Named too, so that a new module cannot slip in under a name this test forgot.
    assert not {f"igor.{name}" for name in SERVER_MODULES} & set(loaded)


def test_the_built_package_carries_its_py_typed_marker(tmp_path):
    """What setuptools puts in the wheel: built from a copy, so the tree gets no build/ or egg-info."""
    import shutil

    source = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "igor"), source / "igor", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    result = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                            cwd=source, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = tmp_path / "lib" / "igor"
    assert (built / "client.py").is_file()  # the build did run
    assert (built / "py.typed").is_file()
