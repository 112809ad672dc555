"""``igor freeze MODULE:API``: build a PyInstaller one-folder app that serves your API.

The app's executable is ``python -m igor serve MODULE:API`` with the API (and
``--process``, ``--json-default``, ``--static``) baked in: it takes the same
serve options (``--port``, ``--token``, ``--exit-with-parent``, ...) and prints
the same ``IGOR_READY`` line, so a UI launches it as it launches Python.

What it does, and why:

- Its entry point is a small generated script that imports the API's modules
  *by name*, so PyInstaller's analysis bundles them and all they import, then
  calls :func:`run_frozen`, which serves with the spec baked in.
- The folders that hold igor and those modules go on PyInstaller's
  ``--paths``: an editable install (``pip install -e .``) makes a package
  importable through a finder of its own on ``sys.meta_path``, which
  PyInstaller's analysis never asks, so without them the app is built without
  igor (or without your package) and dies at start with
  ``ModuleNotFoundError``, while the build says nothing.
- After the build, the executable runs once with :data:`CHECK_FLAG`, from an
  empty folder and without ``PYTHON*`` variables (as a packaged app runs it),
  and reports where igor and each module were loaded from: the build fails
  with one line unless all of them come from inside the bundle.

Build failures are one line on stderr starting ``igor:``; a mistake in the
command (a spec that does not load, a missing ``--static`` folder, PyInstaller
not installed) exits with 2 before PyInstaller runs, a failed build with 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Callable, Dict, List, NamedTuple, NoReturn, Optional, Sequence

from .loader import UsageError, load_api, load_callable, load_process, module_of

__all__ = ["main", "run_frozen", "CHECK_FLAG", "BuildError"]

log = logging.getLogger("igor")

#: The executable, run with only this argument, reports what it holds instead of serving.
CHECK_FLAG = "--igor-freeze-check"
#: Where ``--static`` lands in the bundle: not a module name, so it never shadows an importable package.
STATIC_DATA = "igor-static"
#: examples/electron/main.js looks for resources/igor-backend/igor-backend.
DEFAULT_NAME = "igor-backend"
ENTRY_SCRIPT = "igor_frozen_entry.py"


class BuildError(Exception):
    """PyInstaller ran, but what it built would not serve the API: the message says why, in one line."""


class Plan(NamedTuple):
    """What to build, worked out from the command line before PyInstaller runs."""

    serve: List[str]        # the serve command line baked in: ["serve", "api:API", "--process", ...]
    modules: List[str]      # the modules those specs name, by import name
    paths: List[str]        # folders PyInstaller must search: those that hold igor and each module
    static: Optional[str]   # the --static folder, absolute


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="igor freeze", description="Build a PyInstaller one-folder app that serves MODULE:API.",
        epilog="The executable's path is the last line on stdout. It takes serve's options (igor serve --help) and "
               "prints the same IGOR_READY line. Copy its whole folder (DIST/NAME), never the executable alone.")
    parser.add_argument("api", metavar="MODULE:API", help="the API to serve, as for igor serve")
    parser.add_argument("--static", metavar="DIR", help="a folder of files to serve over HTTP, copied into the app")
    parser.add_argument("--process", metavar="NAME=module:Class", action="append", default=[],
                        help="a background process, as for igor serve; repeatable")
    parser.add_argument("--json-default", metavar="module:function", help="as for igor serve")
    parser.add_argument("--name", default=DEFAULT_NAME,
                        help=f"name of the app's folder and executable (default {DEFAULT_NAME})")
    parser.add_argument("--dist", metavar="DIR", default="dist",
                        help="folder to put the app's folder in (default ./dist)")
    parser.add_argument("--work", metavar="DIR",
                        help="folder for PyInstaller's build files, its warn file among them (default: a temporary "
                             "folder, removed afterwards)")
    return parser


def _search_folder(module: ModuleType, spec: str) -> str:
    """The folder that, on ``sys.path``, makes ``module`` importable under its name."""
    name = module.__name__
    file = getattr(module, "__file__", None)
    if not file or not os.path.isfile(file):
        _fail(f"{name} (in {spec!r}) is not a file PyInstaller can bundle: {file or 'it has no __file__'}")
    folder = os.path.dirname(os.path.abspath(file))
    # A package's __init__.py is one level deeper than a module of the same dotted name.
    levels = name.count(".") + (1 if os.path.splitext(os.path.basename(file))[0] == "__init__" else 0)
    for _ in range(levels):
        folder = os.path.dirname(folder)
    return folder


def plan(args: argparse.Namespace) -> Plan:
    """Load every spec as serve would, and say what to build; :class:`UsageError` for what does not load."""
    specs = [("the API", args.api)]
    load_api(args.api)
    for option in args.process:
        load_process(option)  # checks it is a Thread subclass created with no arguments; never started here
        name, _, spec = option.partition("=")
        specs.append((f"--process {name}", spec))
    if args.json_default:
        load_callable(args.json_default, "--json-default")
        specs.append(("--json-default", args.json_default))
    if args.static is not None and not os.path.isdir(args.static):
        _fail(f"--static {args.static!r} is not a folder")

    # The folder holding this igor package: on sys.path it makes igor importable, an editable install too.
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    modules: List[str] = []
    baked: Dict[str, str] = {}  # spec as typed -> spec by import name, which the frozen app can load
    for option, spec in specs:
        module = module_of(spec, option)
        baked[spec] = f"{module.__name__}:{spec.rpartition(':')[2]}"
        if module.__name__ not in modules:
            modules.append(module.__name__)
        folder = _search_folder(module, spec)
        if folder not in paths:
            paths.append(folder)
    serve = ["serve", baked[args.api]]
    for option in args.process:
        name, _, spec = option.partition("=")
        serve += ["--process", f"{name}={baked[spec]}"]
    if args.json_default:
        serve += ["--json-default", baked[args.json_default]]
    return Plan(serve, modules, paths, os.path.abspath(args.static) if args.static else None)


def entry_script(build: Plan) -> str:
    """The frozen app's entry point: the modules imported by name, then :func:`run_frozen`."""
    # Module names come from module.__name__ (dotted identifiers) and the rest is repr()'d: nothing to escape.
    imports = "\n".join(f"import {name}" for name in build.modules)
    static = STATIC_DATA if build.static else None
    return f'''"""The entry point of a backend frozen by `igor freeze` (generated: change the command instead)."""
import multiprocessing
import sys

import igor.freeze
from igor.__main__ import main

# By name, so that PyInstaller's analysis bundles them and all they import, and so that serve finds
# them already imported, never a file of the same name in the folder the app is started from.
{imports}

if __name__ == "__main__":
    # A handler's multiprocessing child re-runs this executable: this makes it do the child's work.
    multiprocessing.freeze_support()
    sys.exit(igor.freeze.run_frozen(main, {build.serve!r}, {static!r}, {build.modules!r}))
'''


