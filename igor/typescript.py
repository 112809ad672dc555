"""TypeScript declarations for an API, from its handlers' annotations.

``python -m igor types module:API [-o api.d.ts]`` writes a module exporting
``interface Api``, keyed by action name, which ``new IgorClient<Api>(url)``
uses to type-check ``call()`` and ``stream()``::

    export interface Api {
      'hello': { data: { name: string }; value: string };
    }

For each action, ``data`` is the type of the handler's ``data`` parameter
(its second one) and ``value`` the type of each value the action sends: the
return type, or for a generator (``Generator[Y, ...]``, ``Iterator[Y]``,
``Iterable[Y]``, their async forms) the type it yields. A top-level ``None``
return becomes ``undefined``: a handler returning ``None`` sends no value.
What has no annotation is ``unknown``; what cannot be translated is
``unknown`` too, with a warning (logged to ``igor``) naming the action.

Dataclasses, TypedDicts and Enums are exported under their class's name,
unless that name is taken (by another class of that name, by a global of
TypeScript's such as ``Record`` or ``Promise``, or by ``Api``) or is no
identifier: then the name gets a number (``Record2``), and a comment says
which Python class it is. String literals and property names are written
with JSON's escapes, so a value or key holding quotes or newlines means in
TypeScript what it means in Python.
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import dataclasses
import enum
import functools
import inspect
import json
import logging
import re
import sys
import types
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .core import flatten
from .loader import UsageError, load_api

__all__ = ["typescript_declarations", "main"]

log = logging.getLogger("igor")

# ASCII only: tsc's default target reads identifiers with ES5's Unicode tables, which lag Python's.
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

def _names(text: str) -> frozenset:
    return frozenset(text.split())


# Names a declaration here must not take. The file itself declares Api and uses Record; a consumer
# imports the types by name into code that uses the ECMAScript globals, where `import type { Map }`
# would hide the real Map. The set is the globals of TypeScript's lib.es*.d.ts (test_typescript
# checks it against the installed TypeScript) plus the words a type may not be named. The DOM's
# globals (Node, Event, Response, ...) are not in it: they are hundreds, common class names, and
# a consumer that imports a `Node` of the API means that one.
_TS_GLOBALS = _names("""
    AggregateError AggregateErrorConstructor Array ArrayBuffer ArrayBufferConstructor ArrayBufferLike
    ArrayBufferTypes ArrayBufferView ArrayConstructor ArrayIterator ArrayLike AsyncDisposable
    AsyncDisposableStack AsyncDisposableStackConstructor AsyncGenerator AsyncGeneratorFunction
    AsyncGeneratorFunctionConstructor AsyncIterable AsyncIterableIterator AsyncIterator AsyncIteratorObject
    Atomics Awaited BigInt BigInt64Array BigInt64ArrayConstructor BigIntConstructor BigIntToLocaleStringOptions
    BigUint64Array BigUint64ArrayConstructor Boolean BooleanConstructor BuiltinIteratorReturn CallableFunction
    Capitalize ClassAccessorDecoratorContext ClassAccessorDecoratorResult ClassAccessorDecoratorTarget
    ClassDecorator ClassDecoratorContext ClassFieldDecoratorContext ClassGetterDecoratorContext
    ClassMemberDecoratorContext ClassMethodDecoratorContext ClassSetterDecoratorContext ConcatArray
    ConstructorParameters DataView DataViewConstructor Date DateConstructor DecoratorContext DecoratorMetadata
    DecoratorMetadataObject Disposable DisposableStack DisposableStackConstructor Error ErrorConstructor
    ErrorOptions EvalError EvalErrorConstructor Exclude Extract FinalizationRegistry
    FinalizationRegistryConstructor FlatArray Float16Array Float16ArrayConstructor Float32Array
    Float32ArrayConstructor Float64Array Float64ArrayConstructor Function FunctionConstructor Generator
    GeneratorFunction GeneratorFunctionConstructor IArguments ImportAssertions ImportAttributes
    ImportCallOptions ImportMeta Infinity InstanceType Int16Array Int16ArrayConstructor Int32Array
    Int32ArrayConstructor Int8Array Int8ArrayConstructor Intl Iterable IterableIterator Iterator
    IteratorObject IteratorObjectConstructor IteratorResult IteratorReturnResult IteratorYieldResult JSON
    Lowercase Map MapConstructor MapIterator Math MethodDecorator NaN NewableFunction NoInfer NonNullable
    Number NumberConstructor Object ObjectConstructor Omit OmitThisParameter ParameterDecorator Parameters
    Partial Pick Promise PromiseConstructor PromiseConstructorLike PromiseFulfilledResult PromiseLike
    PromiseRejectedResult PromiseSettledResult PromiseWithResolvers PropertyDecorator PropertyDescriptor
    PropertyDescriptorMap PropertyKey Proxy ProxyConstructor ProxyHandler RangeError RangeErrorConstructor
    Readonly ReadonlyArray ReadonlyMap ReadonlySet ReadonlySetLike Record ReferenceError
    ReferenceErrorConstructor Reflect RegExp RegExpConstructor RegExpExecArray RegExpIndicesArray
    RegExpMatchArray RegExpStringIterator Required ReturnType Set SetConstructor SetIterator SharedArrayBuffer
    SharedArrayBufferConstructor String StringConstructor StringIterator SuppressedError
    SuppressedErrorConstructor Symbol SymbolConstructor SyntaxError SyntaxErrorConstructor
    TemplateStringsArray ThisParameterType ThisType TypeError TypeErrorConstructor TypedPropertyDescriptor
    URIError URIErrorConstructor Uint16Array Uint16ArrayConstructor Uint32Array Uint32ArrayConstructor
    Uint8Array Uint8ArrayConstructor Uint8ClampedArray Uint8ClampedArrayConstructor Uncapitalize Uppercase
    WeakKey WeakKeyTypes WeakMap WeakMapConstructor WeakRef WeakRefConstructor WeakSet WeakSetConstructor
    decodeURI decodeURIComponent encodeURI encodeURIComponent escape eval isFinite isNaN parseFloat parseInt
    unescape globalThis
