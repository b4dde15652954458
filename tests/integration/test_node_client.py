"""The Node.js client (clients/node: @grpc/grpc-js + @grpc/proto-loader over protos/) against a served process.

The client prints one JSON summary of what it saw; this test checks it, and checks through Python's own
stubs that the calls did what the summary says (the numbers it decoded, the mask it sent)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.serverproc import Prepared, prepared, serving
from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from tests.support.nodejs import node_and_npm, npm_ci

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "node"
# Small: the client reads a 30-day trend, and the demo spreads these over 90 days.
DEMO_EVENTS = 3000
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the client's packages installed (npm ci from the committed package-lock.json)."""
    node, npm = node_and_npm()
    npm_ci(npm, CLIENT_DIR)
    return node


@pytest.fixture(scope="module")
def served() -> Iterator[Prepared]:
    """`python -m server serve` of its own over a small demo dataset, with a '*' key."""
    with prepared(DEMO_EVENTS, "node-client-") as setup, serving(setup):
        yield setup


@pytest.fixture(scope="module")
def summary(node: str, served: Prepared) -> dict[str, Any]:
    """The client's JSON summary of one run."""
    env = {
        **os.environ,
        "INSIGHTS_TARGET": served.target,
        "INSIGHTS_API_KEY": served.key,
        "INSIGHTS_ENVIRONMENT_ID": str(served.environment_id),
    }
    done = subprocess.run(
        [node, str(CLIENT_DIR / "client.js")],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    log = (served.tmp / "server.log").read_text(errors="replace")
    assert done.returncode == 0, f"client failed:\n{done.stdout}\n{done.stderr}\nserver log:\n{log}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got:\n{done.stdout}"
    result: dict[str, Any] = json.loads(lines[0])
    assert result["ok"] is True, result
    return result


@pytest.fixture(scope="module")
def python_stub(served: Prepared) -> Iterator[tuple[igrpc.InsightsServiceStub, tuple[tuple[str, str]]]]:
    """Python's own stub on the same server, to check what the Node.js calls did."""
    with grpc.insecure_channel(served.target) as channel:
        yield igrpc.InsightsServiceStub(channel), (("authorization", f"Bearer {served.key}"),)


def _series(summary_part: dict[str, Any]) -> list[tuple[str, list[float]]]:
    return [(s["label"], [float(v) for v in s["data"]]) for s in summary_part["series"]]


def test_computed_result_decodes_to_the_servers_numbers(summary: dict[str, Any], python_stub: Any, served: Prepared) -> None:
    stub, auth = python_stub
    got = summary["get"]
    assert got["id"] == summary["created"]["id"] and got["result_kind"] == "trends"
    assert got["is_cached"] is False and got["has_last_refresh"], "a computing refresh mode did not compute"
    [(label, data)] = _series(got)
    assert label == "$pageview" and len(data) == 31  # -30d by day: 30 past days and today
    assert sum(data) > 0, "the demo's pageviews of the last 30 days are missing"

    # The same insight read by Python's stubs from the cache the Node.js call filled.
    cached = stub.GetInsight(
        ipb.GetInsightRequest(
            environment_id=served.environment_id, id=int(got["id"]), refresh=cpb.REFRESH_MODE_FORCE_CACHE
        ),
        metadata=auth,
        timeout=30,
    )
    assert [(s.label, list(s.data)) for s in cached.result.trends.series] == [(label, data)]


def test_list_filters_by_tag_kind_and_search(summary: dict[str, Any], python_stub: Any, served: Prepared) -> None:
    stub, auth = python_stub
    created = summary["created"]
    assert summary["list"] == {"count": "1", "ids": [created["id"]]}
    # Without the kind filter, the funnel sharing the tag is listed too: the kind filter dropped it.
    tagged = stub.ListInsights(
        ipb.ListInsightsRequest(environment_id=served.environment_id, tags=created["tags"]),
        metadata=auth,
        timeout=30,
    )
    assert sorted(str(i.id) for i in tagged.results) == sorted([created["id"], created["funnel_id"]])


def test_update_writes_only_the_masked_field(summary: dict[str, Any], python_stub: Any, served: Prepared) -> None:
    stub, auth = python_stub
    marker = summary["marker"]
    assert summary["update"] == {"name": f"Renamed {marker}", "description": "kept by the mask"}
    stored = stub.GetInsight(
        ipb.GetInsightRequest(environment_id=served.environment_id, id=int(summary["created"]["id"])),
        metadata=auth,
        timeout=30,
    )
    assert (stored.name, stored.description) == (f"Renamed {marker}", "kept by the mask")


def test_stream_query_ends_with_the_same_result(summary: dict[str, Any]) -> None:
    stream = summary["stream"]
    assert stream["kinds"][0] == "status" and stream["kinds"][-1] == "result", stream["kinds"]
    assert stream["kinds"].count("result") == 1
    assert stream["final_state"] is True
    assert _series(stream) == _series(summary["get"])


def test_shared_insight_is_read_with_the_token_alone(summary: dict[str, Any]) -> None:
    shared = summary["shared"]
    assert shared["enabled"] is True and shared["token_length"] > 0
    assert shared["id"] == summary["created"]["id"]
    assert shared["name"] == f"Renamed {summary['marker']}"
    assert _series(shared) == _series(summary["get"])


def test_rich_error_is_decoded_from_the_status_details_trailer(summary: dict[str, Any]) -> None:
    error = summary["error"]
    assert error["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] == error["status_code"]
    assert "insight.name" in error["message"]
    assert error["details"], "no grpc-status-details-bin trailer was decoded"
    by_type = {d["type"]: d for d in error["details"]}
    violations = by_type["google.rpc.BadRequest"]["field_violations"]
    assert [v["field"] for v in violations] == ["insight.name"]
    assert "400" in violations[0]["description"]
    info = by_type["google.rpc.ErrorInfo"]
    assert info["domain"] == "insights.v1" and info["reason"] == "INVALID_ARGUMENT"
    assert info["metadata"]["field"] == "insight.name"
    assert set(info["metadata"]) == {"field", "request_id"} and len(info["metadata"]["request_id"]) == 32