def run_frozen(igor_main: Callable[[List[str]], int], serve: Sequence[str], static: Optional[str],
               modules: Sequence[str]) -> int:
    """Serve as the entry script was built to, with the command line's options after the baked-in ones.

    ``igor_main`` is :func:`igor.__main__.main`, passed in by the entry script: this module may not
    import the command line, which dispatches to it.

    With only :data:`CHECK_FLAG`, report instead where igor and ``modules``
    were loaded from, as one JSON line, for the build to check.
    """
    bundle = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(sys.argv[0])))
    argv = sys.argv[1:]
    if argv == [CHECK_FLAG]:
        load_api(serve[1])  # its attribute too, not only its module
        files = {name: getattr(sys.modules.get(name), "__file__", None) for name in ("igor", *modules)}
        sys.stdout.write(json.dumps({"bundle": bundle, "files": files}) + "\n")
        return 0
    baked = list(serve)
    if static:
        baked += ["--static", os.path.join(bundle, static)]
    # After the baked-in options, so a --static given at run time replaces the bundled one.
    return igor_main([*baked, *argv])


def onedir_options(name: str, dist: str, work: str) -> List[str]:
    """PyInstaller's options for a clean one-folder build named ``name`` in ``dist``, its scratch files in ``work``.

    Shared with examples/electron/freeze.py, which freezes the demo's script
    rather than a MODULE:API.
    """
    return ["--onedir", "--name", name, "--distpath", dist, "--workpath", work, "--specpath", work,
            "--noconfirm", "--clean", "--log-level", "WARN"]


def pyinstaller_command(build: Plan, entry: str, name: str, dist: str, work: str) -> List[str]:
    command = [sys.executable, "-m", "PyInstaller", entry, *onedir_options(name, dist, work),
               "--additional-hooks-dir", os.path.join(work, "hooks")]
    for folder in build.paths:
        command += ["--paths", folder]
    if build.static:
        command += ["--add-data", f"{build.static}{os.pathsep}{STATIC_DATA}"]
    return command


