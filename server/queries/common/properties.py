"""Property access and property filters as NULL-safe ClickHouse SQL, every user value bound as a parameter.

The property text follows docs/engine-semantics.md ("Property text"): the text ClickHouse's own
JSON parser gives (numbers canonical, objects minified), which costs one parse per row.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeAlias

from generated.insights.v1 import query_pb2
from server.queries.common.errors import QueryError
from server.queries.common.sql import Params

Source = Literal["event", "person"]

# The membership subquery (one `person_id` column) of the cohort a filter names, given the bound
# parameters, the cohort id and the field path naming it; raises FailedPrecondition (or QueryError)
# when that cohort cannot be used. Callers that compute cohorts pass one; without it, a cohort
# filter is refused.
CohortSql = Callable[[Params, int, str], str]

BREAKDOWN_NULL = "$$_posthog_breakdown_null_$$"

_COLUMNS: dict[str, str] = {"event": "properties", "person": "person_properties"}

_Op = query_pb2.PropertyOperator
_Type = query_pb2.PropertyFilterType
_OpValue: TypeAlias = query_pb2.PropertyOperator.ValueType
_TypeValue: TypeAlias = query_pb2.PropertyFilterType.ValueType


_NUMERIC_STRING = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")


def _column(source: str) -> str:
    try:
        return _COLUMNS[source]
    except KeyError:
        raise ValueError(f"unknown property source {source!r}") from None


def property_text(params: Params, key: str, source: Source | str) -> str:
    """SQL for the property text of `key` (Nullable(String)), per the contract's "Property text".

    One JSON parse: ClickHouse gives strings unescaped, numbers in canonical form, booleans as
    'true'/'false', objects and arrays as minified JSON, and NULL for a missing key or JSON null.
    """
    column = _column(source)
    if source == "event" and key in params.columns:
        # The same expression, computed once at insert time into a column of its own.
        return params.columns[key]
    return f"nullIf(JSONExtract({column}, {params.bind(key, 'String')}, 'Nullable(String)'), '')"


def property_number(params: Params, key: str, source: Source | str) -> str:
    """SQL for `toFloatOrNull(text)` of the property (Nullable(Float64)), for sum/avg/min/max/quantiles."""
    return f"toFloat64OrNull({property_text(params, key, source)})"


def breakdown_value_sql(params: Params, key: str, source: Source | str) -> str:
    """SQL for a breakdown value: the property text, or the null label when NULL (missing, null, '')."""
    return f"ifNull({property_text(params, key, source)}, '{BREAKDOWN_NULL}')"


# --- filters ---------------------------------------------------------------------------------------

_SCALAR_OPS_NEEDING_VALUE = {
    _Op.PROPERTY_OPERATOR_EXACT,
    _Op.PROPERTY_OPERATOR_IS_NOT,
    _Op.PROPERTY_OPERATOR_ICONTAINS,
    _Op.PROPERTY_OPERATOR_NOT_ICONTAINS,
    _Op.PROPERTY_OPERATOR_REGEX,
    _Op.PROPERTY_OPERATOR_NOT_REGEX,
    _Op.PROPERTY_OPERATOR_GT,
    _Op.PROPERTY_OPERATOR_GTE,
    _Op.PROPERTY_OPERATOR_LT,
    _Op.PROPERTY_OPERATOR_LTE,
    _Op.PROPERTY_OPERATOR_MIN,
    _Op.PROPERTY_OPERATOR_MAX,
    _Op.PROPERTY_OPERATOR_IS_DATE_EXACT,
    _Op.PROPERTY_OPERATOR_IS_DATE_BEFORE,
    _Op.PROPERTY_OPERATOR_IS_DATE_AFTER,
}
# With a list value, these combine their per-item filters with AND; the rest with OR.
_AND_COMBINED = {_Op.PROPERTY_OPERATOR_NOT_ICONTAINS, _Op.PROPERTY_OPERATOR_NOT_REGEX}
_COMPARE = {
    _Op.PROPERTY_OPERATOR_GT: ">",
    _Op.PROPERTY_OPERATOR_GTE: ">=",
    _Op.PROPERTY_OPERATOR_MIN: ">=",
    _Op.PROPERTY_OPERATOR_LT: "<",
    _Op.PROPERTY_OPERATOR_LTE: "<=",
    _Op.PROPERTY_OPERATOR_MAX: "<=",
}

Scalar = str | int | float | bool


def _op_name(op: _OpValue) -> str:
    # A number the enum lacks is refused at the API's edge; here it is only named.
    return _Op.Name(op).removeprefix("PROPERTY_OPERATOR_").lower() if op in _Op.values() else str(op)


def _type_name(kind: _TypeValue) -> str:
    return _Type.Name(kind).removeprefix("PROPERTY_FILTER_TYPE_").lower() if kind in _Type.values() else str(kind)


def value_text(value: Scalar) -> str:
    """The text a filter value compares as: the same canonical form as a stored property's text.

    A string as is; an integer, or an integral float, in decimal (5.0 → "5"); another float in
    shortest round-trip form (5.50 → "5.5"); a boolean as "true"/"false".
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # As the contract's canonical number text: integral floats below 1e21 as integers, -0.0 as
        # "-0", others shortest round-trip with a bare exponent (1.5e-07 → "1.5e-7").
        if value == 0:
            return "-0" if math.copysign(1.0, value) < 0 else "0"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            return f"{mantissa}e{int(exponent)}"
        return text
    return value


