"""`igor.typescript`: Python annotations to TypeScript, and `python -m igor types`."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Literal,
    Mapping,
    NewType,
    Optional,
    Sequence,
    Tuple,
    TypedDict,
    Union,
)

import pytest

from igor.typescript import typescript_declarations

try:
    from typing import NotRequired, Required
except ImportError:  # Python < 3.11, where pytest brings typing_extensions
    from typing_extensions import NotRequired, Required

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry(text: str, action: str) -> str:
    """The `{ data: ...; value: ... }` of one action in the generated Api."""
    match = re.search(r"^  '" + re.escape(action) + r"': (\{ data: .*; value: .* \});$", text, re.M)
    assert match, f"no entry for {action!r} in:\n{text}"
    return match.group(1)


def data_of(annotation: Any) -> str:
    def handler(out, data):
        pass

    handler.__annotations__ = {"data": annotation}
    text = entry(typescript_declarations({"a": handler}), "a")
    return re.match(r"\{ data: (.*); value: unknown \}$", text).group(1)


def value_of(handler) -> str:
    text = entry(typescript_declarations({"a": handler}), "a")
    return re.match(r"\{ data: .*?; value: (.*) \}$", text).group(1)


# -- the translation rules --------------------------------------------------------------


@pytest.mark.parametrize("annotation, expected", [
    (str, "string"),
    (int, "number"),
    (float, "number"),
    (bool, "boolean"),
    (None, "null"),
    (Any, "unknown"),
    (Optional[str], "string | null"),
    (Union[int, str, None], "number | string | null"),
    (Union[int, Any], "unknown"),
    (Literal["a", "it's", 3, True, None], "'a' | 'it\\'s' | 3 | true | null"),
    (List[int], "number[]"),
    (list, "unknown[]"),
    (Sequence[str], "string[]"),
    (List[Optional[int]], "(number | null)[]"),
    (List[List[str]], "string[][]"),
    (List[Literal["a|b", "c"]], "('a|b' | 'c')[]"),
    (List[Literal["x|y", 'say "hi"\n']], "('x|y' | 'say \"hi\"\\n')[]"),
    (List[Literal["x|(y"]], "'x|(y'[]"),
    (Dict[str, int], "Record<string, number>"),
    (Mapping[str, List[bool]], "Record<string, boolean[]>"),
    (dict, "Record<string, unknown>"),
    (Tuple[int, str], "[number, string]"),
    (Tuple[int, ...], "number[]"),
    (Tuple[()], "[]"),
    (tuple, "unknown[]"),
    (NewType("UserId", int), "number"),
    # Protocol 3 carries binary values as they are; the JS client hands them out as Uint8Array.
    (bytes, "Uint8Array"),
    (bytearray, "Uint8Array"),
    (memoryview, "Uint8Array"),
    (Optional[bytes], "Uint8Array | null"),
    (Dict[str, List[bytes]], "Record<string, Uint8Array[]>"),
])
def test_types_translate(annotation, expected):
    assert data_of(annotation) == expected


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | Y is Python 3.10+")
def test_pep604_unions_translate():
    assert data_of(eval("int | None")) == "number | null"
    assert data_of(eval("list[str | int]")) == "(string | number)[]"


class Point(TypedDict):
    """A point on the page."""

    x: float
    y: float
    label: NotRequired[str]


# The functional form, for a key that is no identifier.
Filter = TypedDict("Filter", {"text": str, "limit": Required[int], "odd-key": bool}, total=False)

# Two classes of one name.
ItemA = TypedDict("Item", {"v": int})  # noqa: UP013 (the functional form names the class)
ItemB = TypedDict("Item", {"v": str})  # noqa: UP013


class Opaque:
    pass


class Shape(enum.Enum):
    SQUARE = (1, 1)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Node:
    name: str
    children: List[Node]
    parent: Optional[Node] = None


@dataclasses.dataclass
class Drawing:
    """Points and their colour."""

    points: List[Point]
    color: Color
    level: Level
    tree: Node


def test_typeddict_with_optional_keys():
    def draw(out, data: Point) -> Filter:
        pass

    text = typescript_declarations({"draw": draw})
    assert entry(text, "draw") == "{ data: Point; value: Filter }"
    point = "/** A point on the page. */\nexport interface Point {\n  x: number;\n  y: number;\n  label?: string;\n}"
    assert point in text
    assert "export interface Filter {\n  text?: string;\n  limit: number;\n  'odd-key'?: boolean;\n}" in text


def test_dataclasses_and_enums_are_named_once_and_recursion_is_safe():
    def get(out, data: Drawing) -> List[Drawing]:
        pass

    def put(out, data: Node) -> Color:
        pass

    text = typescript_declarations({"get": get, "put": put})
    assert entry(text, "get") == "{ data: Drawing; value: Drawing[] }"
    assert entry(text, "put") == "{ data: Node; value: Color }"
    assert "export type Color = 'red' | 'green';" in text
    assert "export type Level = 1 | 2;" in text
    assert "export interface Node {\n  name: string;\n  children: Node[];\n  parent: Node | null;\n}" in text
    # The dataclass's own docstring, not the signature dataclass() writes for one without.
    assert "/** Points and their colour. */\nexport interface Drawing {" in text
    assert "Node(name" not in text
    for name in ("Point", "Color", "Level", "Node", "Drawing"):
        assert len(re.findall(rf"^export (interface|type) {name}\b", text, re.M)) == 1, name
    # Declared before the Api that uses them.
    assert text.index("export interface Drawing") < text.index("export interface Api")


def test_two_classes_of_one_name_get_two_names():
    def handler(out, data: ItemA) -> ItemB:
        pass

    text = typescript_declarations({"a": handler})
    assert entry(text, "a") == "{ data: Item; value: Item2 }"
    assert "export interface Item {\n  v: number;\n}" in text
    assert "export interface Item2 {\n  v: string;\n}" in text


def test_return_and_yield_types_are_the_values_sent():
    def plain(out, data) -> Dict[str, int]:
        pass

    def nothing(out, data) -> None:
        pass

    def maybe(out, data) -> Optional[str]:
        pass

    def generator(out, data) -> Generator[int, None, None]:
        yield 1

    def iterator(out, data) -> Iterator[str]:
        yield "a"

    def iterable(out, data) -> Iterable[bool]:
        yield True

    async def coroutine(out, data) -> List[str]:
        return []

    async def agen(out, data) -> AsyncGenerator[float, None]:
        yield 1.0

    async def aiterator(out, data) -> AsyncIterator[Literal["x"]]:
        yield "x"

    def yields_none(out, data) -> Iterator[None]:
        yield None

    assert value_of(plain) == "Record<string, number>"
    assert value_of(nothing) == "undefined"  # nothing is sent: call() resolves to undefined
    assert value_of(maybe) == "string | undefined"
    assert value_of(generator) == "number"
    assert value_of(iterator) == "string"
    assert value_of(iterable) == "boolean"
    assert value_of(coroutine) == "string[]"
    assert value_of(agen) == "number"
    assert value_of(aiterator) == "'x'"
    assert value_of(yields_none) == "null"  # a yielded None is sent as null


def test_unannotated_handlers_are_unknown_without_warnings(caplog):
    def bare(out, data, **kwargs):
        return data

    def only_out(out):
        pass

    with caplog.at_level(logging.WARNING, logger="igor"):
        text = typescript_declarations({"bare": bare, "only_out": only_out, "builtin": len})
    assert entry(text, "bare") == "{ data: unknown; value: unknown }"
    assert entry(text, "only_out") == "{ data: unknown; value: unknown }"
    assert not [r for r in caplog.records if "bare" in r.getMessage()]


def test_keyword_arguments_and_callable_objects():
    class Handler:
        def __call__(self, out, data: int, *, session=None, **kwargs) -> str:
            return ""

    def with_kwargs(out, data: str, client_id: int = 0, **kwargs) -> bool:
        return True

    text = typescript_declarations({"obj": Handler(), "fn": with_kwargs})
    assert entry(text, "obj") == "{ data: number; value: string }"
    assert entry(text, "fn") == "{ data: string; value: boolean }"


def test_untranslatable_types_are_unknown_with_a_warning(caplog):
    def handler(out, data: Dict[int, str]) -> List[Opaque]:
        pass

    def weird(out, data: Literal[b"x"]) -> complex:
        pass

    def shape(out, data: Shape) -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="igor"):
        text = typescript_declarations({"h": handler, "w": weird, "s": shape})
    assert entry(text, "h") == "{ data: unknown; value: unknown[] }"
    assert entry(text, "w") == "{ data: unknown; value: unknown }"
    assert entry(text, "s") == "{ data: Shape; value: undefined }"
    assert "export type Shape = unknown;" in text
    messages = [r.getMessage() for r in caplog.records]
    assert any("'h'" in m and "Dict[int, str]" in m and "keys are strings" in m for m in messages), messages
    assert any("'h'" in m and "Opaque" in m for m in messages), messages
    assert any("'w'" in m and "Literal" in m for m in messages), messages
    assert any("'w'" in m and "complex" in m for m in messages), messages
    assert any("'s'" in m and "Shape" in m and "not JSON scalars" in m for m in messages), messages


def test_unresolvable_annotations_warn(caplog):
    def handler(out, data: NoSuchType) -> str:  # noqa: F821 (the point: it cannot be resolved)
        pass

    with caplog.at_level(logging.WARNING, logger="igor"):
        text = typescript_declarations({"h": handler})
    assert entry(text, "h") == "{ data: unknown; value: unknown }"
    assert any("'h'" in r.getMessage() and "NoSuchType" in r.getMessage() for r in caplog.records)


def test_a_nested_api_is_keyed_by_flattened_names_with_docstrings():
    def run(out, data: int) -> Iterator[int]:
        """Count up to data.

        More text that stays out of the comment.
        """
        yield from range(data)

    def hello(out, data: str) -> str:
        return data

    text = typescript_declarations({"jobs": {"run": run, "deep": {"er": hello}}, "hello": hello}, "app:API")
    assert entry(text, "jobs.run") == "{ data: number; value: number }"
    assert entry(text, "jobs.deep.er") == "{ data: string; value: string }"
    assert "  /** Count up to data. */\n  'jobs.run'" in text
    assert "More text" not in text
    assert text.startswith("// Generated by `python -m igor types app:API`")
    assert re.search(r"^export interface Api \{$", text, re.M)


def test_refuses_what_flatten_refuses():
    with pytest.raises(ValueError, match="not callable"):
        typescript_declarations({"a": 3})


# -- the command line ------------------------------------------------------------------

MODULE = '''
from typing import Iterator, TypedDict

class Greeting(TypedDict):
    name: str

def hello(out, data: Greeting) -> str:
    return "Hello " + data["name"]

def count(out, data: int) -> Iterator[int]:
    yield from range(data)

def odd(out, data: complex) -> None:
    pass

API = {"hello": hello, "jobs": {"count": count}, "odd": odd}
'''


def run_cli(tmp_path, *args):
    (tmp_path / "typed_api.py").write_text(MODULE)
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "igor", "types", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_to_stdout_and_warns_on_stderr(tmp_path):
    result = run_cli(tmp_path, "typed_api:API")
    assert result.returncode == 0, result.stderr
    assert entry(result.stdout, "hello") == "{ data: Greeting; value: string }"
    assert entry(result.stdout, "jobs.count") == "{ data: number; value: number }"
    assert entry(result.stdout, "odd") == "{ data: unknown; value: undefined }"
    assert "export interface Greeting {\n  name: string;\n}" in result.stdout
    assert "'odd'" in result.stderr and "complex" in result.stderr


def test_cli_writes_to_a_file(tmp_path):
    out = tmp_path / "api.d.ts"
    result = run_cli(tmp_path, "typed_api:API", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert out.read_text() == run_cli(tmp_path, "typed_api:API").stdout
    assert entry(out.read_text(), "jobs.count") == "{ data: number; value: number }"


def test_cli_refuses_a_bad_spec(tmp_path):
    result = run_cli(tmp_path, "typed_api")
    assert result.returncode != 0
    assert "expected module:attribute" in result.stderr
    result = run_cli(tmp_path, "typed_api:hello")
    assert result.returncode != 0
    assert "not a dict of actions" in result.stderr


def test_the_demo_declarations_are_up_to_date():
    """examples/demo/api.d.ts is generated: regenerate it when server_instance.py changes."""
    import server_instance

    committed = os.path.join(ROOT, "examples", "demo", "api.d.ts")
    with open(committed, encoding="utf-8") as file:
        assert file.read() == typescript_declarations(server_instance.API, "server_instance:API"), (
            "examples/demo/api.d.ts is stale: run python -m igor types server_instance:API -o examples/demo/api.d.ts")


# -- what tsc makes of it -------------------------------------------------------------

TSC = os.path.join(ROOT, "clients", "js", "node_modules", "typescript", "bin", "tsc")
needs_tsc = pytest.mark.skipif(not os.path.exists(TSC) or shutil.which("node") is None,
                               reason="needs node and tsc: npm --prefix clients/js ci --no-audit --no-fund")


def tsc(folder, *files):
    """tsc --strict on ``files`` in ``folder``, as a UI project would check them (the DOM's globals included)."""
    command = ["node", TSC, "--strict", "--noEmit", "--pretty", "false", "--target", "ES2022", "--module", "ESNext",
               "--moduleResolution", "bundler", "--lib", "ES2022,DOM", *files]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


MODELS_A = '''
import dataclasses

@dataclasses.dataclass
class Record:
    """models_a's record: an id. */ ends no comment"""
    id: int
'''

MODELS_B = '''
import dataclasses
from typing import Dict

@dataclasses.dataclass
class Record:
    name: str
    tags: Dict[str, int]  # TypeScript's Record<string, number>, whatever the file declares
'''

HOSTILE = '''
import dataclasses
import enum
from typing import Dict, List, Optional, TypedDict

import models_a
import models_b


class Quoted(enum.Enum):
    SINGLE = "it's"
    DOUBLE = 'say "hi"'
    BACKSLASH = "back\\\\slash"
    BACKSLASH_QUOTE = "\\\\'"
    NEWLINE = "line\\nbreak"
    SEPARATOR = "para\\u2028graph"
    COMMENT = "*/ // <!-- ${x}"
    CONTROL = "\\t\\x00"


class Level(enum.Enum):
    LOW = -1
    HALF = 0.5
    HUGE = 10 ** 20


KEYS = ["a\\nb", "ab\\n", "it's", 'say "hi"', "class", "1st", "", "sp ace", "back\\\\",
        "\\u00fcn\\u00efc\\u00f6de", "$ok"]
Weird = TypedDict("Weird", {key: int for key in KEYS})

Odd = TypedDict("odd name\\n*/ x", {"x": int})


@dataclasses.dataclass
class Api:
    """Named like the interface the file declares."""
    version: int


class Partial(TypedDict):
    done: bool


class Promise(TypedDict):
    then: str


class string(TypedDict):
    s: str


def get(out, data: models_a.Record) -> models_b.Record: ...
def both(out, data: List[models_a.Record]) -> Dict[str, models_b.Record]: ...
def api(out, data: Api) -> Quoted: ...
def weird(out, data: Weird) -> Optional[Odd]: ...
def level(out, data: Level) -> Partial: ...
def promise(out, data: Promise) -> string: ...


API = {"get": get, "both": both, "api": api, "weird": weird, "level": level, "promise": promise,
       "it's\\n\\"odd\\"": api}
'''


def js(value):
    """``value`` as a TypeScript literal, written by json rather than by the generator under test."""
    return json.dumps(value)


def write_hostile_api(folder):
    (folder / "models_a.py").write_text(MODELS_A)
    (folder / "models_b.py").write_text(MODELS_B)
    (folder / "hostile_api.py").write_text(HOSTILE)
    result = subprocess.run([sys.executable, "-m", "igor", "types", "hostile_api:API", "-o", "api.d.ts"], cwd=folder,
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(folder))
    try:
        import hostile_api
    finally:
        sys.path.remove(str(folder))
        for name in ("hostile_api", "models_a", "models_b"):
            sys.modules.pop(name, None)
    return (folder / "api.d.ts").read_text(encoding="utf-8"), hostile_api


def test_hostile_and_colliding_names_get_names_of_their_own(tmp_path):
    text, _ = write_hostile_api(tmp_path)
    # Record and Api are TypeScript's and the file's own; the two Records are two types.
    assert entry(text, "get") == "{ data: Record2; value: Record3 }"
    assert entry(text, "both") == "{ data: Record2[]; value: Record<string, Record3> }"
    assert "// Record2 is the Python class models_a.Record.\n" in text
    assert "// Record3 is the Python class models_b.Record.\n" in text
    assert "export interface Record3 {\n  name: string;\n  tags: Record<string, number>;\n}" in text
    assert "// Api2 is the Python class hostile_api.Api.\n/** Named like the interface the file declares. */\n" \
           "export interface Api2 {" in text
    for name in ("Partial2", "Promise2", "string2", "odd_name____x"):
        assert re.search(rf"^// {name} is the Python class hostile_api\.", text, re.M), name
    assert "// odd_name____x is the Python class hostile_api.odd name\\u000a*\\/ x.\n" in text
    assert "/** models_a's record: an id. *\\/ ends no comment */" in text
    assert len(re.findall(r"^export interface Api \{$", text, re.M)) == 1
    # Every key of the Weird TypedDict that is no identifier is quoted, newlines and all.
    assert "  'ab\\n': number;\n" in text and "  $ok: number;\n" in text and "  class: number;\n" in text


def test_a_renamed_class_does_not_take_the_name_of_another():
    def api(out, data, **kwargs):
        pass

    # Real annotations, not strings: the classes are local.
    api.__annotations__ = {"data": TypedDict("Api", {"x": int}), "return": TypedDict("Api2", {"y": int})}
    text = typescript_declarations({"a": api})
    # Api is the file's: the first class becomes Api2, and the class named Api2 takes the next free name.
    assert entry(text, "a") == "{ data: Api2; value: Api22 }"
    assert "// Api2 is the Python class test_typescript.Api.\n" in text
    assert "// Api22 is the Python class test_typescript.Api2.\n" in text


def test_the_reserved_names_cover_typescripts_globals():
    """Every global the ECMAScript lib files of the installed TypeScript declare is a name no type here takes."""
    from igor.typescript import _TAKEN

    lib = os.path.join(os.path.dirname(os.path.dirname(TSC)), "lib")
    if not os.path.isdir(lib):
        pytest.skip("needs TypeScript's lib folder: npm --prefix clients/js ci --no-audit --no-fund")
    declared = set()
    for name in os.listdir(lib):
        if re.fullmatch(r"lib\.(es\w*|decorators\w*)(\.\w+)*\.d\.ts", name):
            with open(os.path.join(lib, name), encoding="utf-8") as file:
                declared.update(re.findall(r"^(?:declare )?(?:interface|type|var|const|function|namespace|class) "
                                           r"([A-Za-z_$][\w$]*)", file.read(), re.M))
    assert len(declared) > 150
    assert declared - _TAKEN == set()


@needs_tsc
def test_hostile_names_compile_under_strict_and_mean_what_python_means(tmp_path):
    text, api = write_hostile_api(tmp_path)
    weird = {key: index for index, key in enumerate(api.KEYS)}
    quoted = [member.value for member in api.Quoted]
    levels = [member.value for member in api.Level]
    record_b = {"name": "b", "tags": {"x": 1}}
    (tmp_path / "consumer.ts").write_text(f"""\
import type {{ Api }} from './api';

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function same<A, B>(check: Equals<A, B>): void {{ void check; }}
type Data<K extends keyof Api> = Api[K]['data'];
type Value<K extends keyof Api> = Api[K]['value'];
type RecordA = {{ id: number }};
type RecordB = {{ name: string; tags: {{ [key: string]: number }} }};

// The types, as json writes the Python side's values.
same<keyof Api, {' | '.join(js(action) for action in api.API)}>(true);
same<Data<'get'>, RecordA>(true);
same<Value<'get'>, RecordB>(true);
same<Data<'both'>, RecordA[]>(true);
same<Value<'both'>, {{ [key: string]: RecordB }}>(true);
same<Data<'api'>, {{ version: number }}>(true);
same<Value<'api'>, {' | '.join(js(value) for value in quoted)}>(true);
same<Data<'weird'>, {{ {' '.join(f'{js(key)}: number;' for key in api.KEYS)} }}>(true);
same<Value<'weird'>, {{ x: number }} | undefined>(true);
same<Data<'level'>, {' | '.join(js(value) for value in levels)}>(true);
same<Value<'level'>, {{ done: boolean }}>(true);
same<Data<'promise'>, {{ then: string }}>(true);
same<Value<'promise'>, {{ s: string }}>(true);
same<Data<{js(list(api.API)[-1])}>, {{ version: number }}>(true);
// @ts-expect-error: the check itself tells two types apart
same<Data<'get'>, RecordB>(true);

// What Python sends is what these types hold...
const goodRecord: Value<'get'> = {js(record_b)};
const goodQuoted: Value<'api'>[] = {js(quoted)};
const goodWeird: Data<'weird'> = {js(weird)};
const goodLevels: Data<'level'>[] = {js(levels)};
// ... and the wrong shapes are refused.
// @ts-expect-error: models_a.Record has an id, not models_b.Record's fields
const wrongRecord: Data<'get'> = {js(record_b)};
// @ts-expect-error: the value holds a newline, not a backslash and an n
const wrongQuoted: Value<'api'> = {js(chr(92) + "nline break")};
// @ts-expect-error: a backslash and an n, not a newline
const wrongNewline: Value<'api'> = {js("line" + chr(92) + "nbreak")};
// @ts-expect-error: each key of Weird holds a number
const wrongWeird: Data<'weird'> = {{ ...goodWeird, {js("a" + chr(10) + "b")}: 'one' }};
// @ts-expect-error: a key of Weird missing
const missingKey: Data<'weird'> = {js({key: 0 for key in api.KEYS if key != "ab" + chr(10)})};
// @ts-expect-error: Api2 (the Python Api) needs its version
const wrongApi: Data<'api'> = {{}};
// @ts-expect-error: 2 is no value of Level
const wrongLevel: Data<'level'> = 2;
// @ts-expect-error: the Python Partial, not TypeScript's: done is required
const wrongPartial: Value<'level'> = {{}};
// The consumer's own Record is still TypeScript's.
const tags: Record<string, number> = {{ x: 1 }};
export {{ goodRecord, goodQuoted, goodWeird, goodLevels, wrongRecord, wrongQuoted, wrongNewline, wrongWeird, missingKey,
  wrongApi, wrongLevel, wrongPartial, tags }};
""", encoding="utf-8")
    result = tsc(tmp_path, "api.d.ts", "consumer.ts")
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + text
