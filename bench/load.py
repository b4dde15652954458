"""Load and soak: many concurrent mixed calls for a while against a served process, on loopback.

A `python -m server serve` process (bench/serverproc.py) over demo events; this process runs
`--concurrency` callers for `--seconds`, each picking its next call by weight: cached reads
(GetInsight, RunQuery FORCE_CACHE), lists, writes (CreateInsight, UpdateInsight), computing queries
(RunQuery over date ranges the cache does not hold yet) and streams (StreamQuery to its result).
Prints throughput, p50/p99 per method, errors by code (an error is expected only when it is the
run queue shedding load, RESOURCE_EXHAUSTED RUN_QUEUE_FULL, which the service is built to answer
under overload), and the server's RSS after the warm-up and at the end.

    .venv/bin/python bench/load.py                           # 200 callers, 60 s, 200k demo events
    .venv/bin/python bench/load.py --concurrency 50 --seconds 20

Targets: 0 unexpected errors; RSS at the end <= +10 % of RSS after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.serverproc import Prepared, prepared, rss_mb, serving
from generated.insights.v1 import (
    common_pb2,
    insight_pb2,
    insight_pb2_grpc,
    query_pb2,
    query_service_pb2,
    query_service_pb2_grpc,
)
from server.queries.common.codec import from_reference_json

TARGET_UNEXPECTED = 0
TARGET_RSS_GROWTH = 1.10
# The mix: method → weight (out of 100).
WEIGHTS = {
    "GetInsight": 30,
    "ListInsights": 12,
    "RunQuery cached": 20,
    "CreateInsight": 8,
    "UpdateInsight": 8,
    "RunQuery computing": 12,
    "StreamQuery": 10,
}
# Errors the service is meant to answer under overload (reason of the ErrorInfo).
EXPECTED_REASONS = {"RUN_QUEUE_FULL"}
EVENTS = ("$pageview", "signed_up", "purchase", "$autocapture")


def trend(event: str, days: int, breakdown: bool = False) -> query_pb2.QueryNode:
    source: dict[str, Any] = {
        "kind": "TrendsQuery",
        "series": [{"kind": "EventsNode", "event": event}],
        "dateRange": {"date_from": f"-{days}d"},
    }
    if breakdown:
        source["breakdownFilter"] = {"breakdown": "$browser", "breakdown_type": "event"}
    return from_reference_json(source, query_pb2.QueryNode)


class Mix:
    """The callers' calls, their latencies and their outcomes."""

    def __init__(self, channel: grpc.aio.Channel, ready: Prepared, timeout: float):
        self.insights = insight_pb2_grpc.InsightsServiceStub(channel)
        self.queries = query_service_pb2_grpc.QueryServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {ready.key}"),)
        self.env = ready.environment_id
        self.timeout = timeout
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.codes: dict[str, Counter[str]] = defaultdict(Counter)
        self.unexpected: Counter[str] = Counter()
        self.mine: list[int] = []  # insights the callers created (to update)
        self.cached_ids: list[int] = []
        self.computing_seq = 0

    async def warm(self) -> None:
        """Creates and computes the insights the cached reads read."""
        for i, event in enumerate(EVENTS):
            made = await self.insights.CreateInsight(
                insight_pb2.CreateInsightRequest(
                    environment_id=self.env,
                    insight=insight_pb2.Insight(name=f"load {event}", query=trend(event, 7, i % 2 == 1)),
                ),
                metadata=self.metadata,
                timeout=self.timeout,
            )
            await self.insights.GetInsight(
                insight_pb2.GetInsightRequest(
                    environment_id=self.env, id=made.id, refresh=common_pb2.REFRESH_MODE_BLOCKING
                ),
                metadata=self.metadata,
                timeout=self.timeout,
            )
            self.cached_ids.append(made.id)

    async def call(self, method: str, rng: random.Random) -> None:
        env, md, t = self.env, self.metadata, self.timeout
        if method == "GetInsight":
            get = insight_pb2.GetInsightRequest(environment_id=env, id=rng.choice(self.cached_ids))
            await self.insights.GetInsight(get, metadata=md, timeout=t)
        elif method == "ListInsights":
            listing = insight_pb2.ListInsightsRequest(environment_id=env, limit=20)
            await self.insights.ListInsights(listing, metadata=md, timeout=t)
        elif method == "RunQuery cached":
            cached = query_service_pb2.RunQueryRequest(
                environment_id=env, query=trend(EVENTS[0], 7), refresh=common_pb2.REFRESH_MODE_FORCE_CACHE
            )
            await self.queries.RunQuery(cached, metadata=md, timeout=t)
        elif method == "UpdateInsight" and self.mine:
            rename = insight_pb2.UpdateInsightRequest(
                environment_id=env,
                id=rng.choice(self.mine),
                insight=insight_pb2.Insight(name=f"renamed {rng.random():.6f}"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
            await self.insights.UpdateInsight(rename, metadata=md, timeout=t)
        elif method in ("CreateInsight", "UpdateInsight"):
            await self._create(rng)
        elif method == "RunQuery computing":
            # A range the cache does not hold yet (each a new key, so the engine runs): the load
            # the run queue exists for.
            self.computing_seq += 1
            node = trend(rng.choice(EVENTS), 1 + self.computing_seq % 89, breakdown=rng.random() < 0.3)
            computing = query_service_pb2.RunQueryRequest(
                environment_id=env, query=node, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
            )
            await self.queries.RunQuery(computing, metadata=md, timeout=t)
        elif method == "StreamQuery":
            await self._stream(rng)
        else:
            raise AssertionError(method)

    async def _create(self, rng: random.Random) -> None:
        made = await self.insights.CreateInsight(
            insight_pb2.CreateInsightRequest(
                environment_id=self.env,
                insight=insight_pb2.Insight(name=f"load {rng.random():.6f}", query=trend(EVENTS[1], 14)),
            ),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        self.mine.append(made.id)

    async def _stream(self, rng: random.Random) -> None:
        self.computing_seq += 1
        request = query_service_pb2.StreamQueryRequest(
            environment_id=self.env,
            query=trend(rng.choice(EVENTS), 1 + self.computing_seq % 89),
            refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING,
        )
        async for reply in self.queries.StreamQuery(request, metadata=self.metadata, timeout=self.timeout):
            if reply.HasField("result"):
                return
        raise RuntimeError("StreamQuery ended without a result")

    async def caller(self, seed: int, until: float) -> None:
        rng = random.Random(seed)
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < until:
            method = rng.choices(names, weights)[0]
            began = time.perf_counter()
            try:
                await self.call(method, rng)
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
                if _reason(err) not in EXPECTED_REASONS:
                    self.unexpected[f"{method}: {code} {err.details()[:80] if err.details() else ''}"] += 1
            self.latencies[method].append(time.perf_counter() - began)
            self.codes[method][code] += 1


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def run(ready: Prepared, pid: int, args: argparse.Namespace) -> int:
    # Several channels: one HTTP/2 connection's stream limit and its single I/O path would
    # otherwise be what is measured.
    channels = [grpc.aio.insecure_channel(ready.target) for _ in range(args.channels)]
    try:
        mixes = [Mix(channel, ready, args.call_timeout) for channel in channels]
        await mixes[0].warm()
        for other in mixes[1:]:
            other.cached_ids = mixes[0].cached_ids
        # Warm-up: the same mix for a while, so that caches, pools and arenas reach their size.
        warm_until = time.monotonic() + args.warmup
        await asyncio.gather(*(mixes[i % len(mixes)].caller(10_000 + i, warm_until) for i in range(args.concurrency)))
        for mix in mixes:
            mix.latencies.clear()
            mix.codes.clear()
            mix.unexpected.clear()
        rss_before = rss_mb(pid)
        began = time.monotonic()
        until = began + args.seconds
        await asyncio.gather(*(mixes[i % len(mixes)].caller(i, until) for i in range(args.concurrency)))
        elapsed = time.monotonic() - began
        rss_after = rss_mb(pid)
    finally:
        for channel in channels:
            await channel.close()
    return report(mixes, elapsed, rss_before, rss_after, args)


def report(mixes: list[Mix], elapsed: float, rss_before: float, rss_after: float, args: argparse.Namespace) -> int:
    latencies: dict[str, list[float]] = defaultdict(list)
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected: Counter[str] = Counter()
    for mix in mixes:
        for method, samples in mix.latencies.items():
            latencies[method].extend(samples)
        for method, counted in mix.codes.items():
            codes[method].update(counted)
        unexpected.update(mix.unexpected)
    total = sum(len(v) for v in latencies.values())
    print(f"\n{args.concurrency} callers, {elapsed:.0f} s: {total:,} calls, {total / elapsed:,.0f} calls/s\n")
    print(f"{'method':<20} {'calls':>8} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8}  codes")
    for method in WEIGHTS:
        samples = latencies.get(method, [])
        outcomes = ", ".join(f"{code} {n}" for code, n in codes[method].most_common())
        print(
            f"{method:<20} {len(samples):>8,} {len(samples) / elapsed:>8,.1f} "
            f"{percentile(samples, 0.5) * 1e3:>8.1f} {percentile(samples, 0.99) * 1e3:>8.1f}  {outcomes}"
        )
    if unexpected:
        print("\nunexpected errors:")
        for text, n in unexpected.most_common(20):
            print(f"  {n:>6}  {text}")
    growth = rss_after / rss_before
    unexpected_total = sum(unexpected.values())
    print(f"\nserver RSS: {rss_before:.0f} MiB after the warm-up, {rss_after:.0f} MiB at the end ({growth:.3f}x)")
    ok_errors = unexpected_total <= TARGET_UNEXPECTED
    ok_rss = growth <= TARGET_RSS_GROWTH
    print(f"{'PASS' if ok_errors else 'FAIL'}  unexpected errors {unexpected_total} <= {TARGET_UNEXPECTED}")
    print(f"{'PASS' if ok_rss else 'FAIL'}  RSS growth {growth:.3f} <= {TARGET_RSS_GROWTH}")
    return 0 if ok_errors and ok_rss else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent callers (200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds (60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of the same mix before measuring (15)")
    parser.add_argument("--events", type=int, default=200_000, help="demo events (200000)")
    parser.add_argument("--channels", type=int, default=4, help="client channels the callers share (4)")
    parser.add_argument("--call-timeout", type=float, default=60.0, help="deadline of each call in seconds")
    args = parser.parse_args()
    if not (1 <= args.concurrency <= 2000 and 0 < args.seconds <= 3600 and args.events >= 1000):
        raise SystemExit("--concurrency 1-2000, --seconds up to 3600, --events >= 1000")
    with prepared(args.events, "insights-bench-load-") as ready, serving(ready) as process:
        return asyncio.run(run(ready, process.pid, args))


if __name__ == "__main__":
    raise SystemExit(main())