def scalar_of(message: query_pb2.PropertyValue | query_pb2.Scalar) -> Scalar | None:
    kind = message.WhichOneof("kind")
    if kind is None or kind == "list_value":
        return None
    value: Scalar = getattr(message, kind)
    return value


def _as_number(value: Scalar) -> float | None:
    """The value as a number when it is one (or a numeric string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if _NUMERIC_STRING.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


# Bounds of a regex filter value, checked before anything compiles it: RE2 (the engine's) needs no
# more, and Python's parser, which checks the syntax first, recurses once per nested group.
MAX_REGEX_LENGTH = 10_000
MAX_REGEX_DEPTH = 100
# How deep property groups may nest (the reference's editor makes two levels).
MAX_GROUP_DEPTH = 10

# RE2 refuses a counted repetition ({n}, {n,}, {n,m}) above this, and nested counted repetitions
# whose counts multiply past it ("invalid repetition size"), so such a pattern never compiles there.
RE2_MAX_REPEAT = 1000
_COUNTED = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")
# The token before the one being scanned, as far as repetitions care.
_OTHER, _GROUP_START, _REPEAT, _LAZY = range(4)

# Escapes RE2 knows: control characters, classes, anchors, Unicode classes, \\Q..\\E, \\C.
_RE2_ESCAPE_LETTERS = frozenset("afnrtvxdDsSwWbBApPzQEC")
_RE2_FLAGS = frozenset("imsU-")


def _repeat_count(digits: str) -> int:
    """A repetition count, capped just past RE2's limit (a caller may send thousands of digits)."""
    digits = digits.lstrip("0")
    return int(digits or "0") if len(digits) <= 4 else RE2_MAX_REPEAT + 1


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid RE2 regex, or None when it looks valid.

    A scan rejects what RE2 lacks (look-around, backreferences, atomic groups, possessive
    quantifiers, conditionals, Python-only escapes and flags); Python's compiler then catches
    the rest of the broken syntax (unbalanced parentheses, nothing to repeat, bad ranges), except
    for patterns with RE2-only escapes, which are left to the engine. Length and group nesting
    are bounded first (MAX_REGEX_LENGTH, MAX_REGEX_DEPTH), so that compiler never runs out of stack.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"a regex has at most {MAX_REGEX_LENGTH} characters (got {len(pattern)})"
    i, in_class, re2_only, depth = 0, False, False, 0
    # Per open group, the largest product of counted repetitions inside it (RE2's repetition
    # walk); `closed` is the product of the group that ended just before position i, if any.
    repeats, closed = [1], 0
    # What the previous token was: RE2 refuses a repetition operator right after another one.
    after = _OTHER
    while i < len(pattern):
        char, following = pattern[i], pattern[i + 1 : i + 2]
        if char == "\\":
            if following.isdigit() and following != "0" and not in_class:
                return f"backreferences are not supported: {pattern[i : i + 2]!r}"
            if following.isalpha() and following not in _RE2_ESCAPE_LETTERS:
                return f"invalid escape {pattern[i : i + 2]!r}"
            re2_only = re2_only or following in ("p", "P", "z", "Q", "E", "C")
            i += 2
            if following in ("x", "p", "P") and pattern[i : i + 1] == "{" and not in_class:
                # \x{41} and \p{Greek}: the braces belong to the escape, not a repetition.
                end = pattern.find("}", i)
                i = len(pattern) if end < 0 else end + 1
            closed, after = 0, _OTHER
            continue
        if in_class:
            in_class = char != "]"
            i += 1
            continue
        if char == "{" and (counted := _COUNTED.match(pattern, i)) is not None:
            low_text, comma, high_text = counted.groups("")
            low = _repeat_count(low_text)
            count = _repeat_count(high_text) if comma and high_text else low
            if count < low:
                return f"the repetition {counted.group(0)} has its maximum below its minimum"
            # RE2 divides its budget by max (or min when unbounded); a count of 0 divides nothing.
            product = (closed or 1) * max(count, 1)
            if product > RE2_MAX_REPEAT:
                return (
                    f"a counted repetition repeats at most {RE2_MAX_REPEAT} times, nested ones "
                    f"multiplied: {counted.group(0)} goes past it"
                )
            if pattern[counted.end() : counted.end() + 1] == "+":
                return "possessive quantifiers are not supported"
            if after == _GROUP_START:
                return f"nothing to repeat before {counted.group(0)!r} at position {i}"
            if after in (_REPEAT, _LAZY):
                return f"a repetition of a repetition is not supported: {counted.group(0)!r}"
            after = _REPEAT
            repeats[-1] = max(repeats[-1], product)
            closed = 0
            i = counted.end()
            continue
        closed = 0
        if char == "[":
            i += 1
            i += pattern[i : i + 1] == "^"
            i += pattern[i : i + 1] == "]"  # a leading ']' is literal
            in_class, after = True, _OTHER
            continue
        if char == "(":
            depth += 1
            if depth > MAX_REGEX_DEPTH:
                return f"a regex nests groups at most {MAX_REGEX_DEPTH} deep"
            repeats.append(1)
        elif char == ")":
            depth = max(depth - 1, 0)
            if len(repeats) > 1:
                closed = repeats.pop()
                repeats[-1] = max(repeats[-1], closed)
        if char == "(" and following == "?":
            rest = pattern[i + 2 :]
            if rest.startswith(("=", "!", "<=", "<!", ">", "(", "P=", "#")):
                return f"unsupported group syntax {pattern[i : i + 4]!r} (RE2 has no look-around)"
            flags = re.match(r"[A-Za-z-]*", rest)
            letters = flags.group(0) if flags else ""
            if (
                letters
                and rest[len(letters) : len(letters) + 1] in (":", ")")
                and not set(letters) <= _RE2_FLAGS
            ):
                return f"unsupported regex flags {letters!r} (RE2 knows i, m, s, U)"
            re2_only = re2_only or "U" in letters
        if char in "*+?}" and following == "+":
            return "possessive quantifiers are not supported"
        if char in "*+?" and not (char == "?" and after in (_GROUP_START, _REPEAT)):
            if after == _GROUP_START:
                return f"nothing to repeat before {char!r} at position {i}"
            if after != _OTHER:
                return f"a repetition of a repetition is not supported: {pattern[max(i - 8, 0) : i + 1]!r}"
            after = _REPEAT
        else:
            # `(?` opens a special group and `*?`, `{2}?` are lazy: the `?` repeats nothing.
            after = _GROUP_START if char == "(" else _LAZY if char == "?" and after == _REPEAT else _OTHER
        i += 1
    if re2_only:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" for POSIX classes, valid in RE2
            re.compile(pattern)
    except re.error as error:
        return f"invalid regex: {error}"
    return None


