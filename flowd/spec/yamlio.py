"""YAML reading and writing for Polyaxonfiles, fast and with positions on demand.

PyYAML's constructor is pure Python and builds a node tree first; for a 10,000-op file that
alone takes seconds. Here libyaml's event stream (``CSafeLoader``'s C parser) is turned straight
into dicts/lists/scalars, with PyYAML's own implicit-type rules for plain scalars, cached per
distinct text. JSON input goes through msgspec.

Positions cost nothing on the happy path: :func:`positions` re-reads the text only when a
diagnostic needs a ``line:column``, and maps every path (``("run", "operations", 2)``) to the
mark of its key (mappings) or item (sequences).

Nothing here knows about Polyaxon; it must not raise anything but :class:`YamlSyntaxError`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

__all__ = ["YamlSyntaxError", "load_text", "positions", "dump_text"]

try:  # libyaml bindings; fall back to the pure-Python parser
    _Loader: Any = yaml.CSafeLoader
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


class YamlSyntaxError(ValueError):
    """The text is not YAML (or JSON). ``line``/``column`` are 1-based when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
_CONSTRUCT = {
    "tag:yaml.org,2002:null": lambda n: None,
    "tag:yaml.org,2002:bool": _constructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": _constructor.construct_yaml_int,
    "tag:yaml.org,2002:float": _constructor.construct_yaml_float,
    "tag:yaml.org,2002:timestamp": _constructor.construct_yaml_timestamp,
    "tag:yaml.org,2002:str": lambda n: n.value,
    "tag:yaml.org,2002:binary": _constructor.construct_yaml_binary,
    "tag:yaml.org,2002:merge": lambda n: "<<",
    "tag:yaml.org,2002:value": lambda n: n.value,
}
_plain_cache: dict[str, Any] = {}


def _scalar(ev: Any) -> Any:
    value = ev.value
    tag = ev.tag
    if tag is None or tag == "!":
        if not ev.implicit[0]:  # quoted or block scalar: a string
            return value
        cached = _plain_cache.get(value, _plain_cache)
        if cached is not _plain_cache:
            return cached
        tag = _resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        if tag == "tag:yaml.org,2002:str":
            result: Any = value
        else:
            result = _CONSTRUCT[tag](yaml.ScalarNode(tag, value))  # type: ignore[no-untyped-call]
        if len(_plain_cache) < 100_000:
            _plain_cache[value] = result
        return result
    fn = _CONSTRUCT.get(tag)
    if fn is None:
        mark = ev.start_mark
        raise YamlSyntaxError(f"unsupported YAML tag {tag!r}", mark.line + 1, mark.column + 1)
    try:
        return fn(yaml.ScalarNode(tag, value))  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - a bad !!int etc.: PyYAML raises many kinds
        mark = ev.start_mark
        raise YamlSyntaxError(f"cannot read {value!r} as {tag}: {exc}", mark.line + 1, mark.column + 1) from None


class _Frame:
    __slots__ = ("container", "key", "has_key", "anchor", "merges")

    def __init__(self, container: Any, anchor: str | None) -> None:
        self.container = container
        self.key: Any = None
        self.has_key = False
        self.anchor = anchor
        self.merges: list[Any] | None = None


def _events(text: str) -> Any:
    loader = _Loader(text)
    get = loader.get_event
    end = yaml.StreamEndEvent
    try:
        while True:
            ev = get()
            if ev is None or type(ev) is end:
                return
            yield ev
    finally:
        loader.dispose()


