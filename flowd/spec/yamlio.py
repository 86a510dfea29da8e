"""YAML reading and writing for Polyaxonfiles, fast and with positions on demand.

PyYAML's constructor is pure Python and builds a node tree first; for a 10,000-op file that
alone takes seconds. Here libyaml's event stream (``CSafeLoader``'s C parser) is turned straight
into dicts/lists/scalars, with PyYAML's own implicit-type rules for plain scalars, cached per
distinct text. JSON input goes through msgspec.

Positions cost nothing on the happy path: :func:`positions` re-reads the text only when a
diagnostic needs a ``line:column``, and maps every path (``("run", "operations", 2)``) to the
mark of its key (mappings) or item (sequences).

Bounded by construction (docs/limits.md): an alias ``*a`` shares the anchored object instead of
copying it, so loading is cheap, but whatever walks the result later pays for every alias as a
full copy. While the events stream in, :func:`_build` keeps the size each anchored node *would*
have written out (scalar text + 2 per node) and adds it at each alias; the document is refused
with :class:`YamlLimitError` as soon as the alias count, that expanded size or the nesting depth
passes its limit, long before anything big exists. A recursive alias (``&a [*a]``) is refused.

Nothing here knows about Polyaxon; it must not raise anything but :class:`YamlSyntaxError`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from flowd.spec.limits import LimitError, Limits, over

__all__ = ["YamlSyntaxError", "YamlLimitError", "load_text", "positions", "dump_text"]

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


class YamlLimitError(YamlSyntaxError):
    """The document is over a limit (``error`` says which, by how much, and the setting)."""

    def __init__(self, error: LimitError, line: int | None = None, column: int | None = None) -> None:
        super().__init__(str(error), line, column)
        self.error = error


def _refuse(error: LimitError, ev: Any) -> YamlLimitError:
    mark = ev.start_mark
    return YamlLimitError(error, mark.line + 1, mark.column + 1)


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
    __slots__ = ("container", "key", "has_key", "anchor", "merges", "size")

    def __init__(self, container: Any, anchor: str | None) -> None:
        self.container = container
        self.key: Any = None
        self.has_key = False
        self.anchor = anchor
        self.merges: list[Any] | None = None
        self.size = 2  # the expanded size of this node so far (see _build)


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


def _build(text: str, marks: dict[tuple[Any, ...], tuple[int, int]] | None = None,
           limits: Limits | None = None) -> Any:
    """Turn the event stream into Python objects; optionally record a mark per path.

    With ``limits``, count as the events come: alias uses, the expanded size (every node costs
    2 plus its scalar text, an alias costs the expanded size of its anchor) and the depth."""
    anchors: dict[str, Any] = {}
    # expanded size of each anchored node, known once it is closed (an alias to an open one
    # would make a recursive structure)
    anchor_size: dict[str, int] = {}
    aliases = 0
    expanded = 0
    max_aliases = limits.max_yaml_aliases if limits is not None else None
    max_expanded = limits.max_yaml_expanded_bytes if limits is not None else None
    max_depth = limits.max_yaml_depth if limits is not None else None
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
        if max_depth is not None and len(stack) >= max_depth:
            raise _refuse(over("the YAML nesting depth is", len(stack) + 1, "levels", setting="max_yaml_depth",
                               limit=max_depth, at_least=True), ev)
        stack.append(_Frame(container, ev.anchor))
        path.append(key)
        if ev.anchor:
            anchors[ev.anchor] = container
            anchor_size.pop(ev.anchor, None)

    def grow(size: int, ev: Any) -> None:
        nonlocal expanded
        expanded += size
        if stack:
            stack[-1].size += size
        if max_expanded is not None and expanded > max_expanded:
            raise _refuse(over("with its aliases written out, the YAML document is", expanded, "bytes",
                               setting="max_yaml_expanded_bytes", limit=max_expanded, at_least=True), ev)

    try:
        for ev in _events(text):
            t = type(ev)
            if t is SE:
                v = _scalar(ev)
                size = len(ev.value) + 2
                if ev.anchor:
                    anchors[ev.anchor] = v
                    anchor_size[ev.anchor] = size
                add(v, ev)
                grow(size, ev)
            elif t is MS:
                grow(2, ev)
                open_({}, ev)
            elif t is SS:
                grow(2, ev)
                open_([], ev)
            elif t is ME or t is SqE:
                frame = stack.pop()
                path.pop()
                if frame.anchor:
                    anchor_size[frame.anchor] = frame.size
                if stack:
                    stack[-1].size += frame.size - 2  # its own 2 were added when it opened
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
                if ev.anchor not in anchor_size:
                    m = ev.start_mark
                    raise YamlSyntaxError(f"alias *{ev.anchor} refers to a node that contains it (a recursive "
                                          "structure)", m.line + 1, m.column + 1)
                aliases += 1
                if max_aliases is not None and aliases > max_aliases:
                    raise _refuse(over("the YAML document uses", aliases, "aliases", setting="max_yaml_aliases",
                                       limit=max_aliases, at_least=True), ev)
                add(anchors[ev.anchor], ev)
                grow(anchor_size[ev.anchor], ev)
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


def _build_fast(text: str, max_depth: int | None = None) -> Any:
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
                if max_depth is not None and len(stack) >= max_depth:
                    raise _refuse(over("the YAML nesting depth is", len(stack) + 1, "levels",
                                       setting="max_yaml_depth", limit=max_depth, at_least=True), ev)
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


def load_text(text: str, limits: Limits | None = None) -> Any:
    """Parse one YAML (or JSON) document into plain Python values.

    With ``limits``, refuse (:class:`YamlLimitError`) a document over ``max_yaml_aliases``,
    ``max_yaml_expanded_bytes`` or ``max_yaml_depth`` before building it further."""
    stripped = text.lstrip()
    max_depth = limits.max_yaml_depth if limits is not None else None
    if stripped.startswith("{"):
        try:
            data = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            pass  # flow-style YAML, bad JSON or too deep: let the YAML parser say where
        else:
            # JSON has no aliases; its depth is checked on the result, or by the YAML parser
            # (which says where) when it is too deep
            if max_depth is None or _depth_within(data, max_depth):
                return data
    try:
        return _build_fast(text, max_depth)
    except _Slow:
        return _build(text, limits=limits)


def _depth_within(data: Any, limit: int) -> bool:
    """Is ``data`` nested at most ``limit`` levels deep? Level by level (no recursion limit,
    no per-node tuples: ~10 ms for a 10,000-op pipeline)."""
    level = [data] if type(data) is dict or type(data) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return False
        below: list[Any] = []
        for value in level:
            items = value.values() if type(value) is dict else value
            below += [v for v in items if type(v) is dict or type(v) is list]
        level = below
    return True


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
