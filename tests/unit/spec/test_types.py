"""IO type coercion (POLYFLOW §2.2), the validation block (§2.4), ref compatibility (§2.7)."""

from __future__ import annotations

import datetime as dt

import pytest

from flowd.spec import CoercionError, coerce, coerce_value
from flowd.spec.compiled import IOSpec
from flowd.spec.types import is_template, known_type, parse_timedelta, refs_compatible

OK = [
    ("int", "1", 1), ("int", 2.0, 2), ("int", "2.0", 2), ("int", "1e3", 1000), ("int", True, 1),
    ("float", "1e3", 1000.0), ("float", 3, 3.0), ("float", False, 0.0), ("metric", "0.5", 0.5),
    ("bool", "Yes", True), ("bool", "off", False), ("bool", 0, False), ("bool", "T", True),
    ("str", 3, "3"), ("str", True, "true"), ("str", {"a": 1}, '{"a":1}'), ("str", [1, "x"], '[1,"x"]'),
    ("any", {"a": [1]}, {"a": [1]}), ("dict", '{"a": 1}', {"a": 1}), ("metadata", {"k": "v"}, {"k": "v"}),
    ("list", "[1, 2]", [1, 2]), ("path", "/data", "/data"), ("image", "reg:5000/org/img:tag", "reg:5000/org/img:tag"),
    ("uri", "https://x.com/a", "https://x.com/a"), ("uri", "user:pass@host", "user:pass@host"),
    ("s3", "s3://bucket", "s3://bucket"), ("gcs", "gs://b/o", "gs://b/o"),
    ("wasb", "wasbs://c@acct.blob.core.windows.net/p", "wasbs://c@acct.blob.core.windows.net/p"),
    ("date", "2020-01-01", dt.date(2020, 1, 1)), ("date", "2020-01-01T00:00:00", dt.date(2020, 1, 1)),
    ("date", dt.date(2021, 5, 6), dt.date(2021, 5, 6)),
    ("datetime", "2020-01-01T10:00:00", dt.datetime(2020, 1, 1, 10)),
    ("timedelta", "PT10S", dt.timedelta(seconds=10)), ("timedelta", "01:00:00", dt.timedelta(hours=1)),
    ("timedelta", 1.5, dt.timedelta(seconds=1.5)),
    ("uuid", "12345678-1234-5678-1234-567812345678", "12345678123456781234567812345678"),
    ("email", "a@b.co", "a@b.co"), ("git", {"url": "https://x", "revision": "main"}, {"url": "https://x", "revision": "main"}),
    ("artifacts", '{"files": ["a"]}', {"files": ["a"]}), ("file", {"content": "hi"}, {"content": "hi"}),
    ("dockerfile", {"image": "python"}, {"image": "python"}), ("event", {"name": "a", "kind": "b"}, {"name": "a", "kind": "b"}),
    ("List[int]", "[1,2]", [1, 2]), ("List[int]", ["1", 2.0], [1, 2]), ("Dict[str, int]", '{"a": "1"}', {"a": 1}),
    ("Optional[int]", 1.0, 1), ("auth", "user:secret", "user:secret"),
]

BAD = [
    ("int", 1.5), ("int", "1.5"), ("int", "abc"), ("float", "inf"), ("float", "nan"), ("float", "x"),
    ("bool", 1.5), ("bool", 3600), ("bool", "maybe"), ("path", 3), ("image", "my image"), ("uri", "x.com"),
    ("s3", "gs://x"), ("gcs", "s3://x"), ("wasb", "https://x"), ("date", "2020-01-01T10:00:00"),
    ("timedelta", "10"), ("uuid", "nope"), ("email", "nope"), ("git", {"repo": "x"}), ("dockerfile", {"env": {}}),
    ("dict", [1]), ("list", {"a": 1}), ("List[int]", ["a"]), ("string", "x"), ("auth", "nocolon"),
]


@pytest.mark.parametrize(("type_", "value", "want"), OK, ids=[f"{t}-{v!r}" for t, v, _ in OK])
def test_coerce_ok(type_: str, value: object, want: object) -> None:
    assert coerce_value(type_, value) == want


@pytest.mark.parametrize(("type_", "value"), BAD, ids=[f"{t}-{v!r}" for t, v in BAD])
def test_coerce_rejects(type_: str, value: object) -> None:
    with pytest.raises(CoercionError):
        coerce_value(type_, value)


