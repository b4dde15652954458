"""The metrics pieces without a server: the endpoint setting, histogram buckets, bounded RPC labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from interceptors.metrics import OTHER, RpcMeter
from server.config import Settings
from server.errors import InvalidArgument
from server.meter import Distribution
from server.metrics import _histogram


def test_the_endpoint_is_off_unless_configured() -> None:
    assert Settings().metrics_address == ""
    assert Settings.from_env({}).metrics_address == ""


@pytest.mark.parametrize(
    ("given_value", "address"),
    [
        ("9464", "127.0.0.1:9464"),
        (":9464", "127.0.0.1:9464"),
        ("0.0.0.0:9464", "0.0.0.0:9464"),
        ("[::1]:0", "[::1]:0"),
    ],
)
def test_a_bare_port_listens_on_loopback(given_value: str, address: str) -> None:
    assert Settings.from_env({"INSIGHTS_METRICS_LISTEN": given_value}).metrics_address == address


@pytest.mark.parametrize("bad", ["host:", "host:port", "127.0.0.1:70000", "-1"])
def test_a_bad_listen_address_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        Settings.from_env({"INSIGHTS_METRICS_LISTEN": bad})
    assert [v.field for v in raised.value.violations] == ["metrics_listen"]
    assert "INSIGHTS_METRICS_LISTEN" in raised.value.message


def test_an_unknown_method_counts_under_one_label_and_in_flight_returns_to_zero() -> None:
    meter = RpcMeter(["/pkg.Service/Known"])
    for method in ("/pkg.Service/Known", "/evil/one", "/evil/two"):
        meter.begin(method)
    assert meter.snapshot().in_flight == {("/pkg.Service/Known",): 1, (OTHER,): 2}
    for method in ("/pkg.Service/Known", "/evil/one", "/evil/two"):
        meter.end(method, "OK", 0.003)
    found = meter.snapshot()
    assert found.calls == {("/pkg.Service/Known", "OK"): 1, (OTHER, "OK"): 2}
    assert found.in_flight == {("/pkg.Service/Known",): 0, (OTHER,): 0}
    assert found.seconds[(OTHER,)][0][-1] == 2  # both unknown calls in one histogram


class _One(Collector):  # type: ignore[misc]
    def __init__(self, distribution: Distribution):
        self.distribution = distribution

    def collect(self) -> list[Metric]:
        found = self.distribution
        return [_histogram("probe_seconds", "probe", ["kind"], found.bounds, found.snapshot())]


@given(
    bounds=st.lists(st.integers(1, 50), min_size=1, max_size=6, unique=True),
    values=st.lists(st.integers(0, 60), min_size=1, max_size=40),
)
def test_histogram_buckets_count_the_observations_at_or_below_each_bound(
    bounds: list[int], values: list[int]
) -> None:
    distribution = Distribution([b / 10 for b in bounds])
    for value in values:
        distribution.observe(("k",), value / 10)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_One(distribution))
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    # The oracle: Prometheus `le` buckets, counted straight from the values (on the integer scale).
    for bound in bounds:
        expected = sum(1 for v in values if v <= bound)
        assert samples[("insights_probe_seconds_bucket", repr(bound / 10))] == expected
    assert samples[("insights_probe_seconds_bucket", "+Inf")] == len(values)
    assert samples[("insights_probe_seconds_count", None)] == len(values)
    assert samples[("insights_probe_seconds_sum", None)] == pytest.approx(sum(values) / 10)
