"""IO types: parsing a type name, coercing a value to it, and the ``validation`` block.

POLYFLOW §2.2 (type table and the "loadable" JSON-decoding rule), §2.4 (validation block),
§2.7 (type compatibility of references). Public entry point: :func:`coerce`, which the engine
also calls at run time on resolved references. Pure functions; no I/O.

Deliberate differences from the reference (POLYFLOW **[FLOWD]**): ``datetime`` is a real
timestamp type (``reference_compat=True`` reproduces the oracle's date-only quirk); ``auth``
is a ``user:password`` string (the reference validates no value); ``float``/``metric``
references are compatible.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import uuid as _uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "CoercionError",
    "coerce",
    "coerce_value",
    "is_template",
    "known_type",
    "type_names",
    "refs_compatible",
    "TEXT_TYPES",
    "EXACT_TYPES",
]


class CoercionError(ValueError):
    """A value does not validate against an IO declaration."""


def is_template(value: Any) -> bool:
    """A string that contains a ``{{ ... }}`` (or ``{% %}``) template anywhere."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def _fail(expected: str, value: Any) -> CoercionError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CoercionError(f"expected {expected}, got {shown}")


def _int(v: Any, compat: bool) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    raise _fail("an integer", v)


def _float(v: Any, compat: bool) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    raise _fail("a number", v)


def _bool(v: Any, compat: bool) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _fail("a boolean (true/false, yes/no, on/off, 1/0)", v)


def _str(v: Any, compat: bool) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def _any(v: Any, compat: bool) -> Any:
    return v


def _dict(v: Any, compat: bool) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise _fail("a mapping", v)


def _list(v: Any, compat: bool) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return list(v)
    raise _fail("a list", v)


def _path(v: Any, compat: bool) -> str:
    if isinstance(v, str):
        return v
    raise _fail("a path string", v)


_IMAGE = re.compile(r"^\S+$")  # the reference only rejects spaces (and non-strings)


def _image(v: Any, compat: bool) -> str:
    if isinstance(v, str) and _IMAGE.match(v):
        return v
    raise _fail("a container image reference (e.g. `busybox:1.36`)", v)


_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://\S+|[^\s:/@]+:[^\s@]+@\S+)$")


def _uri(v: Any, compat: bool) -> str:
    if isinstance(v, str) and _URI.match(v):
        return v
    raise _fail("a URI with a scheme (`scheme://...`)", v)


def _prefixed(prefix: str, label: str) -> Callable[[Any, bool], str]:
    pat = re.compile(rf"^{prefix}[^/\s]+(/.*)?$")

    def check(v: Any, compat: bool) -> str:
        if isinstance(v, str) and pat.match(v):
            return v
        raise _fail(label, v)

    return check


_WASB = re.compile(r"^wasbs?://[^@/\s]+@[^/\s]+\.blob\.core\.windows\.net(/.*)?$")


def _wasb(v: Any, compat: bool) -> str:
    if isinstance(v, str) and _WASB.match(v):
        return v
    raise _fail("a `wasb[s]://container@account.blob.core.windows.net/path` URL", v)


def _date(v: Any, compat: bool) -> _dt.date:
    if isinstance(v, _dt.datetime):
        if v.time() == _dt.time(0):
            return v.date()
        raise _fail("a date (a datetime with a zero time part is accepted)", v)
    if isinstance(v, _dt.date):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _dt.datetime.fromtimestamp(v, tz=_dt.UTC).date()
    if isinstance(v, str):
        try:
            return _dt.date.fromisoformat(v)
        except ValueError:
            pass
        try:
            d = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise _fail("an ISO date (YYYY-MM-DD)", v) from None
        if d.time() == _dt.time(0):
            return d.date()
    raise _fail("an ISO date (YYYY-MM-DD)", v)


def _datetime(v: Any, compat: bool) -> Any:
    if compat:  # POLYFLOW §2.2 quirk: the reference validates datetime exactly like date
        return _date(v, compat)
    if isinstance(v, _dt.datetime):
        return v
    if isinstance(v, _dt.date):
        return _dt.datetime(v.year, v.month, v.day)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _dt.datetime.fromtimestamp(v, tz=_dt.UTC)
    if isinstance(v, str):
        try:
            return _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise _fail("an ISO datetime (YYYY-MM-DDTHH:MM:SS)", v)