def filter_sql(
    params: Params, f: query_pb2.PropertyFilter, path: str, timezone: str, cohorts: CohortSql | None = None
) -> str:
    """A NULL-safe boolean SQL expression (0/1, never NULL) for one event, person, hogql, element or
    (given `cohorts`) cohort filter; other types refused (filter_types.refuse)."""
    kind = f.type or _Type.PROPERTY_FILTER_TYPE_EVENT
    if f.negation and kind != _Type.PROPERTY_FILTER_TYPE_COHORT:
        raise QueryError(
            "negation applies to cohort filters only (other filters say it with their operator, e.g. is_not)",
            f"{path}.negation",
        )
    if kind == _Type.PROPERTY_FILTER_TYPE_COHORT and cohorts is not None:
        return _cohort_sql(params, f, path, cohorts)
    if kind not in (_Type.PROPERTY_FILTER_TYPE_EVENT, _Type.PROPERTY_FILTER_TYPE_PERSON):
        # Imported here: those compilers (expressions, actions) read property text from this module.
        from server.queries.common import filter_types

        if kind == _Type.PROPERTY_FILTER_TYPE_HOGQL:
            return filter_types.hogql_sql(params, f, path, timezone)
        if kind == _Type.PROPERTY_FILTER_TYPE_ELEMENT:
            return filter_types.element_sql(params, f, path)
        if kind == _Type.PROPERTY_FILTER_TYPE_COHORT:
            raise QueryError(f"filter type {_type_name(kind)} is not supported yet", f"{path}.type")
        filter_types.refuse(kind, path)
    if not f.HasField("key") or f.key == "":
        raise QueryError("a property filter needs a key", f"{path}.key")
    source = "person" if kind == _Type.PROPERTY_FILTER_TYPE_PERSON else "event"
    op = f.operator or _Op.PROPERTY_OPERATOR_EXACT
    value_path = f"{path}.value"

    if op == _Op.PROPERTY_OPERATOR_IS_SET:
        return f"({property_text(params, f.key, source)} IS NOT NULL)"
    if op == _Op.PROPERTY_OPERATOR_IS_NOT_SET:
        return f"({property_text(params, f.key, source)} IS NULL)"

    is_list = f.value.WhichOneof("kind") == "list_value"
    items: list[Scalar] = []
    if is_list:
        for i, item in enumerate(f.value.list_value.values):
            scalar = scalar_of(item)
            if scalar is None:
                raise QueryError("a list value holds strings, numbers or booleans", f"{value_path}[{i}]")
            items.append(scalar)

    if op in (_Op.PROPERTY_OPERATOR_BETWEEN, _Op.PROPERTY_OPERATOR_NOT_BETWEEN):
        return _between_sql(params, f.key, source, op, items if is_list else None, value_path)

    if op in (_Op.PROPERTY_OPERATOR_IN, _Op.PROPERTY_OPERATOR_NOT_IN):
        if not is_list:
            raise QueryError(f"operator {_op_name(op)} needs a list value", value_path)
        return _membership_sql(params, f.key, source, items, negated=op == _Op.PROPERTY_OPERATOR_NOT_IN)

    if op not in _SCALAR_OPS_NEEDING_VALUE:
        raise QueryError(f"operator {_op_name(op)} is not supported", f"{path}.operator")

    if not is_list:
        scalar = scalar_of(f.value)
        if scalar is None and op == _Op.PROPERTY_OPERATOR_EXACT:
            return f"({property_text(params, f.key, source)} IS NULL)"  # contract: `= null` is IS NULL
        if scalar is None and op == _Op.PROPERTY_OPERATOR_IS_NOT:
            return f"({property_text(params, f.key, source)} IS NOT NULL)"
        if scalar is None:
            raise QueryError(f"operator {_op_name(op)} needs a value", value_path)
        return _scalar_sql(params, f.key, source, op, scalar, value_path, timezone)

    if not items:
        return "1"
    if op == _Op.PROPERTY_OPERATOR_EXACT:
        return _membership_sql(params, f.key, source, items, negated=False)
    if op == _Op.PROPERTY_OPERATOR_IS_NOT:
        return _membership_sql(params, f.key, source, items, negated=True)
    parts = [
        _scalar_sql(params, f.key, source, op, item, f"{value_path}[{i}]", timezone)
        for i, item in enumerate(items)
    ]
    return _combine(parts, "AND" if op in _AND_COMBINED else "OR")


