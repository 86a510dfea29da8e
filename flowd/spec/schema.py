"""Reading plain YAML data into the document model, collecting every schema error.

The walker is driven by the model's own type declarations (``msgspec.inspect``), so the model
in :mod:`flowd.spec.model` is the single source of truth for field names and types. It
implements the reference's reading rules that a plain ``msgspec.convert`` cannot express:
lax booleans and numbers, template-or-literal fields, comma-separated lists, short-form params
(§3.1), IO ``options``/``delay_validation`` folding (§2.3), the ``ops:`` shorthand, Kubernetes
container key checks, and did-you-mean suggestions for unknown keys and enum values.

Unlike a decoder it does not stop at the first problem: each bad value is reported (with its
path) and left out, and reading goes on. It never raises for bad input.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import msgspec
from msgspec import inspect as mi

from flowd.spec import model as m
from flowd.spec.diagnostics import Finding, did_you_mean
from flowd.spec.shortcuts import resource_problem
from flowd.spec.types import OBJECT_TYPES, CoercionError, is_template, parse_timedelta

__all__ = ["Reader", "BAD"]

BAD: Any = object()  # a value that failed; never stored

_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")
_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}
_FULL_PARAM_KEYS = frozenset({"value", "ref", "contextOnly", "context_only", "connection", "toInit", "to_init",
                    "toEnv", "to_env"})


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_FAST_ANY = 1  # the field takes any value as is
_FAST_STR = 2  # the field takes a string (or null) as is


def _fast(t: Any) -> int:
    if type(t) is mi.AnyType:
        return _FAST_ANY
    if type(t) is mi.UnionType:
        rest = [x for x in t.types if type(x) is not mi.NoneType]
        if len(rest) == 1 and type(rest[0]) is mi.StrType and rest[0].pattern is None \
                and rest[0].min_length is None and rest[0].max_length is None:
            return _FAST_STR
    return 0


class _StructInfo:
    __slots__ = ("cls", "fields", "aliases", "required", "tag_field", "tag", "encode_names")

    def __init__(self, st: mi.StructType) -> None:
        self.cls = st.cls
        self.fields: dict[str, tuple[str, Any, int]] = {}
        self.aliases: dict[str, str] = {}
        self.required: list[tuple[str, str]] = []
        self.tag_field = st.tag_field
        self.tag = st.tag
        for f in st.fields:
            self.fields[f.encode_name] = (f.name, f.type, _fast(f.type))
            snake = _snake(f.encode_name)
            if snake != f.encode_name:
                self.aliases[snake] = f.encode_name
            if f.required:
                self.required.append((f.encode_name, f.name))
        if st.cls is m.Mount:
            self.aliases.update({"path_from": "from", "path_to": "to"})
        self.encode_names = [k for k in self.fields]


class _UnionInfo:
    """Precomputed facts about a union type (read once per type, not once per value)."""

    __slots__ = ("t", "nullable", "templated", "tagged", "candidates")

    def __init__(self, t: Any) -> None:
        self.t = t  # keeps the type alive, so its id stays unique
        types = t.types
        self.nullable = any(type(x) is mi.NoneType for x in types)
        self.templated = any(type(x) is mi.Metadata and (x.extra or {}).get("tpl") for x in types)
        structs = [x for x in types if type(x) is mi.StructType]
        self.tagged = structs if structs and structs[0].tag_field is not None else None
        self.candidates = [x for x in types if type(x) is not mi.NoneType]


_unions: dict[int, _UnionInfo] = {}
_infos: dict[type, _StructInfo] = {}
_types: dict[Any, Any] = {}


def _info(st: mi.StructType) -> _StructInfo:
    info = _infos.get(st.cls)
    if info is None:
        info = _infos[st.cls] = _StructInfo(st)
    return info


def type_of(cls: Any) -> Any:
    t = _types.get(cls)
    if t is None:
        t = _types[cls] = mi.type_info(cls)
    return t


def _describe(t: Any) -> str:
    tt = type(t)
    if tt is mi.Metadata:
        extra = t.extra or {}
        if extra.get("tpl"):
            return "a template string (`{{ ... }}`)"
        if extra.get("lax") == "bool":
            return "a boolean"
        if extra.get("lax") == "float":
            return "a number"
        if extra.get("lax") == "posint":
            return "a positive integer"
        if extra.get("split"):
            return "a list of strings"
        if extra.get("keys"):
            return "a mapping"
        if extra.get("name"):
            return "a name"
        if extra.get("when"):
            return "a datetime"
        return _describe(t.type)
    names: dict[Any, str] = {
        mi.IntType: "an integer", mi.FloatType: "a number", mi.BoolType: "a boolean",
        mi.StrType: "a string", mi.ListType: "a list", mi.DictType: "a mapping",
        mi.StructType: "a mapping", mi.NoneType: "null", mi.AnyType: "any value",
    }
    if tt is mi.LiteralType:
        return "one of " + ", ".join(f"`{x}`" for x in t.values)
    return names.get(tt, "a value")


def _shape_ok(t: Any, v: Any) -> bool:
    """Does the Python shape of ``v`` fit the member type ``t`` (for choosing which error to show)?"""
    tt = type(t)
    if tt is mi.Metadata:
        if (t.extra or {}).get("tpl"):
            return False
        if (t.extra or {}).get("split"):
            return isinstance(v, (list, str))
        return _shape_ok(t.type, v)
    if tt in (mi.StructType, mi.DictType):
        return isinstance(v, dict)
    if tt is mi.ListType:
        return isinstance(v, list)
    if tt in (mi.StrType, mi.LiteralType):
        return isinstance(v, str)
    if tt in (mi.IntType, mi.FloatType):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tt is mi.BoolType:
        return isinstance(v, bool)
    return False


class Reader:
    """Reads one document (``source``) into model Structs, appending :class:`Finding`s.

    ``where`` maps ``id(struct)`` to ``(source, path)`` for every Struct built, so later phases
    can point at the YAML a value came from.
    """

    def __init__(self, source: str, findings: list[Finding], where: dict[int, tuple[str, tuple[Any, ...]]],
                 shorthand: set[int] | None = None, present: dict[int, Any] | None = None) -> None:
        self.source = source
        # id(PolyaxonfileSpec) -> the names of the fields the YAML set (saves scanning 48 fields)
        self.present = present if present is not None else {}
        self.findings = findings
        self.where = where
        # ids of the DagRuntimes written with the `ops:` shorthand (their ops live at `ops[i]`)
        self.shorthand = shorthand if shorthand is not None else set()

    # -- reporting --------------------------------------------------------------------------

    def error(self, path: tuple[Any, ...], message: str) -> Any:
        self.findings.append(Finding("error", self.source, path, message))
        return BAD

    def warning(self, path: tuple[Any, ...], message: str) -> None:
        self.findings.append(Finding("warning", self.source, path, message))

    # -- entry point --------------------------------------------------------------------------

    def read_root(self, data: Any) -> m.PolyaxonfileSpec | None:
        if not isinstance(data, dict):
            got = "an empty document" if data is None else f"a {type(data).__name__}"
            self.error((), f"a Polyaxonfile must be a mapping at the top level, got {got}")
            return None
        kind = data.get("kind")
        if kind is not None and kind not in ("component", "operation"):
            hint = did_you_mean(str(kind), ["component", "operation"])
            self.error(("kind",), f"kind `{kind}` is not a supported value (expected `component` or `operation`){hint}")
            return None
        st = type_of(m.PolyaxonfileSpec)
        result = self._struct(st, data, (), root=True, strict_root=kind is not None)
        return None if result is BAD else result

    def read(self, data: Any, cls: Any, path: tuple[Any, ...]) -> Any:
        return self._conv(type_of(cls), data, path)

    # -- conversion -----------------------------------------------------------------------------

    def _conv(self, t: Any, v: Any, path: tuple[Any, ...]) -> Any:
        tt = type(t)
        if tt is mi.AnyType:
            return v
        if tt is mi.UnionType:
            return self._union(t, v, path)
        if tt is mi.StructType:
            return self._struct(t, v, path)
        if tt is mi.Metadata:
            return self._meta(t, v, path)
        if tt is mi.StrType:
            if isinstance(v, str):
                return v
            return self.error(path, f"expected a string, got {_show(v)}")
        if tt is mi.IntType:
            # strict ints; the reference's positive-int fields (numRuns...) also read booleans
            if isinstance(v, int) and (not isinstance(v, bool) or t.gt is not None):
                if t.gt is not None and v <= t.gt:
                    return self.error(path, f"must be greater than {t.gt}, got {v}")
                return int(v)
            return self.error(path, f"expected an integer, got {_show(v)}")
        if tt is mi.FloatType:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return v
            return self.error(path, f"expected a number, got {_show(v)}")
        if tt is mi.BoolType:
            if isinstance(v, bool):
                return v
            return self.error(path, f"expected a boolean, got {_show(v)}")
        if tt is mi.LiteralType:
            if v in t.values and not isinstance(v, bool):
                return v
            hint = did_you_mean(str(v), [str(x) for x in t.values]) if isinstance(v, str) else ""
            choices = ", ".join(f"`{x}`" for x in t.values)
            return self.error(path, f"`{v}` is not a valid value; expected one of {choices}{hint}")
        if tt is mi.ListType:
            if not isinstance(v, list):
                return self.error(path, f"expected a list, got {_show(v)}")
            item_t = t.item_type
            if type(item_t) is mi.AnyType:
                return v
            out = []
            for i, item in enumerate(v):
                r = self._conv(item_t, item, (*path, i))
                if r is not BAD:
                    out.append(r)
            return out
        if tt is mi.DictType:
            if not isinstance(v, dict):
                return self.error(path, f"expected a mapping, got {_show(v)}")
            vt = t.value_type
            if type(vt) is mi.AnyType:
                bad = [k for k in v if not isinstance(k, str)]
                if bad:
                    return {str(k): x for k, x in v.items()}
                return v
            out_d = {}
            for k, item in v.items():
                r = self._conv(vt, item, (*path, k))
                if r is not BAD:
                    out_d[str(k)] = r
            return out_d
        if tt is mi.NoneType:
            if v is None:
                return None
            return self.error(path, f"expected null, got {_show(v)}")
        return self.error(path, f"unsupported value {_show(v)}")  # pragma: no cover

    def _meta(self, t: Any, v: Any, path: tuple[Any, ...]) -> Any:
        extra = t.extra or {}
        if extra.get("tpl"):
            if is_template(v):
                return v
            return self.error(path, f"expected a template string (`{{{{ ... }}}}`), got {_show(v)}")
        lax = extra.get("lax")
        if lax == "bool":
            if isinstance(v, bool):
                return v
            if isinstance(v, (int, float)) and v in (0, 1):  # pydantic's lax bool: 0, 1, 0.0, 1.0
                return bool(v)
            if isinstance(v, str):
                low = v.strip().lower()
                if low in _TRUE:
                    return True
                if low in _FALSE:
                    return False
            return self.error(path, f"expected a boolean, got {_show(v)}")
        if lax == "float":
            if isinstance(v, (int, float)):  # bools too (pydantic's lax float)
                return v
            if isinstance(v, str):
                try:
                    return float(v)
                except ValueError:
                    pass
            return self.error(path, f"expected a number, got {_show(v)}")
        if lax == "posint":
            n: Any = None
            if isinstance(v, int):  # bools too (lax int: true is 1)
                n = v
            elif isinstance(v, float) and v.is_integer():
                n = int(v)
            elif isinstance(v, str):
                try:
                    f = float(v)
                    n = int(f) if f.is_integer() else None
                except ValueError:
                    n = None
            if n is None:
                return self.error(path, f"expected a positive integer, got {_show(v)}")
            if n <= 0:
                return self.error(path, f"must be greater than 0, got {n}")
            return n
        if extra.get("split"):
            if isinstance(v, str):
                return [p.strip() for p in v.split(",") if p.strip()]
            return self._conv(t.type, v, path)
        if extra.get("name"):
            if isinstance(v, str) and _NAME.match(v):
                return v
            if isinstance(v, str):
                return self.error(path, f"invalid name {v!r}: use letters, digits, `-` and `_` only")
            return self.error(path, f"expected a name, got {_show(v)}")
        if extra.get("when"):
            if v is None or is_template(v) or isinstance(v, (_dt.date, _dt.datetime)) \
                    or (isinstance(v, (int, float)) and not isinstance(v, bool)):
                return v  # numbers are epoch seconds
            if isinstance(v, str):
                try:
                    float(v)  # epoch seconds
                    return v
                except ValueError:
                    pass
                try:
                    _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                    return v
                except ValueError:
                    pass
            return self.error(path, f"expected an ISO datetime, got {_show(v)}")
        if extra.get("number"):
            if v is None:
                return None
            num: Any = v
            if isinstance(v, str):
                try:
                    num = float(v)
                except ValueError:
                    num = BAD
            if num is BAD or not isinstance(num, (int, float)):
                return self.error(path, f"`version` should be a valid number, got {_show(v)}")
            if float(num) not in (1.0, 1.1):
                self.warning(path, f"version {v} is not supported (flowd reads version 1 and 1.1); reading it as 1.1")
            return num
        if extra.get("runtime"):
            if v is None:
                return None
            if isinstance(v, dict) and "kind" not in v:
                # a partial runtime: checked when it is patched onto the referenced component's run
                return dict(v)
            return self._conv(type_of(m.Runtime), v, path)
        if extra.get("duration"):
            if is_template(v):
                return v
            try:
                parse_timedelta(v)
            except CoercionError:
                return self.error(path, f"expected a duration (seconds, `PT1H` or `HH:MM:SS`), got {_show(v)}")
            return v
        if extra.get("cmd"):
            if v is None:
                return None
            lines = v if isinstance(v, list) else [v]
            if not lines or not all(isinstance(x, str) for x in lines):
                return self.error(path, f"expected a command string or a list of strings, got {_show(v)}")
            if not lines or not all(x.strip() for x in lines):
                return self.error(path, "`cmd` must not be blank (nor contain blank lines)")
            return v
        obj = extra.get("object")
        if obj:
            if v is None or is_template(v):
                return v
            try:
                OBJECT_TYPES[obj](v, False)
            except CoercionError as exc:
                return self.error(path, str(exc))
            return v
        if extra.get("resources"):
            return self._resources(v, path)
        keys = extra.get("keys")
        if keys:
            if not isinstance(v, dict):
                return self.error(path, f"expected a mapping, got {_show(v)}")
            allowed = m.K8S_KEYSETS[keys]
            for k in v:
                if k not in allowed:
                    hint = did_you_mean(str(k), m.K8S_KEYS[keys])
                    self.error((*path, k), f"unknown field `{k}` in a {_K8S_LABEL[keys]}{hint}")
            if keys == "volume" and v.get("name") is None:
                return self.error(path, "a volume requires a `name`")
            return v
        if extra.get("nonnull"):
            if not isinstance(v, dict):
                return self.error(path, f"expected a mapping, got {_show(v)}")
            for k, x in v.items():
                if x is None:
                    self.error((*path, k), "expected a value, got null")
            return {str(k): x for k, x in v.items()}
        return self._conv(t.type, v, path)

    def _resources(self, v: Any, path: tuple[Any, ...]) -> Any:
        """§1.4 ``resources`` shortcut: cpu/memory/gpu or extended names, a value or ``"low..high"``."""
        if not isinstance(v, dict):
            return self.error(path, f"expected a mapping, got {_show(v)}")
        ok = True
        for key, value in v.items():
            problem = resource_problem(str(key), value)
            if problem:
                self.error((*path, key), problem)
                ok = False
        return v if ok else BAD

    def _union(self, t: Any, v: Any, path: tuple[Any, ...]) -> Any:
        info = _unions.get(id(t))
        if info is None:
            info = _unions[id(t)] = _UnionInfo(t)
        if v is None:
            if info.nullable:
                return None
            return self.error(path, "must not be null")
        if info.templated and type(v) is str and ("{{" in v or "{%" in v):
            return v
        if info.tagged is not None and type(v) is dict:
            return self._tagged(info.tagged, v, path)
        candidates = info.candidates
        if len(candidates) == 1:
            return self._conv(candidates[0], v, path)
        saved = self.findings
        best: list[Finding] | None = None
        for member in candidates:
            if type(member) is mi.Metadata and (member.extra or {}).get("tpl"):
                continue
            trial: list[Finding] = []
            self.findings = trial
            try:
                r = self._conv(member, v, path)
            finally:
                self.findings = saved
            if r is not BAD:
                # a member accepted the value; keep what it reported (e.g. unknown keys)
                saved.extend(trial)
                return r
            if best is None and _shape_ok(member, v):
                best = trial
        if best is not None:
            saved.extend(best)
            return BAD
        expected = " or ".join(dict.fromkeys(_describe(x) for x in candidates))
        return self.error(path, f"expected {expected}, got {_show(v)}")

    def _tagged(self, structs: list[Any], v: dict[str, Any], path: tuple[Any, ...]) -> Any:
        tag_field = structs[0].tag_field
        tag = v.get(tag_field)
        by_tag = {s.tag: s for s in structs}
        if tag is not None and not isinstance(tag, str):
            return self.error((*path, tag_field), f"`{tag_field}` must be a string (one of {', '.join(by_tag)}), "
                                                  f"got {_show(tag)}")
        if tag is None:
            return self.error((*path, tag_field), f"`{tag_field}` is required (one of {', '.join(by_tag)})")
        st = by_tag.get(tag)
        if st is None:
            hint = did_you_mean(str(tag), list(by_tag))
            runtime = structs[0].cls in (m.JobRuntime, m.DagRuntime) or "Runtime" in structs[0].cls.__name__
            label = "run.kind" if runtime else tag_field
            if label == "run.kind":
                msg = f"Unsupported run.kind: '{tag}'; expected one of {', '.join(by_tag)}{hint}"
            elif structs[0].cls.__name__.startswith("Hp"):
                msg = f"`{tag}` is not a valid hyperparameter kind; expected one of {', '.join(by_tag)}{hint}"
            else:
                msg = f"`{tag}` is not a valid {tag_field}; expected one of {', '.join(by_tag)}{hint}"
            return self.error((*path, tag_field), msg)
        return self._struct(st, v, path)

    def _struct(self, st: Any, v: Any, path: tuple[Any, ...], *, root: bool = False, strict_root: bool = False) -> Any:
        cls = st.cls
        hook = _HOOKS.get(cls)
        if hook is not None:
            v = hook(self, v, path)
            if v is BAD:
                return BAD
            if isinstance(v, msgspec.Struct):
                return v
        if not isinstance(v, dict):
            return self.error(path, f"expected a mapping, got {_show(v)}")
        info = _info(st)
        fields = info.fields
        kwargs: dict[str, Any] = {}
        tag_field = info.tag_field
        for key, val in v.items():
            if key == tag_field:
                continue
            spec = fields.get(key)
            if spec is not None and spec[2] and (spec[2] == _FAST_ANY or val is None or type(val) is str):
                kwargs[spec[0]] = val
                continue
            if spec is None:
                alias = info.aliases.get(key) if not strict_root else None
                if alias is not None and alias not in v:
                    spec = fields[alias]
                    key_used = key
                else:
                    self._unknown(info, key, path, root=root, strict_root=strict_root)
                    continue
            else:
                key_used = key
            r = self._conv(spec[1], val, (*path, key_used))
            if r is not BAD:
                kwargs[spec[0]] = r
        ok = True
        for enc, name in info.required:
            if kwargs.get(name, 0) is None:
                self.error((*path, enc), f"`{enc}` is required and must not be null")
                ok = False
                continue
            if name not in kwargs:
                if enc not in v and info.aliases.get(_snake(enc)) not in v:
                    self.error(path if not path or enc not in v else (*path, enc), f"`{enc}` is required")
                ok = False
        if not ok:
            return BAD
        obj = cls(**kwargs)
        self.where[id(obj)] = (self.source, path)
        if cls is m.PolyaxonfileSpec:
            self.present[id(obj)] = kwargs.keys()
        return obj

    def _unknown(self, info: _StructInfo, key: Any, path: tuple[Any, ...], *, root: bool, strict_root: bool) -> None:
        names = info.encode_names
        hint = did_you_mean(str(key), names)
        if info.cls is m.PolyaxonfileSpec and key in _SPEC_HINTS:
            hint = _SPEC_HINTS[key]
        if root and strict_root:
            self.error((*path, key), f"Unexpected section `{key}`{hint}")
        else:
            where = _SECTION_LABEL.get(info.cls, "")
            self.error((*path, key), f"unknown field `{key}`{where}{hint}")


_K8S_LABEL = {"container": "container", "toleration": "toleration", "affinity": "affinity",
              "securityContext": "securityContext", "volume": "volume", "hostAlias": "hostAliases entry"}

_SPEC_HINTS = {
    "ops": " (`ops:` and `components:` go together at the top of a component: the DAG shorthand)",
    "components": " (`components:` goes with `ops:` at the top of a component, or under `run:` with "
                  "`operations:`)",
    "operations": " (`operations` belongs under `run: {kind: dag, operations: [...]}`; or write `ops:`)",
    "image": " (the image goes in the container: `container: {image: ...}` or `run.container.image`)",
    "command": " (the command goes in the container: `container: {command: [...]}`, or use `cmd:`)",
    "args": " (the args go in the container: `container: {args: [...]}`)",
    "depends_on": " (did you mean `dependencies`?)",
    "dependsOn": " (did you mean `dependencies`?)",
}

_SECTION_LABEL = {
    m.FullParam: " in a param (write build, hook and tuner params in full form: `{value: ...}`)",
    m.JoinParam: " in a join param (write join params in full form: `{value: outputs.x}`)",
    m.Environment: " in `environment`",
    m.Termination: " in `termination`",
    m.Cache: " in `cache`",
    m.Plugins: " in `plugins`",
    m.IO: " in an input/output",
    m.Param: " in a param",
    m.Init: " in an init step",
}


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# --- per-struct reading rules ----------------------------------------------------------------


def _param_hook(r: Reader, v: Any, path: tuple[Any, ...]) -> Any:
    # POLYFLOW §3.1: full form iff a mapping with one of the param keys, or the empty mapping
    if isinstance(v, dict) and (not v or not _FULL_PARAM_KEYS.isdisjoint(v)):
        if v.get("ref") is not None and not isinstance(v.get("value"), str):
            return r.error((*path, "value"), "Value must be of type string when a ref is provided")
        return v
    param = m.Param(value=v)
    r.where[id(param)] = (r.source, path)
    return param


def _io_hook(r: Reader, v: Any, path: tuple[Any, ...]) -> Any:
    if not isinstance(v, dict):
        return v
    if "value" in v and "isOptional" in v and v["isOptional"] is None:
        # §2.3: only an absent `isOptional` is set to true by a default value; an explicit null is not
        v = dict(v)
        v["isOptional"] = False
    if "options" in v or "delay_validation" in v:
        v = dict(v)
        validation = dict(v.get("validation") or {})
        if "options" in v:
            validation.setdefault("options", v.pop("options"))
        if "delay_validation" in v:
            # §2.3: the snake_case spelling moves into validation.delay ([FLOWD] honoured too)
            validation.setdefault("delay", v.pop("delay_validation"))
        v["validation"] = validation
    return v


def _spec_hook(r: Reader, v: Any, path: tuple[Any, ...]) -> Any:
    # flowd extension: a component with top-level `ops:` (and `components:`) is a DAG
    if not isinstance(v, dict) or "ops" not in v:
        return v
    if "run" in v:
        r.error((*path, "ops"), "`ops:` (the DAG shorthand) cannot be combined with `run:`; use `run.operations`")
        return BAD
    rest = {k: x for k, x in v.items() if k not in ("ops", "components")}
    kind = rest.get("kind")
    if kind is not None and kind not in ("component", "operation"):
        return v
    # this hook is part of the reader, kept outside the class only to sit next to its registration
    spec = r._struct(  # noqa: SLF001
        type_of(m.PolyaxonfileSpec), rest, path, root=not path, strict_root=not path and kind is not None)
    ops = r._conv(type_of(list[m.PolyaxonfileSpec] | None), v.get("ops"), (*path, "ops"))  # noqa: SLF001
    comps = r._conv(type_of(list[m.PolyaxonfileSpec] | None), v.get("components"), (*path, "components"))  # noqa: SLF001
    if spec is BAD or ops is BAD or comps is BAD:
        return BAD
    dag = m.DagRuntime(operations=ops, components=comps)
    r.where[id(dag)] = (r.source, path)
    out = msgspec.structs.replace(spec, run=dag)
    r.where[id(out)] = (r.source, path)
    r.shorthand.add(id(dag))
    return out


def _full_param_hook(r: Reader, v: Any, path: tuple[Any, ...]) -> Any:
    if not isinstance(v, dict):
        return r.error(path, f"expected a param in full form (`{{value: {_show(v)}}}`): build, hook, tuner and "
                             "join params have no short form")
    return v


def _init_hook(r: Reader, v: Any, path: tuple[Any, ...]) -> Any:
    if isinstance(v, dict) and isinstance(v.get("git"), dict) and not v["git"].get("url") and not v.get("connection"):
        return r.error((*path, "git"), "a `git` init step without a `url` requires a `connection`")
    return v


_HOOKS: dict[type, Any] = {
    m.Init: _init_hook,
    m.FullParam: _full_param_hook,
    m.JoinParam: _full_param_hook,
    m.Param: _param_hook,
    m.IO: _io_hook,
    m.PolyaxonfileSpec: _spec_hook,
}

