"""Property text and property filters: the generated SQL, run on chDB, agrees with a Python reading of the contract."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
import zoneinfo
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generated.insights.v1 import query_pb2
from server.queries.common.errors import QueryError
from server.queries.common.properties import (
    BREAKDOWN_NULL,
    breakdown_value_sql,
    filter_sql,
    filters_sql,
    properties_sql,
    property_number,
    property_text,
)
from server.queries.common.sql import Params
from tests.hypothesis_profiles import examples
from tests.support.jsontext import number_text
from tests.support.jsontext import value_text as json_value_text

TZ = "America/New_York"
HOSTILE_KEYS = [
    "'); DROP TABLE x; --",
    "a.b",
    "{p0:String}",
    'quo"te',
    "back\\slash",
    "ключ 😀",
    "nul\x00key",
    "k" * 2000,
]
BIG = "x" * 10240

# Raw JSON spellings of the value under "k", one row each (None: the key is absent).
K_VALUES: list[str | None] = [
    '"abc"',
    '"ABC def"',
    "5",
    "-3",
    "0",
    "-0",
    "5.5",
    "5.0",
    "5.50",
    "1e3",
    "1.5E+2",
    "-0.25",
    "12345678901234567890",
    "true",
    "false",
    "null",
    '""',
    None,
    '{"a": 1, "b": [1, 2.50], "c": {"k": 5}}',
    '[1, "x", null]',
    "[]",
    "{}",
    json.dumps("café Ünïcödé 😀", ensure_ascii=False),
    json.dumps("café Ünïcödé 😀"),
    json.dumps("quote \" and ' apostrophe"),
    json.dumps("back\\slash"),
    json.dumps("'); DROP TABLE x; --"),
    json.dumps("nul \x00 char"),
    json.dumps(BIG),
    '"5"',
    '"10"',
    '"9.5"',
    '"  7"',
    '"apple"',
    '"Banana"',
    '"1e3"',
    '"true"',
    '"null"',
    '"%_wild"',
    '"a.b"',
    '"line\\nbreak"',
    '"k\\":7"',
]
DATE_VALUES = [
    '"2024-03-10"',
    '"2024-03-10 23:30:00"',
    '"2024-03-11T03:30:00Z"',
    '"2024-03-09T23:59:59"',
    '"2024-03-11 00:00:00"',
    '"not a date"',
]


def _doc(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{json.dumps(key)}: {raw}" for key, raw in pairs) + "}"


def _build_rows() -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    for i, raw in enumerate(K_VALUES):
        pairs = [("other", '"x"')] if i % 3 else []
        if raw is not None:
            pairs.append(("k", raw))
        key = HOSTILE_KEYS[i % len(HOSTILE_KEYS)]
        pairs.append((key, raw if raw is not None else '"hostile"'))
        if i % 4 == 0:
            pairs.append(("a", '{"b": "nested"}'))
        if i < len(DATE_VALUES):
            pairs.append(("d", DATE_VALUES[i]))
        person = [("k", K_VALUES[-1 - i])] if K_VALUES[-1 - i] is not None else []
        rows.append((i, _doc(pairs), _doc(person)))
    extra = [
        '{"k" :\n\t5.0 , "a.b": "flat", "a": {"b": "nested"}}',  # whitespace, flat dotted key
        '{"o": {"k": 5}, "k": 5.0}',  # same key nested with an equal value
        '{"s": "\\"k\\": 7", "k": 1.0}',  # the key spelled inside a string
        '{"k": 1.0, "k": 2.0}',  # duplicate key: the first one counts
        '{"caf\\u00e9": 2.0, "k": "\\u00e9t\\u00e9"}',  # escaped key and value
        "not json",
        '{"k": NaN}',
        '{"k": "x", "z": 1e400}',
        '{"k": "unterminated',
        "",
    ]
    for raw_doc in extra:
        rows.append((len(rows), raw_doc, "{}"))
    return rows


ROWS = _build_rows()


# --- an independent Python reading of the contract ---------------------------------------------------


class _Invalid(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Invalid(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def top_level(doc: str) -> dict[str, tuple[Any, str]]:
    """Top-level key → (decoded value, raw text); first occurrence wins; {} for an invalid document."""
    try:
        _DECODER.decode(doc)
    except (ValueError, RecursionError):
        return {}
    out: dict[str, tuple[Any, str]] = {}
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(doc, 0).end()  # type: ignore[union-attr]
    if doc[i : i + 1] != "{":
        return {}
    i = ws.match(doc, i + 1).end()  # type: ignore[union-attr]
    while doc[i] != "}":
        key, i = _DECODER.raw_decode(doc, i)
        i = ws.match(doc, i).end()  # type: ignore[union-attr]
        assert doc[i] == ":"
        start = ws.match(doc, i + 1).end()  # type: ignore[union-attr]
        value, end = _DECODER.raw_decode(doc, start)
        out.setdefault(key, (value, doc[start:end]))
        i = ws.match(doc, end).end()  # type: ignore[union-attr]
        if doc[i] == ",":
            i = ws.match(doc, i + 1).end()  # type: ignore[union-attr]
    return out


def text_of(doc: str, key: str) -> str | None:
    found = top_level(doc).get(key)
    if found is None:
        return None
    value, _raw = found
    return json_value_text(value)  # canonical numbers, minified objects (ClickHouse's JSON parser)


_CH_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def ch_float(text: str | None) -> float | None:
    """toFloat64OrNull for the texts of these rows (no inf/nan spellings among them)."""
    if text is None or not _CH_NUMBER.fullmatch(text):
        return None
    return float(text)


def vtext(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return number_text(value) if isinstance(value, int | float) else str(value)


def numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return float(value) if _CH_NUMBER.fullmatch(value) else None


def scalar_match(text: str | None, op: str, value: Any) -> bool:
    v = vtext(value)
    if op == "exact":
        return text == v
    if op == "is_not":
        return text != v
    if op == "icontains":
        return text is not None and v.lower() in text.lower()
    if op == "not_icontains":
        return text is None or v.lower() not in text.lower()
    if op == "regex":
        return text is not None and re.search(v, text, re.DOTALL) is not None
    if op == "not_regex":
        return text is None or re.search(v, text, re.DOTALL) is None
    sign = {"gt": ">", "gte": ">=", "min": ">=", "lt": "<", "lte": "<=", "max": "<="}[op]
    number = numeric(value)
    left: Any = ch_float(text) if number is not None else text
    right: Any = number if number is not None else v
    if left is None:
        return False
    return bool({">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[sign])


def python_match(text: str | None, op: str, value: Any) -> bool:
    """Whether property text `text` passes a filter, per docs/engine-semantics.md."""
    if op == "is_set":
        return text is not None
    if op == "is_not_set":
        return text is None
    if op in ("between", "not_between"):
        low, high = (numeric(item) for item in value)
        x = ch_float(text)
        if x is None:
            return False
        return low <= x <= high if op == "between" else x < low or x > high
    if isinstance(value, list) and not value:
        return True  # an empty list matches everything, in and not_in included
    if op == "in":
        return text in [vtext(item) for item in value]
    if op == "not_in":
        return text not in [vtext(item) for item in value]
    if op == "exact" and isinstance(value, list):
        return text in [vtext(item) for item in value]
    if op == "is_not" and isinstance(value, list):
        return text not in [vtext(item) for item in value]
    if isinstance(value, list):
        results = [scalar_match(text, op, item) for item in value]
        return all(results) if op in ("not_icontains", "not_regex") else any(results)
    return scalar_match(text, op, value)


def expected_error(op: str, value: Any) -> bool:
    if op in ("between", "not_between"):
        if not isinstance(value, list) or len(value) != 2:
            return True
        bounds = [numeric(item) for item in value]
        return None in bounds or bounds[0] > bounds[1]  # type: ignore[operator]
    if op in ("in", "not_in"):
        return not isinstance(value, list)
    return False


# --- proto construction ------------------------------------------------------------------------------


def _scalar_into(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = value


def make_filter(key: str, op: str, value: Any = None, kind: str = "event") -> query_pb2.PropertyFilter:
    f = query_pb2.PropertyFilter(
        key=key,
        operator=query_pb2.PropertyOperator.Value(f"PROPERTY_OPERATOR_{op.upper()}"),
        type=query_pb2.PropertyFilterType.Value(f"PROPERTY_FILTER_TYPE_{kind.upper()}"),
    )
    if isinstance(value, list):
        f.value.list_value.SetInParent()
        for item in value:
            _scalar_into(f.value.list_value.values.add(), item)
    elif value is not None:
        _scalar_into(f.value, value)
    return f


# --- the chDB table ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ch(events_dsn: str) -> Iterator[tuple[Any, str]]:
    client = clickhouse_connect.get_client(interface="chdb", path=events_dsn.removeprefix("chdb://"))
    table = f"test_properties.rows_{uuid.uuid4().hex}"
    try:
        client.command("CREATE DATABASE IF NOT EXISTS test_properties")
        client.command(
            f"CREATE TABLE {table} (id UInt32, properties String, person_properties String,"
            " timestamp DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY id"
        )
        now = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
        client.insert(
            table,
            [[i, props, person, now] for i, props, person in ROWS],
            column_names=["id", "properties", "person_properties", "timestamp"],
        )
        yield client, table
        client.command(f"DROP TABLE IF EXISTS {table}")
    finally:
        client.close()


def matching_ids(ch: tuple[Any, str], expr: str, params: Params) -> list[int]:
    client, table = ch
    result = client.query(f"SELECT id FROM {table} WHERE {expr} ORDER BY id", parameters=params.values)
    return [row[0] for row in result.result_rows]


def expected_ids(key: str, op: str, value: Any, column: int = 1) -> list[int]:
    return [row[0] for row in ROWS if python_match(text_of(row[column], key), op, value)]


def run_filter(ch: tuple[Any, str], f: query_pb2.PropertyFilter) -> list[int]:
    params = Params()
    return matching_ids(ch, filter_sql(params, f, "properties[0]", TZ), params)


# --- property text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "a.b", "a", "caf\u00e9", "missing", *HOSTILE_KEYS])
def test_property_text_is_the_contract_text(ch: tuple[Any, str], key: str) -> None:
    client, table = ch
    params = Params()
    sql = f"SELECT id, {property_text(params, key, 'event')}, {property_text(params, key, 'person')} FROM {table} ORDER BY id"
    got = {row[0]: (row[1], row[2]) for row in client.query(sql, parameters=params.values).result_rows}
    want = {i: (text_of(props, key), text_of(person, key)) for i, props, person in ROWS}
    assert got == want


def test_numbers_are_canonical_and_objects_minified(ch: tuple[Any, str]) -> None:
    client, _ = ch
    params = Params()
    text = property_text(params, "k", "event")
    docs = [
        '{"k": 5.0}',
        '{"k": 1e3}',
        '{"k" : -0 }',
        '{"k": {"a": 1,  "b": [1.50]}}',
        '{"o": {"k": 5}, "k": 5.0}',
    ]
    got = [
        client.query(
            f"SELECT {text} FROM (SELECT {{doc:String}} AS properties)",
            parameters={**params.values, "doc": doc},
        ).result_rows[0][0]
        for doc in docs
    ]
    # The contract's property text is ClickHouse's canonical JSON text, whatever the spelling stored.
    assert got == ["5", "1000", "0", '{"a":1,"b":[1.5]}', "5"]


def test_breakdown_value_labels_null_and_empty(ch: tuple[Any, str]) -> None:
    client, table = ch
    params = Params()
    sql = f"SELECT id, {breakdown_value_sql(params, 'k', 'event')} FROM {table} ORDER BY id"
    got = dict(client.query(sql, parameters=params.values).result_rows)
    assert got == {i: (text_of(props, "k") or BREAKDOWN_NULL) for i, props, _ in ROWS}
    assert got[K_VALUES.index('""')] == BREAKDOWN_NULL


def test_property_number_is_to_float_of_the_text(ch: tuple[Any, str]) -> None:
    client, table = ch
    params = Params()
    sql = f"SELECT id, {property_number(params, 'k', 'event')} FROM {table} ORDER BY id"
    got = dict(client.query(sql, parameters=params.values).result_rows)
    assert got == {i: ch_float(text_of(props, "k")) for i, props, _ in ROWS}
    assert got[K_VALUES.index("1e3")] == 1000.0
    assert got[K_VALUES.index('"9.5"')] == 9.5


# --- every operator ---------------------------------------------------------------------------------

CASES: list[tuple[str, Any]] = [
    ("exact", "abc"),
    ("exact", 5),
    ("exact", 5.0),
    ("exact", 5.5),
    ("exact", True),
    ("exact", "5"),
    ("exact", "1e3"),
    ("exact", BIG),
    ("exact", "'); DROP TABLE x; --"),
    ("exact", "nul \x00 char"),
    ("exact", "quote \" and ' apostrophe"),
    ("exact", "back\\slash"),
    ("exact", '{"a": 1, "b": [1, 2.50], "c": {"k": 5}}'),
    ("is_not", "abc"),
    ("is_not", 5),
    ("icontains", "AB"),
    ("icontains", "é ü"),
    ("icontains", "%_"),
    ("icontains", "_"),
    ("icontains", "\x00"),
    ("icontains", ""),
    ("not_icontains", "a"),
    ("not_icontains", "%"),
    ("regex", "^[0-9]+$"),
    ("regex", "^a.c$"),
    ("regex", "(?i)banana|APPLE"),
    ("regex", "line.break"),
    ("regex", "\\\\"),
    ("not_regex", "^[0-9.]+$"),
    ("not_regex", "a"),
    ("gt", 5),
    ("gt", "5"),
    ("gte", 5.0),
    ("lt", 0),
    ("lte", -0.25),
    ("min", 9.5),
    ("max", "10"),
    ("gt", "apple"),
    ("lt", "Banana"),
    ("gte", True),
    ("between", [0, 10]),
    ("between", ["5", 1000.0]),
    ("between", [-3, -3]),
    ("not_between", [0, 10]),
    ("not_between", [-1, 5.5]),
    ("is_set", None),
    ("is_not_set", None),
    ("in", ["abc", 5, 5.5, True, "missing"]),
    ("in", []),
    ("in", ["abc"]),
    ("not_in", ["abc", 5, "true"]),
    ("not_in", []),
    ("exact", ["abc", 5]),
    ("exact", []),
    ("exact", ["abc"]),
    ("is_not", ["abc", 5]),
    ("icontains", ["ab", "an"]),
    ("not_icontains", ["a", "e"]),
    ("regex", ["^a", "^B"]),
    ("not_regex", ["^a", "^B"]),
    ("gt", [100, "apple"]),
    ("lt", []),
]


@pytest.mark.parametrize(("op", "value"), CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(CASES)])
def test_operator_matches_python(ch: tuple[Any, str], op: str, value: Any) -> None:
    assert run_filter(ch, make_filter("k", op, value)) == expected_ids("k", op, value)


@pytest.mark.parametrize(
    ("op", "value"), [("exact", "abc"), ("is_not", 5), ("in", ["true", "5.0"]), ("is_set", None)]
)
def test_person_filters_read_person_properties(ch: tuple[Any, str], op: str, value: Any) -> None:
    want = expected_ids("k", op, value, column=2)
    assert run_filter(ch, make_filter("k", op, value, kind="person")) == want
    assert want != expected_ids("k", op, value, column=1)


@pytest.mark.parametrize("key", HOSTILE_KEYS)
@pytest.mark.parametrize(("op", "value"), [("exact", "abc"), ("is_set", None), ("is_not", 5), ("gt", 1)])
def test_hostile_keys(ch: tuple[Any, str], key: str, op: str, value: Any) -> None:
    want = expected_ids(key, op, value)
    assert run_filter(ch, make_filter(key, op, value)) == want
    if op == "is_set":
        assert want  # the key really is present in some rows


def test_user_text_never_reaches_the_sql() -> None:
    params = Params()
    f = make_filter("'); DROP TABLE x; --", "exact", "{p0:String}'; SELECT 1 --")
    sql = filter_sql(params, f, "p", TZ)
    assert "DROP" not in sql and "SELECT 1" not in sql
    assert "'); DROP TABLE x; --" in params.values.values()


# --- dates ------------------------------------------------------------------------------------------


def _python_date_match(text: str | None, op: str, value: str) -> bool:
    tz = zoneinfo.ZoneInfo(TZ)

    def parse(s: str) -> dt.datetime | None:
        try:
            parsed = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed

    instant = parse(text) if text is not None else None
    if instant is None:
        return False
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        left: Any = instant.astimezone(tz).date()
        right: Any = dt.date.fromisoformat(value)
    else:
        left, right = instant, parse(value)
    return {"is_date_exact": left == right, "is_date_before": left < right, "is_date_after": left > right}[op]


@pytest.mark.parametrize("op", ["is_date_exact", "is_date_before", "is_date_after"])
@pytest.mark.parametrize("value", ["2024-03-10", "2024-03-11", "2024-03-10 23:30:00", "2024-03-11T03:30:00Z"])
def test_date_operators(ch: tuple[Any, str], op: str, value: str) -> None:
    want = [row[0] for row in ROWS if _python_date_match(text_of(row[1], "d"), op, value)]
    assert run_filter(ch, make_filter("d", op, value)) == want
    assert want or op != "is_date_exact" or value == "2024-03-11"


def test_a_utc_instant_falls_on_the_local_day(ch: tuple[Any, str]) -> None:
    # 2024-03-11T03:30:00Z is 23:30 on 2024-03-10 in New York (just after the DST change).
    got = run_filter(ch, make_filter("d", "is_date_exact", "2024-03-10"))
    assert DATE_VALUES.index('"2024-03-11T03:30:00Z"') in got
    assert DATE_VALUES.index('"2024-03-11 00:00:00"') not in got


# --- groups -----------------------------------------------------------------------------------------


def _item(f: query_pb2.PropertyFilter) -> query_pb2.PropertyGroupItem:
    return query_pb2.PropertyGroupItem(filter=f)


def test_groups_nest_and_or(ch: tuple[Any, str]) -> None:
    OR, AND = query_pb2.FILTER_LOGICAL_OPERATOR_OR, query_pb2.FILTER_LOGICAL_OPERATOR_AND
    inner = query_pb2.PropertyGroupFilterValue(
        type=AND,
        values=[_item(make_filter("k", "is_set")), _item(make_filter("k", "not_icontains", "a"))],
    )
    outer = query_pb2.PropertyGroupFilterValue(
        type=OR,
        values=[_item(make_filter("k", "exact", "abc")), query_pb2.PropertyGroupItem(group=inner)],
    )
    empty = query_pb2.PropertyGroupFilterValue(type=OR)
    props = query_pb2.Properties(group=query_pb2.PropertyGroupFilter(type=AND, values=[outer, empty]))
    params = Params()
    got = matching_ids(ch, properties_sql(params, props, "properties", TZ), params)
    want = [
        i
        for i, doc, _ in ROWS
        if text_of(doc, "k") == "abc"
        or (text_of(doc, "k") is not None and "a" not in (text_of(doc, "k") or "").lower())
    ]
    assert got == want and 0 < len(want) < len(ROWS)


def test_flat_list_and_empty_forms(ch: tuple[Any, str]) -> None:
    flat = query_pb2.Properties(
        list=query_pb2.PropertyFilterList(values=[make_filter("k", "is_set"), make_filter("k", "gt", 0)])
    )
    params = Params()
    got = matching_ids(ch, properties_sql(params, flat, "properties", TZ), params)
    assert got == [i for i, doc, _ in ROWS if python_match(text_of(doc, "k"), "gt", 0)]
    all_ids = [row[0] for row in ROWS]
    for empty in (query_pb2.Properties(), query_pb2.Properties(list=query_pb2.PropertyFilterList())):
        assert properties_sql(Params(), empty, "p", TZ) == "1"
    assert filters_sql(Params(), [], "p", TZ) == "1"
    params = Params()
    assert matching_ids(ch, filters_sql(params, [make_filter("k", "exact", [])], "p", TZ), params) == all_ids


# --- invalid filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "path", "message"),
    [
        (make_filter("k", "between", [1]), "series[0].properties[2].value", "two numbers"),
        (make_filter("k", "between", [5, 1]), "series[0].properties[2].value", "smaller"),
        (make_filter("k", "between", ["a", 1]), "series[0].properties[2].value", "two numbers"),
        (make_filter("k", "not_between", 3), "series[0].properties[2].value", "two numbers"),
        (make_filter("k", "in", "abc"), "series[0].properties[2].value", "list"),
        (make_filter("k", "not_in", 5), "series[0].properties[2].value", "list"),
        (make_filter("k", "icontains", None), "series[0].properties[2].value", "needs a value"),
        (make_filter("k", "regex", "(a"), "series[0].properties[2].value", "regex"),
        (make_filter("k", "regex", "(?=a)"), "series[0].properties[2].value", "look-around"),
        (make_filter("k", "not_regex", "(a)\\1"), "series[0].properties[2].value", "backreference"),
        (make_filter("k", "regex", ["ok", "[z-a]"]), "series[0].properties[2].value[1]", "regex"),
        (make_filter("k", "semver_gt", "1.0"), "series[0].properties[2].operator", "semver_gt"),
        (make_filter("", "exact", "x"), "series[0].properties[2].key", "key"),
        (
            make_filter("k", "exact", "x", kind="cohort"),
            "series[0].properties[2].type",
            "cohort is not supported",
        ),
        (
            make_filter("k", "exact", "x", kind="data_warehouse"),
            "series[0].properties[2].type",
            "data_warehouse filters belong to another product",
        ),
    ],
)
def test_invalid_filters_raise_with_the_path(f: query_pb2.PropertyFilter, path: str, message: str) -> None:
    with pytest.raises(QueryError) as raised:
        filter_sql(Params(), f, "series[0].properties[2]", TZ)
    assert raised.value.path == path
    assert message in raised.value.message


def test_unset_type_is_event_and_unset_operator_is_exact(ch: tuple[Any, str]) -> None:
    f = query_pb2.PropertyFilter(key="k", value=query_pb2.PropertyValue(string_value="abc"))
    assert run_filter(ch, f) == expected_ids("k", "exact", "abc")


@pytest.mark.parametrize(
    "pattern", ["\\pL+", "\\z", "[[:alpha:]]", "(?P<x>a)", "(?i)a", "(?U)a+", "[(?=]", "\\(?=x"]
)
def test_valid_re2_patterns_pass(ch: tuple[Any, str], pattern: str) -> None:
    run_filter(ch, make_filter("k", "regex", pattern))  # runs without error


# --- random filters ---------------------------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    "abc",
    "ABC",
    "",
    "5",
    "5.0",
    "1e3",
    "apple",
    "a.b",
    "%",
    "_",
    "'); DROP TABLE x; --",
    "{p0:String}",
    "nul \x00 char",
    "back\\slash",
    'quo"te',
    "café",
    "😀",
    "true",
    "null",
    BIG[:100],
    5,
    0,
    -3,
    12345678901234567890 // 10,
    5.5,
    5.0,
    -0.25,
    1000.0,
    True,
    False,
]
REGEXES = ["^a", "b$", "[0-9]", "^\\d+(\\.\\d+)?$", "(?i)ABC", "é", "\\\\", "\\{", "^$", ".", "a|5"]
OPS = [
    "exact",
    "is_not",
    "icontains",
    "not_icontains",
    "regex",
    "not_regex",
    "gt",
    "gte",
    "lt",
    "lte",
    "min",
    "max",
    "between",
    "not_between",
    "is_set",
    "is_not_set",
    "in",
    "not_in",
]


@st.composite
def random_filter(draw: st.DrawFn) -> tuple[str, str, str, Any]:
    op = draw(st.sampled_from(OPS))
    source = draw(st.sampled_from(["event", "person"]))
    key = draw(st.sampled_from(["k", "k", "a.b", "missing", *HOSTILE_KEYS]))
    pool = st.sampled_from(REGEXES) if op in ("regex", "not_regex") else st.sampled_from(HOSTILE_VALUES)
    value = draw(st.one_of(pool, st.lists(pool, max_size=3)))
    return key, source, op, value


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=random_filter())
def test_random_filters_match_python(ch: tuple[Any, str], case: tuple[str, str, str, Any]) -> None:
    key, source, op, value = case
    f = make_filter(key, op, value, kind=source)
    if expected_error(op, value):
        with pytest.raises(QueryError):
            filter_sql(Params(), f, "p", TZ)
        return
    column = 1 if source == "event" else 2
    assert run_filter(ch, f) == expected_ids(key, op, value, column=column)