_COHORT_OPERATORS = frozenset(
    {
        _Op.PROPERTY_OPERATOR_UNSPECIFIED,
        _Op.PROPERTY_OPERATOR_IN,
        _Op.PROPERTY_OPERATOR_NOT_IN,
        _Op.PROPERTY_OPERATOR_EXACT,
    }
)
_DIGITS = re.compile(r"[0-9]{1,18}")


def cohort_id_of(f: query_pb2.PropertyFilter, path: str) -> int:
    """The cohort a cohort filter names (`{"type": "cohort", "key": "id", "value": <id>}`); QueryError
    naming the field for another key, operator or value."""
    if f.HasField("key") and f.key != "id":
        raise QueryError('a cohort filter\'s key is "id"', f"{path}.key")
    if f.operator not in _COHORT_OPERATORS:
        raise QueryError("a cohort filter's operator is in or not_in", f"{path}.operator")
    kind = f.value.WhichOneof("kind")
    cohort_id = 0
    if kind == "int_value":
        cohort_id = f.value.int_value
    elif kind == "string_value" and _DIGITS.fullmatch(f.value.string_value):
        cohort_id = int(f.value.string_value)  # legacy filters hold the id as text
    if cohort_id <= 0:
        raise QueryError("a cohort filter's value is a positive cohort id", f"{path}.value")
    return cohort_id


