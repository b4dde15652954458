"""Prometheus exposition: one collector reading the service's own counters when scraped, and the
HTTP endpoint serving them (INSIGHTS_METRICS_LISTEN)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from interceptors.coalescing import CoalescingInterceptor
from interceptors.metrics import RpcMeter
from server.domain.alerts.checker import Checker
from server.domain.alerts.scheduler import Scheduler
from server.domain.ingest import Ingestion
from server.execution.refresh import Execution
from server.meter import Counts, Labels

log = logging.getLogger("insights.metrics")

PREFIX = "insights_"


@dataclass
class Sources:
    """What the collector reads: the app's parts (the coalescing interceptor exists once started)."""

    rpc: RpcMeter
    execution: Execution
    checker: Checker
    scheduler: Scheduler
    ingestion: Ingestion
    coalescing: Callable[[], CoalescingInterceptor | None]


class ServiceCollector(Collector):  # type: ignore[misc]
    """Builds every family from the counters at scrape time: nothing is copied between scrapes."""

    def __init__(self, sources: Sources):
        self._s = sources

    def collect(self) -> Iterator[Metric]:
        s = self._s
        rpc = s.rpc.snapshot()
        yield _counter(
            "rpc_calls", "RPCs by method and the status code the client saw.", ["method", "code"], rpc.calls
        )
        yield _histogram(
            "rpc_duration_seconds", "RPC durations by method.", ["method"], s.rpc.bounds, rpc.seconds
        )
        yield _gauge("rpc_in_flight", "RPCs running now, by method.", ["method"], rpc.in_flight)

        execution = s.execution
        yield _counter(
            "engine_queries",
            "Engine computations by query kind and outcome.",
            ["kind", "outcome"],
            execution.queries,
        )
        yield _histogram(
            "engine_query_duration_seconds",
            "Engine computation durations by query kind.",
            ["kind"],
            execution.query_seconds.bounds,
            execution.query_seconds.snapshot(),
        )
        yield _counter(
            "engine_rows_read",
            "Rows the engine read for computations, by query kind.",
            ["kind"],
            execution.rows_read,
        )

        cache = execution.cache.stats()
        for name, doc in (
            ("hits", "Result cache reads that found an entry."),
            ("misses", "Result cache reads that found none."),
            ("evictions", "Result cache entries evicted to stay within the memory budget."),
            ("rejected", "Results too large to cache at all."),
        ):
            yield _single(CounterMetricFamily, f"result_cache_{name}", doc, cache.get(name, 0))
        yield _single(
            GaugeMetricFamily, "result_cache_bytes", "Bytes the result cache holds.", cache.get("bytes", 0)
        )
        yield _single(
            GaugeMetricFamily,
            "result_cache_entries",
            "Entries the result cache holds.",
            cache.get("entries", 0),
        )

        runs = execution.runs
        yield _single(GaugeMetricFamily, "query_runs_queued", "Runs waiting for an engine slot.", runs.queued)
        yield _single(GaugeMetricFamily, "query_runs_running", "Runs holding an engine slot.", runs.running)
        yield _single(
            CounterMetricFamily,
            "query_runs_shed",
            "Runs refused with RESOURCE_EXHAUSTED because the queue was full (INSIGHTS_MAX_QUEUED_QUERIES).",
            runs.shed,
        )

        coalescing = s.coalescing()
        stats = coalescing.stats if coalescing is not None else None
        for name, doc in (
            ("leaders", "Calls that started a shared run."),
            ("followers", "Calls that joined a shared run."),
            ("bypasses", "Coalescable calls that ran on their own because a bound was reached."),
        ):
            yield _single(CounterMetricFamily, f"coalescing_{name}", doc, getattr(stats, name, 0))

        yield _counter(
            "alert_checks",
            "Alert checks by recorded state (firing, not_firing, errored, snoozed; failed: the check raised).",
            ["state"],
            s.checker.checks,
        )
        yield _counter(
            "webhook_deliveries",
            "Alert webhook deliveries by outcome (delivered, failed).",
            ["outcome"],
            s.checker.deliveries,
        )
        yield _single(
            GaugeMetricFamily,
            "alert_scheduler_lag_seconds",
            "How long past its due time the most overdue alert of the last pass with due alerts waited.",
            s.scheduler.lag_seconds,
        )
        yield _counter(
            "ingested_events",
            "Events sent to IngestEvents / IngestEventBatches by outcome (accepted, duplicate, rejected).",
            ["outcome"],
            s.ingestion.counts,
        )


def _counter(name: str, doc: str, labels: list[str], counts: Counts | dict[Labels, float]) -> Metric:
    family = CounterMetricFamily(PREFIX + name, doc, labels=labels)
    for values, number in sorted(_values(counts).items()):
        family.add_metric(list(values), number)
    return family


def _gauge(name: str, doc: str, labels: list[str], counts: Counts | dict[Labels, float]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, doc, labels=labels)
    for values, number in sorted(_values(counts).items()):
        family.add_metric(list(values), number)
    return family


def _values(counts: Counts | dict[Labels, float]) -> dict[Labels, float]:
    return counts.snapshot() if isinstance(counts, Counts) else counts


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    bounds: Sequence[float],
    found: dict[Labels, tuple[list[int], float]],
) -> Metric:
    """A histogram family from cumulative counts per bound (then +Inf) and sums, by label tuple."""
    family = HistogramMetricFamily(PREFIX + name, doc, labels=labels)
    edges = [_bound(b) for b in bounds] + ["+Inf"]
    for values, (counts, total) in sorted(found.items()):
        family.add_metric(list(values), list(zip(edges, counts, strict=True)), total)
    return family


def _single(kind: Any, name: str, doc: str, value: float) -> Metric:
    family: Metric = kind(PREFIX + name, doc, value=value)
    return family


def _bound(bound: float) -> str:
    return repr(float(bound))


def registry(sources: Sources) -> CollectorRegistry:
    """A registry of this app's own (several apps share a test process: never the global one)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(ServiceCollector(sources))
    return found


class Endpoint:
    """The HTTP server of /metrics on its own thread; `port` is the bound one."""

    def __init__(self, collectors: CollectorRegistry, listen: str):
        host, _, port = listen.rpartition(":")
        self._server, self._thread = start_http_server(int(port), addr=host.strip("[]"), registry=collectors)
        self.port = int(self._server.server_port)
        self.host = host

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(collectors: CollectorRegistry, listen: str) -> Endpoint:
    endpoint = Endpoint(collectors, listen)
    log.info("metrics on http://%s:%d/metrics", endpoint.host, endpoint.port)
    return endpoint
