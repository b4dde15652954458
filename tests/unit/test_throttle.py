"""Throttle buckets: a burst, then an even refill; every rate of a class must allow a call."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.domain.throttle import Rate, Throttle, parse_rates
from server.errors import InvalidArgument, ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_call_per_refill_interval() -> None:
    clock = Clock()
    throttle = Throttle({"default": (Rate(3, 60.0),)}, clock=clock)
    assert [throttle.wait("default", "k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.wait("default", "k") == pytest.approx(20.0)
    clock.now += 5.0
    # A refused call took nothing: the wait only shrank by the time that passed.
    assert throttle.wait("default", "k") == pytest.approx(15.0)
    clock.now += 15.0
    assert throttle.wait("default", "k") == 0.0
    assert throttle.wait("default", "k") == pytest.approx(20.0)


def test_the_sustained_rate_holds_after_bursts_refill() -> None:
    clock = Clock()
    throttle = Throttle({"default": (Rate(3, 60.0), Rate(5, 3600.0))}, clock=clock)
    allowed = []
    for _ in range(4):  # a burst each minute for four minutes
        allowed.append(sum(throttle.wait("default", "k") == 0.0 for _ in range(3)))
        clock.now += 60.0
    # The hour's 5 calls run out in the second minute; 4 minutes refill a third of one (1 per 720 s).
    assert allowed == [3, 2, 0, 0]
    # 240 s after the start the hour's bucket holds 1/3 token: the next one is 480 s away.
    assert throttle.wait("default", "k") == pytest.approx(480.0)


def test_callers_and_classes_have_buckets_of_their_own() -> None:
    clock = Clock()
    throttle = Throttle({"default": (Rate(1, 60.0),), "compute": (Rate(1, 60.0),), "ai": ()}, clock=clock)
    assert throttle.wait("default", ("key", 1, 7)) == 0.0
    assert throttle.wait("default", ("key", 1, 7)) > 0
    assert throttle.wait("default", ("key", 1, 8)) == 0.0  # another environment
    assert throttle.wait("default", ("key", 2, 7)) == 0.0  # another key
    assert throttle.wait("compute", ("key", 1, 7)) == 0.0  # another class
    assert all(throttle.wait("ai", ("key", 1, 7)) == 0.0 for _ in range(50))  # no rates: no throttle


def test_buckets_are_bounded_and_the_least_recently_used_is_forgotten() -> None:
    clock = Clock()
    throttle = Throttle({"default": (Rate(1, 60.0),)}, clock=clock, max_buckets=2)
    for caller in ("a", "b"):
        throttle.wait("default", caller)
    throttle.wait("default", "a")  # refused, and now the most recently used
    throttle.wait("default", "c")  # a third bucket: "b" goes
    assert throttle.wait("default", "a") > 0
    assert throttle.wait("default", "b") == 0.0  # forgotten: full again


def test_check_says_when_to_come_back() -> None:
    throttle = Throttle({"compute": (Rate(2, 60.0),)}, clock=Clock())
    throttle.check("compute", "k")
    throttle.check("compute", "k")
    with pytest.raises(ResourceExhausted) as refused:
        throttle.check("compute", "k")
    assert refused.value.message == "Request was throttled. Expected available in 30 seconds."
    assert refused.value.reason == "THROTTLED" and refused.value.retry_after == pytest.approx(30.0)
    assert refused.value.metadata == {"throttle_class": "compute"}


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("480/minute,4800/hour", (Rate(480, 60.0), Rate(4800, 3600.0))),
        (" 2 / second ", (Rate(2, 1.0),)),
        ("", ()),
        ("OFF", ()),
    ],
)
def test_rates_parse(text: str, rates: tuple[Rate, ...]) -> None:
    assert parse_rates(text) == rates


@pytest.mark.parametrize("text", ["0/minute", "5/fortnight", "five/minute", "5", "5/minute,", "1e3/hour"])
def test_a_bad_rate_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rates(text)
    with pytest.raises(InvalidArgument, match="INSIGHTS_THROTTLE_COMPUTE") as refused:
        Settings(throttle_compute=text).validated()
    assert refused.value.violations[0].field == "throttle_compute"