""")
_TS_WORDS = _names("""
    any unknown never void undefined null object string number boolean bigint symbol true false this
    break case catch class const continue debugger default delete do else enum export extends finally for
    function if import in instanceof new return super switch throw try typeof var while with
    implements interface let package private protected public static yield await
    abstract accessor as asserts async constructor declare get global infer intrinsic is keyof module
    namespace of out override readonly require satisfies set type unique arguments
""")
_DECLARED_HERE = frozenset({"Api"})
_TAKEN = _TS_GLOBALS | _TS_WORDS | _DECLARED_HERE

_PRIMITIVES = {str: "string", int: "number", float: "number", bool: "boolean", type(None): "null",
               # Protocol 3 carries them as binary; the JS client hands them out as Uint8Array.
               bytes: "Uint8Array", bytearray: "Uint8Array", memoryview: "Uint8Array"}
_LISTS = {list, collections.abc.Sequence, collections.abc.MutableSequence}
_DICTS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
_STREAMS = {
    collections.abc.Generator, collections.abc.Iterator, collections.abc.Iterable,
    collections.abc.AsyncGenerator, collections.abc.AsyncIterator, collections.abc.AsyncIterable,
}
_UNIONS: Tuple[Any, ...] = (typing.Union,) + ((types.UnionType,) if sys.version_info >= (3, 10) else ())


def _markers(name: str) -> Tuple[Any, ...]:
    """``typing.NotRequired`` and ``typing_extensions.NotRequired``, whichever exist."""
    found = [getattr(typing, name, None)]
    try:
        import typing_extensions
    except ImportError:  # it is optional: typing has the markers from Python 3.11
        pass
    else:
        found.append(getattr(typing_extensions, name, None))
    return tuple({m for m in found if m is not None})


_REQUIRED = _markers("Required")
_NOT_REQUIRED = _markers("NotRequired")


def _is_typeddict(tp: Any) -> bool:
    # typing.is_typeddict is 3.10+ and misses typing_extensions' TypedDicts on some versions.
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__") and hasattr(tp, "__annotations__")


def _quote(name: str) -> str:
    """A TypeScript string literal in single quotes (JSON's escapes, which TypeScript shares)."""
    return "'" + json.dumps(name)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"


def _key(name: str) -> str:
    """A property name: as it is if it is an identifier, else a string literal."""
    return name if _IDENTIFIER.fullmatch(name) else _quote(name)


def _type_name(name: str) -> str:
    """``name`` made an identifier (a functional TypedDict's or Enum's name may be any string)."""
    name = re.sub(r"[^A-Za-z0-9_$]", "_", name)
    return "_" + name if not name or name[0].isdigit() else name


# JavaScript ends a line comment at \r, \u2028 and \u2029 as at \n; the other control characters
# are escaped too, so that the comment shows them rather than hiding them.
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _one_line(text: str) -> str:
    """``text`` fit for a comment: its line breaks and control characters escaped, ``*/`` broken."""
    return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text).replace("*/", "*\\/")


