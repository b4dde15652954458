"""Findings on a trends result: direction, rises and falls, the last value, anomalies, movers, compare."""

from __future__ import annotations

from collections.abc import Sequence

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2
from server.domain.alerts.detectors import DetectorConfig, DetectorType, detect
from server.domain.analysis.text import change_percent, num, percent, scalar, share, signed

# The alert detectors with a one-week training window (alerts default to 30 points, which would
# leave a typical 31-90 day insight with few scored points) and strict cut-offs. Each still needs
# 31 points (MIN_SAMPLES), as an alert does. On a one-week window MAD alone fires on ordinary noise
# (a small window often has a tiny MAD), so a point is anomalous only when two of the three agree.
DETECTORS = (
    DetectorConfig(type=DetectorType.ZSCORE, window=7, threshold=0.99),
    DetectorConfig(type=DetectorType.MAD, window=7, threshold=0.99),
    DetectorConfig(type=DetectorType.IQR, window=7, multiplier=3.0),
)
AGREEING = 2
TOP_MOVERS = 3
# Anomalies named in the text per series (the most recent; all are in the findings).
TEXT_ANOMALIES = 5
# Series described in the text (all are in the findings): a breakdown may have many.
TEXT_SERIES = 5


def _changes(days: Sequence[str], data: Sequence[float]) -> tuple[apb.BucketChange | None, apb.BucketChange | None]:
    """The largest rise and the largest fall between consecutive buckets (the first such on ties)."""
    rise: apb.BucketChange | None = None
    fall: apb.BucketChange | None = None
    for i in range(1, len(data)):
        step = apb.BucketChange(
            from_day=days[i - 1], to_day=days[i], from_value=data[i - 1], to_value=data[i], change=data[i] - data[i - 1]
        )
        if step.change > 0 and (rise is None or step.change > rise.change):
            rise = step
        if step.change < 0 and (fall is None or step.change < fall.change):
            fall = step
    return rise, fall


def _anomalies(days: Sequence[str], data: Sequence[float]) -> tuple[bool, list[apb.AnomalousPoint]]:
    """(whether the detectors could decide, the points at least AGREEING of them flag, with those)."""
    flagged: dict[int, list[str]] = {}
    decided = False
    for config in DETECTORS:
        detection = detect(data, config, days)
        decided = decided or detection.decided
        for index in detection.triggered_points:
            flagged.setdefault(index, []).append(str(DetectorType(config.type).value))
    agreed = sorted(i for i, names in flagged.items() if len(names) >= AGREEING)
    points = [apb.AnomalousPoint(day=days[i], value=data[i], detectors=flagged[i]) for i in agreed]
    return decided, points


def series_finding(series: results_pb2.TrendsSeries) -> apb.SeriesFinding:
    """The findings on one series with at least one bucket."""
    data, days = list(series.data), list(series.days)
    first, last = data[0], data[-1]
    average = sum(data) / len(data)
    rise, fall = _changes(days, data)
    checked, anomalies = _anomalies(days, data)
    finding = apb.SeriesFinding(
        label=series.label,
        breakdown_value=scalar(series.breakdown_value),
        first_value=first,
        last_value=last,
        change=last - first,
        direction=apb.DIRECTION_UP if last > first else apb.DIRECTION_DOWN if last < first else apb.DIRECTION_FLAT,
        average=average,
        anomalies_checked=checked,
        anomalies=anomalies,
    )
    relative = change_percent(first, last)
    if relative is not None:
        finding.change_percent = relative
    if rise is not None:
        finding.largest_rise.CopyFrom(rise)
    if fall is not None:
        finding.largest_fall.CopyFrom(fall)
    against = share(last - average, average)
    if against is not None:
        finding.last_vs_average_percent = against
    return finding