def _build(text: str, marks: dict[tuple[Any, ...], tuple[int, int]] | None = None) -> Any:
    """Turn the event stream into Python objects; optionally record a mark per path."""
    anchors: dict[str, Any] = {}
    stack: list[_Frame] = []
    path: list[Any] = []
    root: Any = None
    docs = 0
    SE, ME, SS, MS, AE = (
        yaml.ScalarEvent,
        yaml.MappingEndEvent,
        yaml.SequenceStartEvent,
        yaml.MappingStartEvent,
        yaml.AliasEvent,
    )
    SqE, DS = yaml.SequenceEndEvent, yaml.DocumentStartEvent

    def add(value: Any, ev: Any) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        top = stack[-1]
        c = top.container
        if type(c) is list:
            if marks is not None:
                m = ev.start_mark
                marks[(*path[1:], len(c))] = (m.line + 1, m.column + 1)
            c.append(value)
        elif not top.has_key:
            if isinstance(value, (dict, list)):
                # complex keys are not used by Polyaxonfiles; make them hashable text
                value = repr(value)
            top.key = value
            top.has_key = True
            if marks is not None:
                m = ev.start_mark
                marks[(*path[1:], value)] = (m.line + 1, m.column + 1)
        else:
            key = top.key
            top.has_key = False
            if key == "<<" and ev is not None and type(ev) in (AE, MS, SS):
                if top.merges is None:
                    top.merges = []
                top.merges.extend(value if isinstance(value, list) else [value])
                return
            c[key] = value

    def open_(container: Any, ev: Any) -> None:
        key = None
        if stack:
            top = stack[-1]
            if type(top.container) is list:
                key = len(top.container)
            elif top.has_key:
                key = top.key
        add(container, ev)
        stack.append(_Frame(container, ev.anchor))
        path.append(key)
        if ev.anchor:
            anchors[ev.anchor] = container

    try:
        for ev in _events(text):
            t = type(ev)
            if t is SE:
                v = _scalar(ev)
                if ev.anchor:
                    anchors[ev.anchor] = v
                add(v, ev)
            elif t is MS:
                open_({}, ev)
            elif t is SS:
                open_([], ev)
            elif t is ME or t is SqE:
                frame = stack.pop()
                path.pop()
                if frame.merges:
                    c = frame.container
                    for src in frame.merges:
                        if isinstance(src, dict):
                            for k, v in src.items():
                                c.setdefault(k, v)
            elif t is AE:
                if ev.anchor not in anchors:
                    m = ev.start_mark
                    raise YamlSyntaxError(f"found undefined alias {ev.anchor!r}", m.line + 1, m.column + 1)
                add(anchors[ev.anchor], ev)
            elif t is DS:
                docs += 1
                if docs > 1:
                    m = ev.start_mark
                    raise YamlSyntaxError(
                        "expected a single document, found another one", m.line + 1, m.column + 1
                    )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            msg = f"{exc.problem} {exc.context}"
            cm = exc.context_mark
            if cm is not None and exc.problem_mark is not None and cm.line != exc.problem_mark.line:
                msg += f" that starts at line {cm.line + 1}, column {cm.column + 1}"
        if mark is not None:
            lines = text.splitlines()
            if mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
                msg += " (a tab: YAML indentation must use spaces)"
            raise YamlSyntaxError(msg, mark.line + 1, mark.column + 1) from None
        raise YamlSyntaxError(msg) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc)) from None
    return root


def _build_fast(text: str) -> Any:
    """:func:`_build` without marks, inlined for speed (a 10,000-op file has ~200k events).

    Anchors, merge keys and complex keys take the general path: on the first one seen, the
    text is read again by :func:`_build`.
    """
    SE, ME, SS, MS, SqE = (yaml.ScalarEvent, yaml.MappingEndEvent, yaml.SequenceStartEvent,
                           yaml.MappingStartEvent, yaml.SequenceEndEvent)
    DS = yaml.DocumentStartEvent
    cache = _plain_cache
    # stack of [container, pending_key, is_list]
    stack: list[list[Any]] = []
    root: Any = None
    docs = 0
    loader = _Loader(text)
    get = loader.get_event
    end = yaml.StreamEndEvent
    try:
        while True:
            ev = get()
            t = type(ev)
            if t is SE:
                if ev.anchor is not None:
                    raise _Slow
                if ev.implicit[0] and (ev.tag is None or ev.tag == "!"):
                    v = cache.get(ev.value, cache)
                    if v is cache:
                        v = _scalar(ev)
                elif ev.tag is None or ev.tag == "!":
                    v = ev.value
                else:
                    v = _scalar(ev)
                if not stack:
                    root = v
                    continue
                top = stack[-1]
                if top[2]:
                    top[0].append(v)
                elif top[1] is _NOKEY:
                    if v == "<<":
                        raise _Slow
                    top[1] = v
                else:
                    top[0][top[1]] = v
                    top[1] = _NOKEY
            elif t is MS or t is SS:
                if ev.anchor is not None:
                    raise _Slow
                c: Any = {} if t is MS else []
                if not stack:
                    root = c
                else:
                    top = stack[-1]
                    if top[2]:
                        top[0].append(c)
                    elif top[1] is _NOKEY:
                        raise _Slow  # a complex key
                    else:
                        top[0][top[1]] = c
                        top[1] = _NOKEY
                stack.append([c, _NOKEY, t is SS])
            elif t is ME or t is SqE:
                stack.pop()
            elif t is DS:
                docs += 1
                if docs > 1:
                    raise _Slow
            elif ev is None or t is end:
                break
            elif t is yaml.AliasEvent:
                raise _Slow
    except yaml.YAMLError:
        raise _Slow from None
    finally:
        loader.dispose()
    return root


class _Slow(Exception):
    """The fast reader met something it leaves to the general one."""


_NOKEY: Any = object()


def load_text(text: str) -> Any:
    """Parse one YAML (or JSON) document into plain Python values."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError:
            pass  # flow-style YAML, or bad JSON: let the YAML parser say where
    try:
        return _build_fast(text)
    except _Slow:
        return _build(text)


def positions(text: str) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Map every path in the document to the (line, column) of its key or item, 1-based."""
    marks: dict[tuple[Any, ...], tuple[int, int]] = {}
    try:
        _build(text, marks)
    except YamlSyntaxError:
        pass
    return marks


def dump_text(data: Any) -> str:
    """Write plain data as block-style YAML (keys in insertion order)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
