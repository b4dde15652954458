"""Stopping work: how fast the engine goes quiet after a deadline, a CancelQuery and a SIGTERM, and
what a small query waits meanwhile, against the same small query on an idle server (same run).

A server process of its own over the demo dataset (`bench/serverproc.py`). The heavy query is a
trend of 100 series (the most a query may have), each with a regex filter and distinct persons per
hour over 90 days: a minute or more of engine work on two cores.

1. Baseline: the median latency of a small trend (FORCE_BLOCKING) on the idle server.
2. Deadline: the heavy query with a 50 ms deadline; the server's CPU seconds in the 1 s after the
   deadline and in the 4 s after that (target: the engine idle within 1 s, ~0 CPU after), and a small
   query's latency right after the deadline (ratio to the baseline).
3. CancelQuery: the heavy query FORCE_ASYNC; once the engine reports rows read, CancelQuery; its
   latency, the CPU after it returned, and a small query's latency right after.
4. SIGTERM with a 2 s grace while the heavy query computes: seconds until the process exited
   (target: grace + 5 s at most).

    .venv/bin/python bench/cancel.py                 # 1M demo events
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serverproc import Prepared, cpu_seconds, prepared, serving
from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc

GRACE = 2.0


def heavy() -> query_pb2.QueryNode:
    series = []
    for i in range(100):
        node = query_pb2.EventsNode(event="$pageview", math=query_pb2.MATH_TYPE_DAU, custom_name=f"s{i}")
        node.properties.add(
            key="$browser",
            operator=query_pb2.PROPERTY_OPERATOR_REGEX,
            value=query_pb2.PropertyValue(string_value=f"^(Ch|Fi|Sa)[a-z]*{i % 7}?"),
            type=query_pb2.PROPERTY_FILTER_TYPE_EVENT,
        )
        series.append(query_pb2.SeriesNode(events_node=node))
    return query_pb2.QueryNode(
        trends_query=query_pb2.TrendsQuery(
            series=series, interval=query_pb2.INTERVAL_TYPE_HOUR, date_range=query_pb2.DateRange(date_from="-90d")
        )
    )


def small(i: int) -> query_pb2.QueryNode:
    # A different range each time: a computation, never a cached answer.
    return query_pb2.QueryNode(
        trends_query=query_pb2.TrendsQuery(
            series=[query_pb2.SeriesNode(events_node=query_pb2.EventsNode(event="$pageview"))],
            date_range=query_pb2.DateRange(date_from=f"-{i % 50 + 1}d", date_to=f"-{i % 50}d"),
        )
    )


class Client:
    def __init__(self, ready: Prepared, channel: grpc.Channel):
        self.env = ready.environment_id
        self.metadata = (("authorization", f"Bearer {ready.key}"),)
        self.stub = query_service_pb2_grpc.QueryServiceStub(channel)
        self.calls = 0

    def run(self, query: query_pb2.QueryNode, refresh: int, timeout: float, query_id: str = "") -> float:
        request = query_service_pb2.RunQueryRequest(
            environment_id=self.env, query=query, refresh=refresh, client_query_id=query_id  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        self.stub.RunQuery(request, metadata=self.metadata, timeout=timeout)
        return time.perf_counter() - started

    def small_latency(self) -> float:
        self.calls += 1
        return self.run(small(self.calls), common_pb2.REFRESH_MODE_FORCE_BLOCKING, 60)

    def progress(self, query_id: str) -> int:
        request = query_service_pb2.GetQueryStatusRequest(environment_id=self.env, query_id=query_id, show_progress=True)
        return int(self.stub.GetQueryStatus(request, metadata=self.metadata, timeout=10).query_progress.rows_read)

    def cancel(self, query_id: str) -> float:
        request = query_service_pb2.CancelQueryRequest(environment_id=self.env, query_id=query_id)
        started = time.perf_counter()
        self.stub.CancelQuery(request, metadata=self.metadata, timeout=30)
        return time.perf_counter() - started


def cpu_after(pid: int) -> tuple[float, float]:
    """CPU seconds the server uses in the next 1 s, then in the 4 s after that."""
    start = cpu_seconds(pid)
    time.sleep(1.0)
    first = cpu_seconds(pid)
    time.sleep(4.0)
    return first - start, cpu_seconds(pid) - first


def settle(pid: int) -> float:
    """Waits until the server is idle (the engine merges the freshly loaded parts in the background
    for a while); returns its CPU seconds in the last idle second."""
    used = 0.0
    for _ in range(120):
        start = cpu_seconds(pid)
        time.sleep(1.0)
        used = cpu_seconds(pid) - start
        if used < 0.03:
            break
    return used


def wait_reading(client: Client, query_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.progress(query_id) > 0:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{query_id} never reached the engine")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with prepared(args.events, "bench-cancel-", grace_seconds=str(GRACE)) as ready:
        measure(ready)
    return 0


def measure(ready: Prepared) -> None:
    with serving(ready) as process, grpc.insecure_channel(ready.target) as channel:
        client = Client(ready, channel)
        for _ in range(3):
            client.small_latency()
        idle = settle(process.pid)
        print(f"idle server: {idle:.2f} s of CPU per second")
        baseline = statistics.median(client.small_latency() for _ in range(9))
        print(f"small query on an idle server: {baseline * 1000:.1f} ms (median of 9)")

        try:
            settle(process.pid)
            client.run(heavy(), common_pb2.REFRESH_MODE_FORCE_BLOCKING, 0.05, "deadline")
            print("deadline: the heavy query finished within 50 ms?")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
        after = client.small_latency()
        first, rest = cpu_after(process.pid)
        print(
            f"deadline 50 ms: server CPU {first:.2f} s in the next second, {rest:.2f} s in the 4 s after "
            f"(target ~0); a small query right after: {after * 1000:.1f} ms ({after / baseline:.2f}x idle)"
        )

        client.run(heavy(), common_pb2.REFRESH_MODE_FORCE_ASYNC, 30, "cancelled")
        wait_reading(client, "cancelled")
        took = client.cancel("cancelled")
        after = client.small_latency()
        first, rest = cpu_after(process.pid)
        print(
            f"CancelQuery: answered in {took * 1000:.0f} ms (the statement already gone); server CPU "
            f"{first:.2f} s in the next second, {rest:.2f} s in the 4 s after; a small query right "
            f"after: {after * 1000:.1f} ms ({after / baseline:.2f}x idle)"
        )

        client.run(heavy(), common_pb2.REFRESH_MODE_FORCE_ASYNC, 30, "at-shutdown")
        wait_reading(client, "at-shutdown")
        process.terminate()
        started = time.monotonic()
        try:
            process.wait(GRACE + 60)
        except subprocess.TimeoutExpired:
            process.kill()
        exit_after = time.monotonic() - started
        verdict = "PASS" if exit_after <= GRACE + 5 else "FAIL"
        print(f"SIGTERM, grace {GRACE:.0f} s, a heavy run computing: exited after {exit_after:.1f} s "
              f"(target <= {GRACE + 5:.0f} s) {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
