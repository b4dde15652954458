"""Findings on a lifecycle result: each status over time, and gains (new, resurrecting) against losses (dormant)."""

from __future__ import annotations

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2, results_pb2
from server.domain.analysis import trends
from server.domain.analysis.text import num, signed

_TOTALS = {
    query_pb2.LIFECYCLE_TOGGLE_NEW: "new_total",
    query_pb2.LIFECYCLE_TOGGLE_RETURNING: "returning_total",
    query_pb2.LIFECYCLE_TOGGLE_RESURRECTING: "resurrecting_total",
    query_pb2.LIFECYCLE_TOGGLE_DORMANT: "dormant_total",
}


def findings(result: results_pb2.LifecycleResult) -> apb.LifecycleFindings:
    """The findings; each status series is analysed as a trends series of its own."""
    out = apb.LifecycleFindings()
    totals = dict.fromkeys(_TOTALS.values(), 0.0)
    for series in result.series:
        if series.status in _TOTALS:
            totals[_TOTALS[series.status]] += abs(sum(series.data))
        if len(series.data) > 0:
            as_trend = results_pb2.TrendsSeries(label=series.label, data=series.data, days=series.days)
            out.statuses.append(trends.series_finding(as_trend))
    for name, value in totals.items():
        setattr(out, name, value)
    out.net_growth = out.new_total + out.resurrecting_total - out.dormant_total
    out.balance = (
        apb.DIRECTION_UP
        if out.net_growth > 0
        else apb.DIRECTION_DOWN
        if out.net_growth < 0
        else apb.DIRECTION_FLAT
    )
    if out.dormant_total > 0:
        out.quick_ratio = (out.new_total + out.resurrecting_total) / out.dormant_total
    return out


def markdown(out: apb.LifecycleFindings) -> str:
    """The findings as short Markdown."""
    if not out.statuses:
        return "The cached result has no data points."
    gained = out.new_total + out.resurrecting_total
    verdict = {apb.DIRECTION_UP: "growing", apb.DIRECTION_DOWN: "shrinking"}.get(
        out.balance, "holding steady"
    )
    ratio = f", quick ratio {out.quick_ratio:.2f}" if out.HasField("quick_ratio") else ""
    lines = [
        f"**Lifecycle**: {num(gained)} gained ({num(out.new_total)} new, {num(out.resurrecting_total)} resurrecting) "
        f"against {num(out.dormant_total)} gone dormant: net {signed(out.net_growth)}{ratio}, the active base is {verdict}.",
        f"- Returning: {num(out.returning_total)} over the range.",
    ]
    for f in out.statuses:
        direction = {apb.DIRECTION_UP: "up", apb.DIRECTION_DOWN: "down"}.get(f.direction, "flat")
        line = f"- {f.label}: {direction} from {num(f.first_value)} to {num(f.last_value)}"
        if f.anomalies:
            line += "; anomalies " + ", ".join(
                f"{p.day} ({num(p.value)})" for p in f.anomalies[-trends.TEXT_ANOMALIES :]
            )
        lines.append(line + ".")
    return "\n".join(lines)
