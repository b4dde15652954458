"""`python -m server query convert`: reference JSON ⇄ protobuf JSON, through the command line too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.queries.common.codec import CodecError
from server.queries.common.convert import convert

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-examples"
ROOT = Path(__file__).resolve().parents[2]


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_a_seed_insight_converts_to_proto_json_and_back() -> None:
    insight = json.loads((SEED / "retrieve-insights.response.json").read_text())
    proto_json = convert(json.dumps(insight), "proto")
    assert (
        json.loads(proto_json)["insight_viz_node"]["source"]["trends_query"]["interval"]
        == "INTERVAL_TYPE_DAY"
    )
    back = json.loads(convert(proto_json, "reference"))
    # null means "not set"; TrendsQuery.properties = [] survives (a union's list member keeps it).
    assert back == without_nulls(insight["query"])
    assert back["source"]["properties"] == []


def test_an_invalid_node_names_the_failing_path() -> None:
    with pytest.raises(CodecError) as caught:
        convert('{"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "math": "bogus"}]}', "proto")
    assert caught.value.path == "series[0].math"


def test_the_command_line_converts_and_reports_errors(tmp_path: Path) -> None:
    good = tmp_path / "query.json"
    good.write_text('{"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}')
    run = subprocess.run(
        [sys.executable, "-m", "server", "query", "convert", str(good)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"trends_query": {"series": [{"events_node": {"event": "$pageview"}}]}}
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "TrendsQuery", "interval": "fortnight", "series": []}')
    run = subprocess.run(
        [sys.executable, "-m", "server", "query", "convert", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "interval" in run.stderr and "Traceback" not in run.stderr