def _cohort_sql(params: Params, f: query_pb2.PropertyFilter, path: str, cohorts: CohortSql) -> str:
    cohort_id = cohort_id_of(f, path)
    members = cohorts(params, cohort_id, f"{path}.value")
    # As the reference: not_in or negation (either, or both) excludes the members. GLOBAL: on a
    # Distributed table the set is computed once and sent to every shard.
    negated = f.negation or f.operator == _Op.PROPERTY_OPERATOR_NOT_IN
    return f"(person_id {'GLOBAL NOT IN' if negated else 'GLOBAL IN'} ({members}))"


def _combine(parts: Sequence[str], joiner: Literal["AND", "OR"]) -> str:
    if not parts:
        return "1"
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {joiner} ".join(parts) + ")"


def _membership_sql(params: Params, key: str, source: str, items: Sequence[Scalar], *, negated: bool) -> str:
    if not items:
        return "1"  # an empty list matches everything (in and not_in alike), as the reference
    texts = params.bind([value_text(item) for item in items], "Array(String)")
    found = f"ifNull(has({texts}, {property_text(params, key, source)}), 0)"
    return f"(NOT {found})" if negated else found


def _between_sql(
    params: Params, key: str, source: str, op: _OpValue, items: list[Scalar] | None, value_path: str
) -> str:
    bounds = [_as_number(item) for item in items] if items is not None else []
    if items is None or len(items) != 2 or any(bound is None for bound in bounds):
        raise QueryError(f"operator {_op_name(op)} needs a list of two numbers", value_path)
    low, high = bounds
    assert low is not None and high is not None
    if low > high:
        raise QueryError(f"operator {_op_name(op)} needs the smaller number first", value_path)
    number = f"toFloat64OrNull({property_text(params, key, source)})"
    lo, hi = params.bind(low, "Float64"), params.bind(high, "Float64")
    if op == _Op.PROPERTY_OPERATOR_BETWEEN:
        return f"ifNull({number} >= {lo} AND {number} <= {hi}, 0)"
    return f"ifNull({number} < {lo} OR {number} > {hi}, 0)"


def _scalar_sql(
    params: Params, key: str, source: str, op: _OpValue, value: Scalar, value_path: str, timezone: str
) -> str:
    if op in _DATE_OPS and not _ISO_DATETIME_RE.fullmatch(value_text(value).strip()):
        return "0"  # an unparsable date value matches nothing (checked before any parameter is bound)
    text = property_text(params, key, source)
    if op == _Op.PROPERTY_OPERATOR_EXACT:
        return f"ifNull({text} = {params.bind(value_text(value), 'String')}, 0)"
    if op == _Op.PROPERTY_OPERATOR_IS_NOT:
        return f"ifNull({text} != {params.bind(value_text(value), 'String')}, 1)"
    if op in (_Op.PROPERTY_OPERATOR_ICONTAINS, _Op.PROPERTY_OPERATOR_NOT_ICONTAINS):
        found = (
            f"ifNull(positionCaseInsensitiveUTF8({text}, {params.bind(value_text(value), 'String')}) > 0, 0)"
        )
        return found if op == _Op.PROPERTY_OPERATOR_ICONTAINS else f"(NOT {found})"
    if op in (_Op.PROPERTY_OPERATOR_REGEX, _Op.PROPERTY_OPERATOR_NOT_REGEX):
        pattern = value_text(value)
        problem = regex_problem(pattern)
        if problem is not None:
            raise QueryError(problem, value_path)
        found = f"ifNull(match({text}, {params.bind(pattern, 'String')}), 0)"
        return found if op == _Op.PROPERTY_OPERATOR_REGEX else f"(NOT {found})"
    if op in _COMPARE:
        sign = _COMPARE[op]
        number = _as_number(value)
        if number is not None:
            return f"ifNull(toFloat64OrNull({text}) {sign} {params.bind(number, 'Float64')}, 0)"
        return f"ifNull({text} {sign} {params.bind(value_text(value), 'String')}, 0)"
    return _date_sql(params, text, op, value_text(value), timezone)