_ISO_DUR = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_CLOCK = re.compile(r"^(?:(?P<d>\d+)[ d]\s*)?(?P<h>\d+):(?P<m>\d\d)(?::(?P<s>\d\d(?:\.\d+)?))?$")


def parse_timedelta(v: Any) -> _dt.timedelta:
    """Seconds, ISO-8601 durations (``PT10S``) or ``[D ]HH:MM[:SS]`` (POLYFLOW §2.2, §8.1)."""
    if isinstance(v, _dt.timedelta):
        return v
    if isinstance(v, (int, float)):  # bools too, as the reference reads them
        return _dt.timedelta(seconds=v)
    if isinstance(v, str):
        for pat in (_ISO_DUR, _CLOCK):
            m = pat.match(v.strip())
            if m and any(m.groupdict().values()):
                g = {k: float(x) if x else 0.0 for k, x in m.groupdict().items()}
                return _dt.timedelta(days=g["d"], hours=g["h"], minutes=g["m"], seconds=g["s"])
    raise _fail("a duration (seconds, `PT10S` or `HH:MM:SS`)", v)


def _timedelta(v: Any, compat: bool) -> _dt.timedelta:
    return parse_timedelta(v)


def _uuid_t(v: Any, compat: bool) -> str:
    if isinstance(v, str):
        try:
            return _uuid.UUID(v).hex
        except ValueError:
            pass
    raise _fail("a UUID", v)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(v: Any, compat: bool) -> str:
    if isinstance(v, str) and _EMAIL.match(v):
        return v
    raise _fail("an email address", v)


def _auth(v: Any, compat: bool) -> str:
    # [FLOWD] extension (POLYFLOW §11 item 12): `user:password`
    if isinstance(v, str) and ":" in v:
        return v
    raise _fail("a `user:password` string", v)


_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "bool": (bool, "a boolean"),
    "list": (list, "a list"),
    "dict": (dict, "a mapping"),
    "strs": (list, "a list of strings"),
    "str|list": ((str, list), "a string or a list"),
    "paths": (list, "a list of paths (strings or `[from, to]` lists)"),
    "dict|list": ((dict, list), "a mapping or a list"),
}


def _obj(label: str, fields: dict[str, str], required: frozenset[str] = frozenset()) -> Callable[[Any, bool], dict[str, Any]]:
    """An object type (``git``, ``dockerfile``...): known keys (camelCase or snake_case) whose
    values have simple types; templates are accepted anywhere (rendered at run time)."""
    allowed = dict(fields)
    for key in list(fields):
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        allowed.setdefault(snake, fields[key])

    def check(v: Any, compat: bool) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise _fail(f"a {label} object", v)
        for key, value in v.items():
            kind = allowed.get(key)
            if kind is None:
                raise CoercionError(f"unknown field `{key}` in a {label} object (fields: {', '.join(fields)})")
            if value is None or is_template(value) or kind == "any":
                continue
            types, text = _KINDS[kind]
            ok = isinstance(value, types) and not (kind == "int" and isinstance(value, bool))
            if ok and kind == "strs":
                ok = all(isinstance(x, str) for x in value)
            if ok and kind == "paths":
                ok = all(isinstance(x, (str, list)) for x in value)
            if not ok:
                raise CoercionError(f"`{key}` of a {label} object must be {text}, got {value!r}")
        missing = [k for k in sorted(required) if v.get(k) is None]
        if missing:
            raise CoercionError(f"a {label} object requires `{missing[0]}`")
        return v

    return check


