"""CSV renderings of insight results (one layout per kind) and their cutting into stream chunks."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import query_pb2, results_pb2

# The largest chunk of a CSV stream, in UTF-8 bytes (well under gRPC's default 4 MiB message cap).
CHUNK_BYTES = 1024 * 1024
# Spreadsheet programs run a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Row = list[Any]


def text(value: str) -> str:
    """A text cell made inert for spreadsheets: a leading formula character gets a "'" before it
    (OWASP's advice). Numbers are written as numbers and never changed, so -3 stays -3."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def number(value: float | int) -> str:
    """A number cell: integers without a fraction (3, not 3.0), others as Python's shortest repr."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return repr(value)


def scalar(value: query_pb2.Scalar) -> str:
    """A breakdown scalar as a cell ("" when unset)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return ""
    if kind == "string_value":
        return text(value.string_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    return number(getattr(value, kind))


def breakdown(value: results_pb2.BreakdownValue) -> str:
    """A result item's breakdown value as a cell: the value, or its parts joined by "::"."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return text(value.string_value)
    if kind == "int_value":
        return str(value.int_value)
    if kind == "list_value":
        return "::".join(scalar(v) for v in value.list_value.values)
    return ""


def optional(message: Any, name: str) -> str:
    """An optional numeric field as a cell, "" when unset."""
    return number(getattr(message, name)) if message.HasField(name) else ""


def _bucketed(
    items: Iterable[tuple[Row, Sequence[str], Sequence[float]]], head: Row, names: dict[str, str] | None = None
) -> Iterator[Row]:
    """Rows of series with one column per bucket: the buckets of all series, sorted (ISO dates sort
    in time order), each row blank where its series has no such bucket; `names` titles the columns."""
    items = list(items)
    buckets = sorted({b for _, keys, _ in items for b in keys})
    yield head + [(names or {}).get(b, b) for b in buckets]
    for lead, keys, values in items:
        by_bucket = dict(zip(keys, values, strict=False))
        yield lead + [number(by_bucket[b]) if b in by_bucket else "" for b in buckets]


def trends_rows(result: results_pb2.TrendsResult) -> Iterator[Row]:
    """One row per series (breakdown value, compared period), a column per bucket day; total-value
    series fill `aggregated_value` instead."""
    yield from _bucketed(
        (
            (
                [
                    text(s.label),
                    scalar(s.breakdown_value) if s.HasField("breakdown_value") else "::".join(map(text, s.breakdown_values)),
                    s.compare_label,
                    optional(s, "aggregated_value"),
                ],
                list(s.days),
                list(s.data),
            )
            for s in result.series
        ),
        ["series", "breakdown_value", "compare_label", "aggregated_value"],
    )


def funnels_rows(result: results_pb2.FunnelsResult) -> Iterator[Row]:
    """Steps: one row per step (per breakdown value); time to convert: one row per bin; trends: one
    row per breakdown value, a column per period (the conversion rate in percent)."""
    shape = result.WhichOneof("result")
    if shape == "time_to_convert":
        yield ["bin_start_seconds", "count"]
        for b in result.time_to_convert.bins:
            yield [optional(b, "bin_start_seconds"), optional(b, "count")]
    elif shape == "trends":
        yield from _bucketed(
            (([breakdown(s.breakdown_value)], list(s.days), list(s.data)) for s in result.trends.series),
            ["breakdown_value"],
        )
    else:
        yield [
            "breakdown_value",
            "order",
            "name",
            "custom_name",
            "count",
            "average_conversion_time",
            "median_conversion_time",
        ]
        for steps in result.steps.breakdowns:
            for step in steps.steps:
                yield [
                    breakdown(step.breakdown),
                    optional(step, "order"),
                    text(step.name),
                    text(step.custom_name),
                    optional(step, "count"),
                    optional(step, "average_conversion_time"),
                    optional(step, "median_conversion_time"),
                ]


def retention_rows(result: results_pb2.RetentionResult) -> Iterator[Row]:
    """Cohorts × periods: one row per cohort, a column per period (the label of its values, such as
    "Day 3") holding the actors retained."""
    periods = max((len(c.values) for c in result.cohorts), default=0)
    names: list[str] = [f"period_{i}" for i in range(periods)]
    for cohort in result.cohorts:
        for i, value in enumerate(cohort.values):
            if value.label and names[i] == f"period_{i}":
                names[i] = value.label
    yield ["cohort", "label", "breakdown_value", *names]
    for cohort in result.cohorts:
        counts = [optional(v, "count") for v in cohort.values]
        yield [cohort.date, text(cohort.label), breakdown(cohort.breakdown_value), *counts, *[""] * (periods - len(counts))]


def stickiness_rows(result: results_pb2.StickinessResult) -> Iterator[Row]:
    """Like trends: one row per series (compared period), a column per interval count."""
    # Interval counts sort as numbers through zero-padded keys; the columns show their labels.
    names = {f"{d:09d}": label for s in result.series for d, label in zip(s.days, s.labels, strict=False)}
    yield from _bucketed(
        (([text(s.label), s.compare_label], [f"{d:09d}" for d in s.days], list(s.data)) for s in result.series),
        ["series", "compare_label"],
        {k: text(v) for k, v in names.items()},
    )


def lifecycle_rows(result: results_pb2.LifecycleResult) -> Iterator[Row]:
    """Like trends: one row per status, a column per period day."""
    yield from _bucketed(
        (([text(s.label)], list(s.days), list(s.data)) for s in result.series),
        ["series"],
    )


def paths_rows(result: results_pb2.PathsResult) -> Iterator[Row]:
    """One row per edge."""
    yield ["source", "target", "value", "average_conversion_time"]
    for e in result.edges:
        yield [text(e.source), text(e.target), optional(e, "value"), optional(e, "average_conversion_time")]


def cell(value: struct_pb2.Value) -> str:
    """A SQL value as a cell: null empty, booleans true/false, numbers as numbers, lists and
    objects as JSON."""
    kind = value.WhichOneof("kind")
    if kind in (None, "null_value"):
        return ""
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "number_value":
        return number(value.number_value)
    if kind == "string_value":
        return text(value.string_value)
    return text(json.dumps(json_format.MessageToDict(value), separators=(",", ":")))


def hogql_rows(result: results_pb2.HogQLResult) -> Iterator[Row]:
    """Columns × rows, as the table shows them."""
    yield [text(c) for c in result.columns]
    for row in result.rows:
        yield [cell(v) for v in row.values]


def result_rows(result: results_pb2.InsightResult) -> Iterator[Row]:
    """The CSV rows (header first) of a result, in its kind's layout."""
    kind = result.WhichOneof("result")
    if kind == "trends":
        return trends_rows(result.trends)
    if kind == "funnels":
        return funnels_rows(result.funnels)
    if kind == "retention":
        return retention_rows(result.retention)
    if kind == "paths":
        return paths_rows(result.paths)
    if kind == "stickiness":
        return stickiness_rows(result.stickiness)
    if kind == "lifecycle":
        return lifecycle_rows(result.lifecycle)
    if kind == "hogql":
        return hogql_rows(result.hogql)
    return iter(())


def chunks(rows: Iterable[Row], limit: int = CHUNK_BYTES) -> Iterator[str]:
    """The CSV document of `rows` in pieces of at most `limit` UTF-8 bytes, cut at row ends unless a
    single row is larger (then at character boundaries)."""
    if limit < 4:
        raise ValueError("a chunk must hold at least one UTF-8 character (4 bytes)")
    out = io.StringIO()
    writer = csv.writer(out)
    pending: list[str] = []
    size = 0
    for row in rows:
        writer.writerow(row)
        line = out.getvalue()
        out.seek(0)
        out.truncate()
        encoded = len(line.encode())
        if size + encoded > limit and pending:
            yield "".join(pending)
            pending, size = [], 0
        if encoded > limit:
            yield from _split(line, limit)
            continue
        pending.append(line)
        size += encoded
    if pending:
        yield "".join(pending)


def _split(line: str, limit: int) -> Iterator[str]:
    """A row longer than `limit` bytes in pieces of at most `limit` bytes, never inside a character."""
    data = line.encode()
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1  # a continuation byte: the character starts before the cut
        yield data[start:end].decode()
        start = end