def _literal(value: Any) -> Optional[str]:
    """The TypeScript literal type of a JSON scalar, or None if it is not one."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
        return repr(value)
    return None


def _union(members: List[str]) -> str:
    unique = list(dict.fromkeys(members))
    if "unknown" in unique:
        return "unknown"
    return " | ".join(unique) if unique else "never"


def _top_level_union(text: str) -> bool:
    """True if ``text`` has a ``|`` outside brackets (so ``[]`` after it needs parentheses)."""
    depth, quoted, escaped = 0, False, False
    for char in text:
        if quoted:  # a string literal type: its brackets and bars are text
            quoted = escaped or char != "'"
            escaped = not escaped and char == "\\"
        elif char == "'":
            quoted = True
        elif char in "{[(<":
            depth += 1
        elif char in "}])>":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _comment(text: Optional[str], indent: str) -> str:
    """The first paragraph of a docstring as a JSDoc comment."""
    if not text:
        return ""
    summary = _one_line(" ".join(inspect.cleandoc(text).split("\n\n")[0].split()))
    return f"{indent}/** {summary} */\n" if summary else ""


class _Translator:
    """Python types to TypeScript, collecting named declarations and warnings."""

    def __init__(self) -> None:
        self.declarations: Dict[str, str] = {}  # name -> its declaration, in first-use order
        self.names: Dict[Any, str] = {}  # class -> its TypeScript name
        self.classes: Dict[str, type] = {}  # TypeScript name -> its class
        self.warnings: List[str] = []
        self.action = ""

    def warn(self, tp: Any, why: str = "no TypeScript translation") -> str:
        self.warnings.append(f"action {self.action!r}: {_python_name(tp)}: {why}; using unknown")
        return "unknown"

    def translate(self, tp: Any) -> str:
        tp = _strip_annotated(tp)
        try:
            hash(tp)
        except TypeError:  # `data: [int]` and the like
            return self.warn(tp)
        if tp is Any or tp is object:
            return "unknown"
        if tp is None:
            return "null"
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self.named(tp, self._enum)
        if tp in _PRIMITIVES:
            return _PRIMITIVES[tp]
        if hasattr(tp, "__supertype__"):  # typing.NewType
            return self.translate(tp.__supertype__)
        if _is_typeddict(tp):
            return self.named(tp, self._typeddict)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.named(tp, self._dataclass)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in _UNIONS:
            return _union([self.translate(arg) for arg in args])
        if origin is typing.Literal:
            literals = [_literal(arg) for arg in args]
            if None in literals:
                return self.warn(tp, "a Literal of a value that is not a JSON scalar")
            return _union(literals)  # type: ignore[arg-type]
        if tp in _LISTS or origin in _LISTS:
            return self._array(args[0] if args else Any)
        if tp in _DICTS or origin in _DICTS:
            key, value = args if len(args) == 2 else (str, Any)
            if key is not str:
                return self.warn(tp, "JSON object keys are strings")
            return f"Record<string, {self.translate(value)}>"
        if tp is tuple or tp is typing.Tuple:
            return "unknown[]"
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return self._array(args[0])
            if not args or args == ((),):  # Tuple[()]: () from Python 3.11, ((),) before
                return "[]"
            return "[" + ", ".join(self.translate(arg) for arg in args) + "]"
        return self.warn(tp)

    def _array(self, item: Any) -> str:
        text = self.translate(item)
        return f"({text})[]" if _top_level_union(text) else f"{text}[]"

    def named(self, cls: type, body: Callable[[type, str], str]) -> str:
        """The exported name of ``cls``, declaring it the first time (and before its body, for recursion).

        A class keeps its name unless another class, TypeScript, or this file
        has it already: then it gets the first free ``Name2``, ``Name3``...
        """
        if cls in self.names:
            return self.names[cls]
        base = _type_name(cls.__name__)
        name, n = base, 2
        while name in self.declarations or name in _TAKEN:
            name, n = f"{base}{n}", n + 1
        self.names[cls] = name
        self.classes[name] = cls
        self.declarations[name] = ""
        doc = _comment(cls.__doc__ if _own_doc(cls) else None, "")
        self.declarations[name] = doc + body(cls, name)
        return name

    def notes(self) -> Dict[str, str]:
        """For each name that is not its class's own, or whose class shares its name: which class it is."""
        counts = collections.Counter(cls.__name__ for cls in self.classes.values())
        return {name: f"// {name} is the Python class {_one_line(_python_name(cls))}.\n"
                for name, cls in self.classes.items() if name != cls.__name__ or counts[cls.__name__] > 1}

    def _enum(self, cls: type, name: str) -> str:
        literals = [_literal(member.value) for member in cls]  # type: ignore[var-annotated]
        if None in literals:
            return f"export type {name} = {self.warn(cls, 'an Enum whose values are not JSON scalars')};"
        return f"export type {name} = {_union(literals)};"  # type: ignore[arg-type]

    def _fields(self, cls: type) -> Optional[Dict[str, Any]]:
        try:
            return typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:  # a forward reference that cannot be resolved, say
            self.warn(cls, f"its annotations cannot be evaluated ({exc})")
            return None

    def _typeddict(self, cls: type, name: str) -> str:
        hints = self._fields(cls)
        if hints is None:
            return f"export type {name} = unknown;"
        optional = set(getattr(cls, "__optional_keys__", ()))
        lines = []
        for field, tp in hints.items():
            # With `from __future__ import annotations` TypedDict cannot see
            # NotRequired in __optional_keys__ (before 3.12?): look ourselves.
            origin = typing.get_origin(tp)
            if origin in _NOT_REQUIRED:
                optional.add(field)
            elif origin in _REQUIRED:
                optional.discard(field)
            if origin in _NOT_REQUIRED + _REQUIRED:
                tp = typing.get_args(tp)[0]
            mark = "?" if field in optional else ""
            lines.append(f"  {_key(field)}{mark}: {self.translate(tp)};\n")
        return f"export interface {name} {{\n" + "".join(lines) + "}"

    def _dataclass(self, cls: type, name: str) -> str:
        hints = self._fields(cls)
        if hints is None:
            return f"export type {name} = unknown;"
        lines = [f"  {_key(f.name)}: {self.translate(hints.get(f.name, Any))};\n"
                 for f in dataclasses.fields(cls)]
        return f"export interface {name} {{\n" + "".join(lines) + "}"


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _own_doc(cls: type) -> bool:
    """False for the docstrings classes inherit or are given by their decorators (dataclass's signature)."""
    doc = cls.__dict__.get("__doc__")
    return bool(doc) and not (dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "("))