_GIT = _obj("git", {"url": "str", "revision": "str", "flags": "strs"})
_ARTIFACTS = _obj("artifacts", {"files": "paths", "dirs": "paths", "workers": "int"})
_DOCKERFILE = _obj(
    "dockerfile",
    {"image": "str", "env": "dict|list", "path": "list", "copy": "list", "postRunCopy": "list", "run": "strs",
     "langEnv": "str", "uid": "int", "gid": "int", "username": "str", "filename": "str", "workdir": "str",
     "workdirPath": "str", "shell": "str"},
    frozenset({"image"}),
)
_FILE = _obj("file", {"content": "str", "kind": "str", "filename": "str", "chmod": "str"}, frozenset({"content"}))
_TENSORBOARD = _obj("tensorboard", {"port": "int", "uuids": "str|list", "useNames": "bool", "pathPrefix": "str",
                                    "plugins": "str|list"})
_EVENT = _obj("event", {"name": "str", "kind": "str"}, frozenset({"name", "kind"}))
OBJECT_TYPES: dict[str, Callable[[Any, bool], dict[str, Any]]] = {
    "git": _GIT, "artifacts": _ARTIFACTS, "dockerfile": _DOCKERFILE, "file": _FILE, "tensorboard": _TENSORBOARD,
    "event": _EVENT,
}


# name -> (validator, loadable)
_TYPES: dict[str, tuple[Callable[[Any, bool], Any], bool]] = {
    "int": (_int, True),
    "float": (_float, True),
    "bool": (_bool, False),
    "str": (_str, False),
    "any": (_any, False),
    "Any": (_any, False),
    "dict": (_dict, True),
    "Dict": (_dict, True),
    "metadata": (_dict, True),
    "list": (_list, True),
    "List": (_list, True),
    "metric": (_float, True),
    "path": (_path, False),
    "image": (_image, False),
    "uri": (_uri, False),
    "s3": (_prefixed("s3://", "an `s3://bucket[/key]` URL"), False),
    "gcs": (_prefixed("gs://", "a `gs://bucket[/blob]` URL"), False),
    "wasb": (_wasb, False),
    "date": (_date, False),
    "datetime": (_datetime, False),
    "timedelta": (_timedelta, False),
    "uuid": (_uuid_t, False),
    "email": (_email, False),
    "auth": (_auth, False),
    "git": (_GIT, True),
    "artifacts": (_ARTIFACTS, True),
    "dockerfile": (_DOCKERFILE, True),
    "file": (_FILE, True),
    "tensorboard": (_TENSORBOARD, True),
    "event": (_EVENT, True),
}

# IO types whose default values are kept as text (POLYFLOW §3.5, 2.18 exceptions)
TEXT_TYPES = frozenset({"str", "path", "image", "uuid"})


def type_names() -> list[str]:
    return sorted(_TYPES)


class _Type:
    __slots__ = ("name", "check", "loadable")

    def __init__(self, name: str, check: Callable[[Any, bool], Any], loadable: bool) -> None:
        self.name = name
        self.check = check
        self.loadable = loadable


_parsed: dict[str, _Type | None] = {}


