"""Number and value wording shared by the analyzers' Markdown."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2


def num(value: float) -> str:
    """A value as people read it: whole numbers without decimals, others with two."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def signed(value: float) -> str:
    """A change with its sign ("+3", "-1.50")."""
    return ("+" if value > 0 else "") + num(value)


def percent(value: float) -> str:
    """A signed percentage with one decimal ("+12.5%")."""
    return f"{value:+.1f}%"


def share(part: float, whole: float) -> float | None:
    """part in percent of whole; None when whole is 0 (no meaningful ratio)."""
    return None if whole == 0 else part * 100.0 / whole


def change_percent(first: float, last: float) -> float | None:
    """The relative change from first to last in percent; None when first is 0."""
    return None if first == 0 else (last - first) * 100.0 / abs(first)


def scalar(value: query_pb2.Scalar) -> str:
    """A result's scalar breakdown value as text ("" when unset)."""
    which = value.WhichOneof("kind")
    return "" if which is None else str(getattr(value, which))


def breakdown(value: results_pb2.BreakdownValue) -> str:
    """A funnel or retention breakdown value as text ("" when unset)."""
    which = value.WhichOneof("kind")
    if which == "list_value":
        return ", ".join(scalar(v) for v in value.list_value.values)
    return "" if which is None else str(getattr(value, which))