# The date texts is_date_* understands (contract: "ISO 8601 dates and date-times"): a date, an optional
# time (T or space, optional seconds and fraction) and an optional offset. Other texts are unparsable.
_ISO_DATETIME = (
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?"
)
_ISO_DATETIME_RE = re.compile(_ISO_DATETIME)


_DATE_OPS = frozenset(
    {
        _Op.PROPERTY_OPERATOR_IS_DATE_EXACT,
        _Op.PROPERTY_OPERATOR_IS_DATE_BEFORE,
        _Op.PROPERTY_OPERATOR_IS_DATE_AFTER,
    }
)


def _date_sql(params: Params, text: str, op: _OpValue, value: str, timezone: str) -> str:
    tz = params.bind(timezone, "String")
    iso = params.bind(f"^{_ISO_DATETIME}$", "String")
    parsed = f"if(match(trimBoth({text}), {iso}), parseDateTime64BestEffortOrNull(trimBoth({text}), 6, {tz}), NULL)"
    sign = {
        _Op.PROPERTY_OPERATOR_IS_DATE_EXACT: "=",
        _Op.PROPERTY_OPERATOR_IS_DATE_BEFORE: "<",
        _Op.PROPERTY_OPERATOR_IS_DATE_AFTER: ">",
    }[op]
    day = _calendar_day(value.strip())
    if day is not None:
        return f"ifNull(toDate({parsed}, {tz}) {sign} {params.bind(day.isoformat(), 'Date')}, 0)"
    bound = f"parseDateTime64BestEffortOrNull({params.bind(value.strip(), 'String')}, 6, {tz})"
    return f"ifNull({parsed} {sign} {bound}, 0)"


def _calendar_day(value: str) -> dt.date | None:
    match = _DATE_ONLY.fullmatch(value)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in value.split("-")))
    except ValueError:
        return None


# --- lists and groups ------------------------------------------------------------------------------


def filters_sql(
    params: Params,
    filters: Iterable[query_pb2.PropertyFilter],
    path: str,
    timezone: str,
    cohorts: CohortSql | None = None,
) -> str:
    """The AND of a repeated PropertyFilter field (`1` when empty); item i is reported at `path[i]`."""
    return _combine(
        [filter_sql(params, f, f"{path}[{i}]", timezone, cohorts) for i, f in enumerate(filters)], "AND"
    )


def properties_sql(
    params: Params, props: query_pb2.Properties, path: str, timezone: str, cohorts: CohortSql | None = None
) -> str:
    """SQL for a `Properties` message: a flat list is ANDed, a group nests AND/OR; empty matches all."""
    kind = props.WhichOneof("kind")
    if kind == "list":
        # A list is the JSON array itself (`properties[0]`), as the reference writes it.
        return filters_sql(params, props.list.values, path, timezone, cohorts)
    if kind == "group":
        group = props.group
        parts = [
            _group_sql(params, value, f"{path}.values[{i}]", timezone, 1, cohorts)
            for i, value in enumerate(group.values)
        ]
        return _combine(parts, _joiner(group.type))
    return "1"


def _joiner(kind: query_pb2.FilterLogicalOperator.ValueType) -> Literal["AND", "OR"]:
    return "OR" if kind == query_pb2.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_OR else "AND"


def _group_sql(
    params: Params,
    group: query_pb2.PropertyGroupFilterValue,
    path: str,
    timezone: str,
    depth: int,
    cohorts: CohortSql | None = None,
) -> str:
    if depth > MAX_GROUP_DEPTH:
        raise QueryError(f"property groups nest at most {MAX_GROUP_DEPTH} levels deep", path)
    parts: list[str] = []
    for i, item in enumerate(group.values):
        item_path = f"{path}.values[{i}]"
        which = item.WhichOneof("item")
        if which == "filter":
            parts.append(filter_sql(params, item.filter, item_path, timezone, cohorts))
        elif which == "group":
            parts.append(_group_sql(params, item.group, item_path, timezone, depth + 1, cohorts))
        else:
            raise QueryError("a group member needs a filter or a group", item_path)
    return _combine(parts, _joiner(group.type))
