"""What the command line names, loaded: ``MODULE:ATTRIBUTE`` and ``NAME=module:Class``.

``python -m igor`` and ``python -m igor types`` both start from a spec the
user typed, so both get the same lookup and the same one-line mistakes. A
mistake raises :class:`UsageError`, a :class:`SystemExit` whose message is
the line to show; the commands catch it, write it to stderr and exit with 2.

It imports nothing else of Igor's: ``__main__`` and ``typescript`` both
import it, and neither needs the other; and it loads (and can say what is
wrong) even when the ``igor`` package did not import as it should (see
:func:`check_package`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, NoReturn, Tuple

__all__ = ["UsageError", "resolve", "module_of", "load_api", "load_callable", "load_process", "check_package"]


class UsageError(SystemExit):
    """A mistake in what the command line asks for, told in one line (and, uncaught, an exit)."""

    def __init__(self, message: str):
        super().__init__(f"igor: {message}")


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


def _is_path(module_part: str) -> bool:
    """True when the part before the colon is a file or folder, not a dotted module name."""
    separators = {os.sep, os.altsep or os.sep, "/"}
    return module_part.endswith(".py") or any(sep in module_part for sep in separators)


def resolve(spec: str, option: str = "the API") -> Any:
    """The object ``module:attribute`` (or ``path/to/file.py:attribute``) names.

    The attribute may be dotted (``app:handlers.API``). The current folder is
    searched for the module, as ``python -m`` does. ``option`` names what the
    spec is for in the error messages. Raises :class:`UsageError` saying what
    is missing.
    """
    module_part, attribute = _split(spec, option)
    module = module_of(spec, option)
    owner = f"file {module_part!r}" if _is_path(module_part) else f"module {module_part!r}"
    value: Any = module
    parts = attribute.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(value, part):
            where = owner if depth == 0 else f"{module_part}:{'.'.join(parts[:depth])}"
            _fail(f"{where} has no attribute {part!r} (in {spec!r})")
        value = getattr(value, part)
    return value


def _split(spec: str, option: str) -> Tuple[str, str]:
    """``spec`` as (its module part, its attribute part)."""
    # The attribute never holds a colon; a path may (C:\\app\\api.py:API).
    module_part, colon, attribute = spec.rpartition(":")
    if not colon or not module_part or not attribute:
        _fail(f"expected module:attribute or path/to/file.py:attribute for {option} (e.g. myapp.api:API), "
              f"got {spec!r}")
    return module_part, attribute


def module_of(spec: str, option: str = "the API") -> ModuleType:
    """The module (or file's module) whose attribute ``spec`` names, imported as :func:`resolve` imports it.

    ``igor freeze`` needs it by its import name (``path/to/api.py:API`` is the module ``api``).
    """
    module_part, _ = _split(spec, option)
    # Like `python -m`, let the current folder's modules be found (the `igor` script's own folder is not it).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return _import_file(module_part, spec) if _is_path(module_part) else _import_module(module_part, spec)


def _import_module(module_name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module (or its package) missing is the user's spelling; a module
        # that fails to import something of its own gets its traceback.
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        _fail(f"no module named {exc.name!r} (in {spec!r}): run igor from the folder that holds it, "
              f"add that folder to PYTHONPATH, or give the file's path (path/to/{module_name.split('.')[-1]}.py)")


def _import_file(path: str, spec: str) -> ModuleType:
    """The module of a ``.py`` file (or a package's folder), imported under its package's dotted name.

    The dotted name is found as pytest finds a test file's: the folders above
    that hold an ``__init__.py`` are its packages, and the first one that does
    not goes on ``sys.path``. Imported under that name, the file's relative
    imports work, and ``import mypkg.api`` elsewhere gets this same module, not
    a second copy with its own globals (and its own classes).
    """
    full = os.path.abspath(path)
    if os.path.isdir(full):
        if not os.path.isfile(os.path.join(full, "__init__.py")):
            _fail(f"{path!r} is a folder without an __init__.py, not a package (in {spec!r}): "
                  f"name the .py file that holds the attribute")
        folder, parts = full.rstrip(os.sep), []
    elif os.path.isfile(full):
        if not full.endswith(".py"):
            _fail(f"{path!r} is not a .py file (in {spec!r})")
        folder, name = os.path.split(full[:-3])
        parts = [] if name == "__init__" else [name]
    else:
        hint = f": did you mean {path}.py:{spec.rpartition(':')[2]}?" if os.path.isfile(full + ".py") else ""
        _fail(f"no file {path!r} (in {spec!r}, from the folder {os.getcwd()}){hint}")
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    bad = [part for part in parts if not part.isidentifier()]
    if bad or not parts:
        _fail(f"{path!r} cannot be imported (in {spec!r}): {bad[0] if bad else path!r} is not a module name")
    module_name = ".".join(parts)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module = _import_module(module_name, spec)
    found = getattr(module, "__file__", None)
    expected = full if os.path.isfile(full) else os.path.join(full, "__init__.py")
    if found is None or not os.path.exists(found) or not os.path.samefile(found, expected):
        # A module of that name came first (the standard library's json, for a json.py): importing the
        # file under another name would make a second copy of everything it imports by name.
        _fail(f"{path!r} would be the module {module_name!r}, but that name is already {found or 'a built-in'}: "
              f"rename the file (in {spec!r})")
    return module


def load_api(spec: str) -> Mapping:
    """The API dict ``module:attribute`` names (``igor`` serves it, ``igor types`` declares it)."""
    api = resolve(spec)
    if not isinstance(api, Mapping):
        _fail(f"{spec} is a {type(api).__name__}, not a dict of actions")
    return api


def load_callable(spec: str, option: str) -> Callable[..., Any]:
    """The function ``module:function`` names, for ``option`` (``--json-default``, say)."""
    function = resolve(spec, option)
    if not callable(function):
        _fail(f"{option}: {spec} is a {type(function).__name__}, not a function")
    return function


def load_process(option: str) -> Tuple[str, threading.Thread]:
    """``NAME=module:Class`` as (NAME, a new instance of Class), which must be a ``threading.Thread``."""
    name, equals, spec = option.partition("=")
    if not equals or not name or not spec:
        _fail(f"--process must be given as NAME=module:Class, got {option!r}")
    factory = resolve(spec, f"--process {name}")
    if isinstance(factory, type) and not issubclass(factory, threading.Thread):
        _fail(f"--process {name}: {spec} is not a threading.Thread subclass (subclass igor.IgorProcess)")
    if not callable(factory):
        _fail(f"--process {name}: {spec} is a {type(factory).__name__}, not a class")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        _fail(f"--process {name}: {spec} needs arguments, but it is created with none")
    except ValueError:
        pass  # no signature to check: just call it
    thread = factory()
    if not isinstance(thread, threading.Thread):
        _fail(f"--process {name}: {spec}() made a {type(thread).__name__}, not a threading.Thread")
    return name, thread


def check_package() -> None:
    """Raise :class:`UsageError` when ``igor`` was imported from a folder that is not the package.

    ``python -m igor`` puts the current folder first on ``sys.path``, so a
    folder named ``igor`` there without an ``__init__.py`` (a checkout of
    Igor, whose package is ``igor/igor``) becomes a namespace package ``igor``
    that an installed editable package's submodules are then found under:
    nothing of ``igor/__init__.py`` ran, and the first use of it fails with
    ``ImportError: cannot import name '__version__'``.
    """
    package = sys.modules.get(__package__ or "igor")
    if package is None or getattr(package, "__file__", None) is not None:
        return
    mine = os.path.dirname(os.path.abspath(__file__))
    folders = [os.path.abspath(folder) for folder in getattr(package, "__path__", [])]
    shadow = next((folder for folder in folders if folder != mine), folders[0] if folders else "igor")
    shown = os.path.relpath(shadow) if shadow.startswith(os.getcwd() + os.sep) else shadow
    _fail(f"the folder {shown} hides the installed igor package ({shown} has no __init__.py, and python -m "
          f"looks in the current folder first): run the igor command instead of python -m igor, "
          f"or run from another folder")