def _split_args(inner: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _parse_type(name: str) -> _Type | None:
    hit = _parsed.get(name, _parsed)
    if hit is not _parsed:
        return hit  # type: ignore[return-value]
    result: _Type | None = None
    base = _TYPES.get(name)
    if base is not None:
        result = _Type(name, base[0], base[1])
    else:
        m = re.match(r"^\s*(typing\.)?(List|list|Dict|dict|Optional|Set|Tuple)\[(.*)\]\s*$", name)
        if m:
            kind, args = m.group(2), _split_args(m.group(3))
            subs = [_parse_type(a) for a in args]
            if all(s is not None for s in subs) and args:
                if kind in ("List", "list", "Set", "Tuple") and len(subs) == 1:
                    elem = subs[0]
                    assert elem is not None

                    def check_list(v: Any, compat: bool, elem: _Type = elem) -> list[Any]:
                        return [_coerce_one(elem, x, compat) for x in _list(v, compat)]

                    result = _Type(name, check_list, True)
                elif kind in ("Dict", "dict") and len(subs) == 2:
                    kt, vt = subs[0], subs[1]
                    assert kt is not None and vt is not None

                    def check_dict(v: Any, compat: bool, kt: _Type = kt, vt: _Type = vt) -> dict[Any, Any]:
                        return {_coerce_one(kt, k, compat): _coerce_one(vt, x, compat) for k, x in _dict(v, compat).items()}

                    result = _Type(name, check_dict, True)
                elif kind == "Optional" and len(subs) == 1:
                    inner = subs[0]
                    assert inner is not None

                    def check_opt(v: Any, compat: bool, inner: _Type = inner) -> Any:
                        return None if v is None else _coerce_one(inner, v, compat)

                    result = _Type(name, check_opt, inner.loadable)
    _parsed[name] = result
    return result


def known_type(name: str | None) -> bool:
    """True for a type name (or ``List[...]``/``Dict[...]`` expression) that can validate values."""
    return name is None or _parse_type(name) is not None


def _coerce_one(t: _Type, value: Any, compat: bool) -> Any:
    if value is None:
        return None
    if t.loadable and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    return t.check(value, compat)


def coerce_value(type_name: str | None, value: Any, *, is_list: bool = False, reference_compat: bool = False) -> Any:
    """Coerce ``value`` to ``type_name`` (POLYFLOW §2.2); raise :class:`CoercionError`."""
    if type_name is None:
        return value  # untyped: taken as is
    t = _parse_type(type_name)
    if t is None:
        raise CoercionError(f"unknown type `{type_name}`: no value can validate")
    if is_list:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _fail(f"a list of {type_name} (a JSON array when given as text)", value) from None
        if not isinstance(value, (list, tuple)):
            raise _fail(f"a list of {type_name}", value)
        return [_coerce_one(t, x, reference_compat) for x in value]
    return _coerce_one(t, value, reference_compat)


# declared type -> the Python type whose values that type's check returns unchanged
EXACT_TYPES: dict[str | None, type] = {"int": int, "float": float, "metric": float, "bool": bool, "str": str}


def coerce(io: Any, value: Any, *, reference_compat: bool = False) -> Any:
    """Validate ``value`` against an IO declaration and return its canonical form.

    ``io`` is a :class:`flowd.spec.compiled.IOSpec` (or anything with ``name``, ``type``,
    ``is_list`` and ``validation``). ``None`` passes for optional IOs. Raises
    :class:`CoercionError` (a ``ValueError``) whose message names the IO.
    """
    # the common case, a value already of its declared scalar type, is its own canonical form:
    # nothing to parse or convert (an engine coerces every input and output of every op)
    if type(value) is EXACT_TYPES.get(getattr(io, "type", None)) and not getattr(io, "is_list", False) \
            and not getattr(io, "validation", None):
        return value
    name = getattr(io, "name", "?")
    if value is None:
        if getattr(io, "is_optional", False) or getattr(io, "type", None) is None:
            return None
        raise CoercionError(f"`{name}`: no value was provided")
    try:
        result = coerce_value(io.type, value, is_list=bool(getattr(io, "is_list", False)), reference_compat=reference_compat)
        validation = getattr(io, "validation", None)
        if validation and io.type is not None:
            check_validation(result, validation)
    except CoercionError as exc:
        raise CoercionError(f"`{name}`: {exc}") from None
    return result


def _digits(v: Any) -> tuple[int, int]:
    text = str(abs(v)) if isinstance(v, (int, float)) else str(v)
    whole, _, frac = text.partition(".")
    return len(whole.lstrip("0") or "0") + len(frac.rstrip("0")), len(frac.rstrip("0"))


def _scalar_checks(v: Any, rules: dict[str, Any]) -> None:
    def num(key: str) -> Any:
        r = rules.get(key)
        return None if r is None or is_template(r) else r

    bounds: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
        ("gt", lambda a, b: a > b, "greater than"), ("ge", lambda a, b: a >= b, "at least"),
        ("lt", lambda a, b: a < b, "less than"), ("le", lambda a, b: a <= b, "at most"))
    for key, op, text in bounds:
        bound = num(key)
        if bound is not None:
            try:
                ok = op(v, bound)
            except TypeError:
                ok = False
            if not ok:
                raise CoercionError(f"{v!r} must be {text} {bound}")
    mo = num("multipleOf")
    if mo:
        try:
            ok = abs((v / mo) - round(v / mo)) < 1e-9
        except TypeError:
            ok = False
        if not ok:
            raise CoercionError(f"{v!r} must be a multiple of {mo}")
    if any(num(k) is not None for k in ("minDigits", "maxDigits", "decimalPlaces")):
        total, places = _digits(v)
        if num("minDigits") is not None and total < rules["minDigits"]:
            raise CoercionError(f"{v!r} must have at least {rules['minDigits']} digits")
        if num("maxDigits") is not None and total > rules["maxDigits"]:
            raise CoercionError(f"{v!r} must have at most {rules['maxDigits']} digits")
        if num("decimalPlaces") is not None and places > rules["decimalPlaces"]:
            raise CoercionError(f"{v!r} must have at most {rules['decimalPlaces']} decimal places")
    regex = rules.get("regex")
    if regex and not is_template(regex) and not re.match(regex, str(v)):
        raise CoercionError(f"{v!r} does not match the pattern {regex!r}")
    lengths: tuple[tuple[str, Callable[[int, Any], bool]], ...] = (
        ("minLength", lambda n, b: n >= b), ("maxLength", lambda n, b: n <= b))
    for key, cmp in lengths:
        bound = num(key)
        if bound is not None:
            try:
                n = len(v)
            except TypeError:
                n = len(str(v))
            if not cmp(n, bound):
                raise CoercionError(f"{v!r}: length {n} violates {key}={bound}")
    if rules.get("contains") is not None:
        try:
            ok = rules["contains"] in v
        except TypeError:
            ok = False
        if not ok:
            raise CoercionError(f"{v!r} must contain {rules['contains']!r}")
    if rules.get("excludes") is not None:
        try:
            bad = rules["excludes"] in v
        except TypeError:
            bad = False
        if bad:
            raise CoercionError(f"{v!r} must not contain {rules['excludes']!r}")
    options = rules.get("options")
    if options is not None and not is_template(options) and v not in options:
        raise CoercionError(f"{v!r} is not one of the options {options!r}")