def _write_hooks(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hook-igor.frames.py"), "w", encoding="utf-8") as f:
        # igor.frames imports numpy only to unmask large messages faster, if it is there: leaving it out saves
        # ~40 MB and most of the build. Only igor.frames' import is left out: an app that imports numpy gets it.
        f.write('excludedimports = ["numpy"]\n')


def _stderr_fd() -> Optional[int]:
    """Our stderr's file descriptor, or None (inherit) where it has none, as under a notebook."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both an OSError and a ValueError
        return None


def _app_environment() -> Dict[str, str]:
    """What a packaged app passes: no PYTHON* variables, so nothing but the bundle can supply the code."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


def _warnings_about(warn_file: str, names: Sequence[str]) -> List[str]:
    """PyInstaller's "missing module named X" lines about igor or ``names`` (or their packages)."""
    try:
        with open(warn_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    wanted = {"igor", *names} | {name.split(".")[0] for name in names}
    found = []
    for line in lines:
        if line.startswith("missing module named "):
            missing = line[len("missing module named "):].split(" ", 1)[0]
            if missing in wanted or missing.split(".")[0] in wanted:
                found.append(line.strip())
    return found


def check_executable(executable: str, modules: Sequence[str], warn_file: str) -> None:
    """Run the built app with :data:`CHECK_FLAG`; :class:`BuildError` unless igor and ``modules`` are inside it."""
    with tempfile.TemporaryDirectory(prefix="igor-freeze-check-") as cwd:  # nothing to import by accident here
        try:
            result = subprocess.run([executable, CHECK_FLAG], cwd=cwd, env=_app_environment(),
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"the frozen app {executable} did not run: {exc}") from exc
    if result.returncode != 0:
        # The exception's line, not the bootloader's "[PYI-4081:ERROR] Failed to execute script" after it.
        last = next((line for line in reversed(result.stderr.splitlines())
                     if line.strip() and not line.startswith("[PYI-")), f"exit status {result.returncode}")
        warned = _warnings_about(warn_file, modules)
        hint = f" (PyInstaller's warn file: {'; '.join(warned)})" if warned else ""
        raise BuildError(f"the frozen app {executable} does not start: {last.strip()}{hint}")
    try:
        report = json.loads(result.stdout.splitlines()[-1])
        bundle, files = report["bundle"], report["files"]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"the frozen app {executable} did not report what it holds: {result.stdout!r}") from exc
    inside = os.path.realpath(bundle) + os.sep
    for name in ("igor", *modules):
        file = files.get(name)
        if not file or not os.path.realpath(file).startswith(inside):
            raise BuildError(f"the frozen app {executable} does not hold {name}: it loaded it from {file}")


def build(args: argparse.Namespace, work: str) -> str:
    """Plan, run PyInstaller into ``work``, check the result; the executable's path."""
    what = plan(args)
    try:
        import PyInstaller  # noqa: F401  (only to say so before anything else runs)
    except ImportError:
        _fail("PyInstaller is not installed: pip install 'igor[freeze]' (the version Igor is tested with)")
    if os.sep in args.name or (os.altsep and os.altsep in args.name) or args.name in ("", ".", ".."):
        _fail(f"--name {args.name!r} must be a plain file name")
    dist = os.path.abspath(args.dist)
    target = os.path.join(dist, args.name)
    if os.path.exists(target) and os.listdir(target) and not os.path.isdir(os.path.join(target, "_internal")):
        # PyInstaller's --noconfirm empties it without asking: only ever a previous build.
        _fail(f"{target} exists and is not a frozen app: pick another --dist or --name")

    os.makedirs(work, exist_ok=True)
    entry = os.path.join(work, ENTRY_SCRIPT)
    with open(entry, "w", encoding="utf-8") as f:
        f.write(entry_script(what))
    _write_hooks(os.path.join(work, "hooks"))
    log.info("freezing %s into %s with PyInstaller (a minute or two)", what.serve[1], target)
    # PyInstaller's messages go to stderr: stdout is for the executable's path alone.
    status = subprocess.run(pyinstaller_command(what, entry, args.name, dist, work), stdin=subprocess.DEVNULL,
                            stdout=_stderr_fd(), check=False).returncode
    if status != 0:
        raise BuildError(f"PyInstaller failed (exit status {status}): see its messages above")
    executable = os.path.join(target, args.name + (".exe" if sys.platform == "win32" else ""))
    if not os.path.isfile(executable):
        raise BuildError(f"PyInstaller finished but {executable} is not there")
    check_executable(executable, what.modules, os.path.join(work, args.name, f"warn-{args.name}.txt"))
    return executable


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="igor: %(message)s")
    try:
        if args.work is not None:
            executable = build(args, os.path.abspath(args.work))
        else:
            with tempfile.TemporaryDirectory(prefix="igor-freeze-") as work:
                executable = build(args, work)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except BuildError as exc:
        sys.stderr.write(f"igor: {exc}\n")
        return 1
    sys.stdout.write(executable + "\n")
    return 0