def test_coerce_error_is_a_value_error_naming_the_io() -> None:
    io = IOSpec(name="lr", type="float")
    with pytest.raises(ValueError, match=r"`lr`: expected a number, got 'fast'"):
        coerce(io, "fast")


def test_is_list_wraps_the_type() -> None:
    io = IOSpec(name="xs", type="str", is_list=True)
    assert coerce(io, '["a","b"]') == ["a", "b"]
    with pytest.raises(CoercionError, match="JSON array"):
        coerce(io, "a,b")
    assert coerce(IOSpec(name="n", type="int", is_list=True), [1, "2"]) == [1, 2]


def test_none_for_optional_and_required() -> None:
    assert coerce(IOSpec(name="x", type="int", is_optional=True), None) is None
    with pytest.raises(CoercionError, match="no value was provided"):
        coerce(IOSpec(name="x", type="int"), None)


def test_untyped_takes_anything() -> None:
    assert coerce(IOSpec(name="x"), {"any": ["thing"]}) == {"any": ["thing"]}


def test_datetime_reference_compat_is_date_only() -> None:
    io = IOSpec(name="when", type="datetime")
    assert coerce(io, "2020-01-01T10:00:00") == dt.datetime(2020, 1, 1, 10)
    with pytest.raises(CoercionError):
        coerce(io, "2020-01-01T10:00:00", reference_compat=True)
    assert coerce(io, "2020-01-01", reference_compat=True) == dt.date(2020, 1, 1)


VALIDATION = [
    ({"ge": 0, "le": 1}, "float", 0.5, None), ({"gt": 0}, "float", 0, "must be greater than 0"),
    ({"lt": 1}, "int", 1, "less than"), ({"multipleOf": 2}, "int", 3, "multiple of 2"),
    ({"regex": "^a"}, "str", "ba", "does not match"), ({"minLength": 3}, "str", "ab", "minLength"),
    ({"maxLength": 1}, "str", "ab", "maxLength"), ({"contains": "x"}, "str", "abc", "must contain"),
    ({"excludes": "b"}, "str", "abc", "must not contain"), ({"options": ["a", "b"]}, "str", "c", "options"),
    ({"minItems": 2}, "list", [1], "at least 2 items"), ({"maxItems": 1}, "list", [1, 2], "at most 1 items"),
    ({"keys": ["a"]}, "dict", {"b": 1}, "exactly the keys"), ({"containsKeys": ["a"]}, "dict", {}, "missing the key"),
    ({"excludesKeys": ["a"]}, "dict", {"a": 1}, "not allowed"), ({"maxDigits": 4}, "float", 123.45, "at most 4 digits"),
    ({"minDigits": 3}, "int", 12, "at least 3 digits"), ({"decimalPlaces": 2}, "float", 1.234, "decimal places"),
    ({"le": "{{ x }}"}, "int", 10, None), ({"ge": 2}, "int", [3, 1], "must be at least 2"),
]


@pytest.mark.parametrize(("rules", "type_", "value", "error"), VALIDATION)
def test_validation_block(rules: dict, type_: str, value: object, error: str | None) -> None:
    io = IOSpec(name="x", type=type_, validation=rules, is_list=isinstance(value, list) and type_ == "int")
    if error is None:
        coerce(io, value)
    else:
        with pytest.raises(CoercionError, match=error):
            coerce(io, value)


def test_untyped_io_skips_validation() -> None:
    assert coerce(IOSpec(name="x", validation={"gt": 5}), 1) == 1


def test_helpers() -> None:
    assert is_template("a {{ b }}") and is_template("{% if x %}") and not is_template("plain")
    assert known_type("List[Dict[str, int]]") and not known_type("float64") and known_type(None)
    assert parse_timedelta("1 02:00:00") == dt.timedelta(days=1, hours=2)
    assert refs_compatible("path", "s3") and refs_compatible("str", "gcs")
    assert not refs_compatible("int", "float") and not refs_compatible(None, "float")
    assert not refs_compatible("Dict", "dict") and not refs_compatible("image", "str")
    assert refs_compatible("float", "metric")  # [FLOWD]
    assert not refs_compatible("float", "metric", reference_compat=True)