_SCALAR_KEYS = ("gt", "ge", "lt", "le", "multipleOf", "minDigits", "maxDigits", "decimalPlaces", "regex",
                "minLength", "maxLength", "contains", "excludes", "options")


def check_validation(value: Any, rules: dict[str, Any]) -> None:
    """Apply a ``validation`` block (POLYFLOW §2.4) to a parsed value."""
    if value is None:
        return
    if any(rules.get(k) is not None for k in _SCALAR_KEYS):
        if isinstance(value, (list, tuple, set)):
            items: Any = value
        elif isinstance(value, dict):
            items = list(value.values())
        else:
            items = [value]
        for item in items:
            _scalar_checks(item, rules)
    if isinstance(value, (list, dict)):
        n = len(value)
        if rules.get("minItems") is not None and not is_template(rules["minItems"]) and n < rules["minItems"]:
            raise CoercionError(f"expected at least {rules['minItems']} items, got {n}")
        if rules.get("maxItems") is not None and not is_template(rules["maxItems"]) and n > rules["maxItems"]:
            raise CoercionError(f"expected at most {rules['maxItems']} items, got {n}")
    if isinstance(value, dict):
        keys = set(value)
        if rules.get("keys") is not None and keys != set(rules["keys"]):
            raise CoercionError(f"expected exactly the keys {sorted(rules['keys'])}, got {sorted(keys)}")
        for k in rules.get("containsKeys") or ():
            if k not in keys:
                raise CoercionError(f"missing the key {k!r}")
        for k in rules.get("excludesKeys") or ():
            if k in keys:
                raise CoercionError(f"the key {k!r} is not allowed")


_STRING_GROUP = frozenset({"str", "path", "s3", "gcs", "wasb"})
_FLOAT_GROUP = frozenset({"float", "metric"})


def refs_compatible(t_in: str | None, t_out: str | None, *, reference_compat: bool = False) -> bool:
    """POLYFLOW §2.7: exact spelling, the string group, and [FLOWD] float/metric."""
    if t_in == t_out:
        return True
    if t_in in _STRING_GROUP and t_out in _STRING_GROUP:
        return True
    if not reference_compat and t_in in _FLOAT_GROUP and t_out in _FLOAT_GROUP:
        return True
    return False