def _compare(series: Sequence[results_pb2.TrendsSeries]) -> list[apb.CompareFinding]:
    """Each current series against its previous-period twin (same order and breakdown value)."""
    previous = {(s.order, scalar(s.breakdown_value)): s for s in series if s.compare_label == "previous"}
    found = []
    for s in series:
        twin = previous.get((s.order, scalar(s.breakdown_value)))
        if s.compare_label != "current" or twin is None:
            continue
        finding = apb.CompareFinding(label=s.label, current_total=sum(s.data), previous_total=sum(twin.data))
        relative = change_percent(finding.previous_total, finding.current_total)
        if relative is not None:
            finding.change_percent = relative
        found.append(finding)
    return found


def findings(result: results_pb2.TrendsResult) -> apb.TrendsFindings:
    """The findings on a trends result."""
    current = [s for s in result.series if s.compare_label != "previous" and len(s.data) > 0]
    out = apb.TrendsFindings(series=[series_finding(s) for s in current], compare=_compare(result.series))
    movers = [f for f in out.series if f.breakdown_value]
    movers.sort(key=lambda f: -abs(f.change))
    for f in movers[:TOP_MOVERS]:
        mover = apb.BreakdownMover(breakdown_value=f.breakdown_value, label=f.label, change=f.change)
        if f.HasField("change_percent"):
            mover.change_percent = f.change_percent
        out.top_movers.append(mover)
    return out


def _series_text(f: apb.SeriesFinding) -> list[str]:
    direction = {apb.DIRECTION_UP: "up", apb.DIRECTION_DOWN: "down"}.get(f.direction, "flat")
    relative = f" ({percent(f.change_percent)})" if f.HasField("change_percent") else ""
    lines = [f"**{f.label}**: {direction} from {num(f.first_value)} to {num(f.last_value)}{relative}."]
    moves = []
    if f.HasField("largest_rise"):
        r = f.largest_rise
        moves.append(f"largest rise {signed(r.change)} ({r.from_day} → {r.to_day})")
    if f.HasField("largest_fall"):
        d = f.largest_fall
        moves.append(f"largest fall {signed(d.change)} ({d.from_day} → {d.to_day})")
    if moves:
        joined = "; ".join(moves)
        lines.append(f"- {joined[0].upper()}{joined[1:]}.")
    if f.HasField("last_vs_average_percent"):
        lines.append(f"- Last value {num(f.last_value)} is {percent(f.last_vs_average_percent)} against the average {num(f.average)}.")
    if not f.anomalies_checked:
        lines.append("- Too few points to check for anomalies (31 needed).")
    elif not f.anomalies:
        lines.append("- No anomalies.")
    else:
        shown = f.anomalies[-TEXT_ANOMALIES:]
        points = ", ".join(f"{p.day} ({num(p.value)}; {', '.join(p.detectors)})" for p in shown)
        earlier = len(f.anomalies) - len(shown)
        lines.append(f"- Anomalies: {points}" + (f" and {earlier} earlier." if earlier else "."))
    return lines


def markdown(out: apb.TrendsFindings) -> str:
    """The findings as short Markdown."""
    if not out.series:
        return "The cached result has no data points."
    lines: list[str] = []
    for f in out.series[:TEXT_SERIES]:
        lines.extend(_series_text(f))
    if len(out.series) > TEXT_SERIES:
        lines.append(f"_{len(out.series) - TEXT_SERIES} more series are in the findings._")
    if out.top_movers:
        movers = ", ".join(
            f"{m.breakdown_value} {signed(m.change)}" + (f" ({percent(m.change_percent)})" if m.HasField("change_percent") else "")
            for m in out.top_movers
        )
        lines.append(f"**Top movers**: {movers}.")
    for c in out.compare:
        relative = f" ({percent(c.change_percent)})" if c.HasField("change_percent") else ""
        lines.append(f"**{c.label} against the previous period**: {num(c.current_total)} vs {num(c.previous_total)}{relative}.")
    return "\n".join(lines)