def _python_name(tp: Any) -> str:
    if isinstance(tp, type) and tp.__module__ != "builtins":
        return f"{tp.__module__}.{tp.__qualname__}"
    return tp.__name__ if isinstance(tp, type) else repr(tp)


def _signature(translator: _Translator, handler: Callable) -> Tuple[str, str]:
    """The (data, value) types of one handler."""
    function = handler
    if not inspect.isroutine(handler) and not isinstance(handler, functools.partial):
        function = handler.__call__  # an object whose class defines __call__
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        translator.warnings.append(f"action {translator.action!r}: its annotations cannot be evaluated ({exc}); "
                                   "using unknown")
        return "unknown", "unknown"
    try:
        positional = [p for p in inspect.signature(function).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        positional = []
    data = translator.translate(hints[positional[1].name]) if len(positional) > 1 and positional[1].name in hints \
        else "unknown"
    if "return" not in hints:
        return data, "unknown"
    returned = hints["return"]
    origin = typing.get_origin(returned) or returned
    if origin in _STREAMS:
        args = typing.get_args(returned)
        return data, translator.translate(args[0]) if args else "unknown"
    # A handler's None is no value at all (call() resolves to undefined), not a JSON null.
    if returned is None or returned is type(None):
        return data, "undefined"
    if typing.get_origin(returned) in _UNIONS and type(None) in typing.get_args(returned):
        others = [translator.translate(a) for a in typing.get_args(returned) if a is not type(None)]
        return data, _union(others + ["undefined"])
    return data, translator.translate(returned)


def typescript_declarations(api: Mapping[str, Any], source: Optional[str] = None) -> str:
    """The text of a TypeScript module declaring ``interface Api`` for ``api``.

    ``api`` is a dict of handlers, nested or flat (it goes through
    :func:`igor.flatten`); ``source`` (``"module:API"``) is named in the
    header. Each type that cannot be translated is logged as a warning.
    """
    translator = _Translator()
    entries = []
    for action, handler in flatten(api).items():
        translator.action = action
        data, value = _signature(translator, handler)
        doc = _comment(inspect.getdoc(handler) if inspect.isfunction(handler) else None, "  ")
        entries.append(f"{doc}  {_quote(action)}: {{ data: {data}; value: {value} }};\n")
    for warning in translator.warnings:
        log.warning("%s", warning)
    header = (
        f"// Generated by `python -m igor types{' ' + _one_line(source) if source else ''}` "
        "from the handlers' annotations:\n"
        "// do not edit, run it again.\n"
    )
    notes = translator.notes()
    named = "".join(notes.get(name, "") + text + "\n\n" for name, text in translator.declarations.items())
    api_doc = (
        "/**\n"
        " * The actions, by name: `data` is what the action takes, `value` the type of\n"
        " * each value it sends (what `call()` resolves to, what `stream()` yields).\n"
        " * Use it as `new IgorClient<Api>(url)`.\n"
        " */\n"
    )
    return header + "\n" + named + api_doc + "export interface Api {\n" + "".join(entries) + "}\n"


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m igor types module:API [-o FILE]``."""
    parser = argparse.ArgumentParser(prog="igor types",
                                     description="Write TypeScript declarations of an API's actions "
                                                 "from its handlers' annotations.")
    parser.add_argument("api", metavar="MODULE:API",
                        help="the API: an attribute of a module (myapp.api:API) or of a file (path/to/api.py:API), "
                             "a dict of actions, nested or flat")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, format="igor types: %(levelname)s: %(message)s")
    try:
        api = load_api(args.api)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    text = typescript_declarations(api, source=args.api)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
    else:
        sys.stdout.write(text)
    return 0
