"""``python -m igor freeze``: a PyInstaller app of an API of one's own, run as a packaged UI runs it.

The slow tests build once (a minute or less) the sample app test/freeze_app/,
copied to a temporary folder outside the checkout, with igor importable only
as an editable install makes it (test/editable_site.py): the install that
hides igor from PyInstaller's analysis. The sources are deleted before the app
runs, so only the bundle can supply them. The fast tests need no PyInstaller:
a fake one on PYTHONPATH records whether it ran, or "builds" an app that fails
the way a real one missing igor does.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
import websocket
from conftest import recv_json, recv_until_close
from editable_site import write as write_editable_site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "test", "freeze_app")
FREEZE_ARGS = ["api.py:API", "--static", "ui", "--process", "echo=api:Echo", "--json-default", "api:encode"]


def app_environment():
    """What a packaged app passes: no PYTHON* variables, so nothing but the bundle can supply the code."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "IGOR_"))}


def assert_one_line_error(result, status, *fragments):
    assert result.returncode == status, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("igor: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines


# -- without PyInstaller: mistakes, and a build whose result does not start ----------------------------------

FAKE_PYINSTALLER = textwrap.dedent('''
    """Stands in for PyInstaller: records that it ran, and "builds" the app FAKE_APP describes."""
    import argparse
    import os
    import sys

    with open(os.environ["FAKE_PYINSTALLER_RAN"], "w") as f:
        f.write(" ".join(sys.argv[1:]))
    parser = argparse.ArgumentParser()
    for option in ("--name", "--distpath", "--workpath"):
        parser.add_argument(option)
    args, _ = parser.parse_known_args()
    folder = os.path.join(args.distpath, args.name)
    os.makedirs(os.path.join(folder, "_internal"))
    executable = os.path.join(folder, args.name)
    with open(executable, "w") as f:
        f.write(os.environ["FAKE_APP"])
    os.chmod(executable, 0o755)
    os.makedirs(os.path.join(args.workpath, args.name))
    with open(os.path.join(args.workpath, args.name, "warn-" + args.name + ".txt"), "w") as f:
        f.write("missing module named _winapi - imported by subprocess (conditional)\\n"
                "missing module named igor - imported by igor_frozen_entry.py (top-level), api (top-level)\\n")
''')

# What a real build from an editable install, without igor's folder on --paths, did at start.
APP_WITHOUT_IGOR = """#!/bin/sh
echo 'Traceback (most recent call last):' >&2
echo '  File "igor_frozen_entry.py", line 5, in <module>' >&2
echo "ModuleNotFoundError: No module named 'igor'" >&2
echo "[PYI-4081:ERROR] Failed to execute script 'igor_frozen_entry' due to unhandled exception!" >&2
exit 1
"""

# Starts, but its igor is not the bundle's: found on a path outside it.
APP_WITH_OUTSIDE_IGOR = """#!/bin/sh
bundle="$(dirname "$0")/_internal"
echo '{"bundle": "'"$bundle"'", "files": {"igor": "/elsewhere/igor/__init__.py", "api": "'"$bundle"'/api.py"}}'
"""


@pytest.fixture
def fake_build(tmp_path):
    """Run ``igor freeze`` in a copy of the sample app, with the fake PyInstaller; returns (run, ran-marker)."""
    fake = tmp_path / "fake"
    (fake / "PyInstaller").mkdir(parents=True)
    (fake / "PyInstaller" / "__init__.py").write_text("")
    (fake / "PyInstaller" / "__main__.py").write_text(FAKE_PYINSTALLER)
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    ran = tmp_path / "pyinstaller-ran"

    def run(*args, fake_app=APP_WITHOUT_IGOR):
        env = dict(app_environment(), PYTHONPATH=os.pathsep.join([str(fake), ROOT]), FAKE_PYINSTALLER_RAN=str(ran),
                   FAKE_APP=fake_app)
        return subprocess.run([sys.executable, "-m", "igor", "freeze", *args, "--dist", str(tmp_path / "dist")],
                              cwd=app, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    return run, ran


@pytest.mark.parametrize("args, fragments", [
    (["nosuch.py:API"], ["no file 'nosuch.py'"]),
    (["nosuch:API"], ["no module named 'nosuch'"]),
    (["api.py:NOPE"], ["has no attribute 'NOPE'"]),
    (["api.py:API", "--process", "echo=api:hello"], ["--process echo", "needs arguments"]),
    (["api.py:API", "--json-default", "api:DAY"], ["--json-default", "not a function"]),
    (["api.py:API", "--static", "nowhere"], ["--static 'nowhere' is not a folder"]),
    (["api.py:API", "--name", "../app"], ["--name '../app' must be a plain file name"]),
])
def test_a_spec_that_does_not_load_fails_in_one_line_before_pyinstaller_runs(fake_build, tmp_path, args, fragments):
    run, ran = fake_build
    result = run(*args)
    lines = assert_one_line_error(result, 2, *fragments)
    assert len(lines) == 1, result.stderr
    assert not ran.exists(), "PyInstaller ran"
    assert not (tmp_path / "dist").exists()


def test_a_folder_in_the_way_that_is_not_a_frozen_app_is_left_alone(fake_build, tmp_path):
    run, ran = fake_build
    mine = tmp_path / "dist" / "igor-backend" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    # PyInstaller's --noconfirm would empty it without asking.
    assert_one_line_error(run(*FREEZE_ARGS), 2, "igor-backend exists and is not a frozen app")
    assert mine.read_text() == "mine" and not ran.exists()


def test_an_app_that_would_not_start_fails_the_build_in_one_line(fake_build):
    run, ran = fake_build
    result = run(*FREEZE_ARGS)
    assert ran.exists()
    # The exception's line, not the bootloader's, and what PyInstaller's warn file says about igor (not _winapi).
    error = assert_one_line_error(result, 1, "does not start: ModuleNotFoundError: No module named 'igor'",
                                  "missing module named igor - imported by")[-1]
    assert "PYI-4081" not in error and "_winapi" not in error


def test_an_app_whose_igor_comes_from_outside_the_bundle_fails_the_build(fake_build):
    run, _ = fake_build
    result = run(*FREEZE_ARGS, fake_app=APP_WITH_OUTSIDE_IGOR)
    assert_one_line_error(result, 1, "does not hold igor: it loaded it from /elsewhere/igor/__init__.py")


def test_the_build_gets_the_apps_modules_by_name_and_the_folders_that_hold_them(fake_build, tmp_path):
    run, ran = fake_build
    run(*FREEZE_ARGS, "--work", str(tmp_path / "work"))
    command = ran.read_text().split()
    paths = [command[i + 1] for i, arg in enumerate(command) if arg == "--paths"]
    assert paths == [ROOT, str(tmp_path / "app")]  # igor's folder, then the app's
    entry = (tmp_path / "work" / "igor_frozen_entry.py").read_text()
    assert "\nimport api\n" in entry
    assert "['serve', 'api:API', '--process', 'echo=api:Echo', '--json-default', 'api:encode']" in entry


def test_a_module_of_a_package_is_imported_by_its_dotted_name(fake_build, tmp_path):
    run, ran = fake_build
    package = tmp_path / "app" / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "api.py").write_text("API = {}\n")
    run("shop/api.py:API", "--work", str(tmp_path / "work"))
    command = ran.read_text().split()
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--paths"] == [ROOT, str(tmp_path / "app")]
    entry = (tmp_path / "work" / "igor_frozen_entry.py").read_text()
    assert "\nimport shop.api\n" in entry and "['serve', 'shop.api:API']" in entry


# -- a real build -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory):
    """The sample app frozen from an editable install of igor; its sources deleted. Returns the executable."""
    pytest.importorskip("PyInstaller", reason="pip install -e '.[freeze]' (test/run_all.sh does)")
    scratch = tmp_path_factory.mktemp("freeze")
    app, site, dist = scratch / "app", scratch / "site", scratch / "dist"
    shutil.copytree(SAMPLE, app)
    write_editable_site(str(site))
    env = dict(app_environment(), PYTHONPATH=str(site), PYINSTALLER_CONFIG_DIR=str(scratch / "config"))

    # The install under test: igor comes from this checkout, and not from any folder on sys.path.
    probe = subprocess.run(
        [sys.executable, "-c", "import igor, importlib.machinery as m; print(igor.__file__); "
                               "print(m.PathFinder.find_spec('igor'))"],
        cwd=app, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert probe.stdout.splitlines() == [os.path.join(ROOT, "igor", "__init__.py"), "None"], probe

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "igor", "freeze", *FREEZE_ARGS, "--dist", str(dist)],
                            cwd=app, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    executable = result.stdout.splitlines()[-1]
    assert executable == str(dist / "igor-backend" / "igor-backend")
    assert os.access(executable, os.X_OK)
    sys.stderr.write(f"froze the sample app in {time.monotonic() - started:.1f} s\n")
    # Nothing of the build in the app folder: only the bytecode its import for the checks left.
    assert sorted(os.listdir(app)) == ["__pycache__", "api.py", "greeting.py", "ui"]
    shutil.rmtree(app)
    shutil.rmtree(site)
    return executable


@pytest.fixture
def run_app(frozen_app, tmp_path, ready_processes):
    """Start the frozen executable as a UI starts it: from another folder, stdin a pipe."""
    return lambda *args: ready_processes([frozen_app, *args], cwd=tmp_path, env=app_environment())


def call(ws, stream_id, action, data=None):
    ws.send(json.dumps({"streamId": stream_id, "action": action, "data": data}))
    messages = recv_until_close(ws, stream_id)
    assert "error" not in messages[0], messages
    return messages[0]["data"]


@pytest.mark.slow
def test_the_frozen_app_serves_the_api_its_process_its_page_and_its_json_default(run_app, frozen_app):
    app = run_app("--port", "0", "--no-token")
    assert app.ready["token"] is None
    assert app.ready["url"] == f"ws://127.0.0.1:{app.ready['port']}/" and app.ready["port"] > 0
    ws = websocket.create_connection(app.ready["url"], timeout=10)

    assert call(ws, 1, "hello", {"name": "Ada"}) == "Hello Ada, from a frozen app"  # greeting.py is bundled too
    where = call(ws, 2, "app.where")
    bundle = os.path.join(os.path.dirname(frozen_app), "_internal")
    assert where == {"frozen": True, "file": os.path.join(bundle, "api.py"), "bundle": bundle}
    assert call(ws, 3, "app.today") == {"day": "2026-12-03"}  # the baked-in --json-default

    # numpy, imported in a handler, is bundled, though igor's own optional import of it is left out.
    if importlib.util.find_spec("numpy") is not None:  # the test extra has it
        assert call(ws, 4, "app.total", [1, 2, 3]) == 6

    # The baked-in --process, its push encoded by the json default too.
    ws.send(json.dumps({"process": "echo", "data": "ping"}))
    assert recv_json(ws) == {"streamId": "echo", "action": "echoed", "data": {"data": "ping", "day": "2026-12-03"}}

    # The baked-in --static, served from inside the bundle.
    with urllib.request.urlopen(f"http://127.0.0.1:{app.ready['port']}/", timeout=10) as response:
        page = response.read()
    with open(os.path.join(SAMPLE, "ui", "index.html"), "rb") as f:
        assert page == f.read()
    ws.close()

    code, stdout, stderr = app.stop()
    assert (code, stdout) == (0, ""), stderr  # the ready line is stdout's only line, as for python -m igor
    assert "exiting with parent: stdin closed" in stderr


@pytest.mark.slow
def test_the_frozen_app_takes_serves_options(run_app):
    app = run_app("--port", "0", "--token", "s3cret", "--log-level", "WARNING")
    assert app.ready["token"] == "s3cret"
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(app.ready["url"], timeout=10)
    ws = websocket.create_connection(app.ready["url"], header=["Authorization: Bearer s3cret"], timeout=10)
    assert call(ws, 1, "hello", {"name": "Bo"}) == "Hello Bo, from a frozen app"
    ws.close()
    code, stdout, stderr = app.stop()
    assert (code, stdout) == (0, "")
    assert "INFO" not in stderr
