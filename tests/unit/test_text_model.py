"""The optional text model: its answer is used, and every failure falls back to the derived text.

A small HTTP server on loopback (tests.support.chatmodel), started by each test, plays the endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server.app import text_model
from server.config import Settings
from server.domain.alerts.egress import EgressPolicy
from server.domain.metadata import Metadata, TextModel
from server.errors import InvalidArgument
from tests.support.chatmodel import Endpoint as _Endpoint
from tests.support.chatmodel import completion as _completion

DRAFT = Metadata("Pageview count, last 7 days", "Pageview count per day, over the last 7 days.")
QUERY = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}
KEY = "sk-test-0123456789-secret"
LOOPBACK = EgressPolicy.parse("127.0.0.1/32")


@pytest.fixture
def endpoint() -> Iterator[Callable[[Callable[[dict[str, Any]], tuple[int, bytes]]], _Endpoint]]:
    started: list[_Endpoint] = []

    def start(answer: Callable[[dict[str, Any]], tuple[int, bytes]]) -> _Endpoint:
        started.append(_Endpoint(answer))
        return started[-1]

    yield start
    for one in started:
        one.close()


def _model(url: str, policy: EgressPolicy = LOOPBACK, timeout: float = 5.0) -> TextModel:
    return TextModel(url, model="small-model", api_key=KEY, timeout=timeout, policy=policy)


def test_the_models_answer_is_used_and_the_request_carries_the_draft_and_the_query(endpoint: Any) -> None:
    server = endpoint(
        lambda body: (200, _completion(json.dumps({"name": "Daily pageviews", "description": "Pageviews per day."})))
    )
    found = _model(server.url).refine(DRAFT, QUERY)
    assert found == Metadata("Daily pageviews", "Pageviews per day.")
    [(headers, body)] = server.requests
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "small-model"
    sent = json.loads(body["messages"][-1]["content"])
    assert sent == {"draft": {"name": DRAFT.name, "description": DRAFT.description}, "query": QUERY}


def test_no_model_setting_means_no_model() -> None:
    assert text_model(Settings()) is None
    configured = text_model(
        Settings.from_env(
            {
                "INSIGHTS_TEXT_MODEL_URL": "http://127.0.0.1:9/v1/chat/completions",
                "INSIGHTS_TEXT_MODEL_API_KEY": KEY,
                "INSIGHTS_TEXT_MODEL_ALLOWED_NETWORKS": "127.0.0.1/32",
            }
        )
    )
    assert configured is not None and configured.policy == LOOPBACK
    assert KEY not in repr(configured) and KEY not in repr(Settings(text_model_api_key=KEY))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda body: (500, b'{"error": "overloaded"}'), id="http-500"),
        pytest.param(lambda body: (200, b"<html>not json"), id="garbage"),
        pytest.param(lambda body: (200, _completion("name: x")), id="content-not-json"),
        pytest.param(lambda body: (200, _completion(json.dumps({"name": "", "description": "d"}))), id="empty-name"),
        pytest.param(lambda body: (200, json.dumps({"choices": []}).encode()), id="no-choice"),
    ],
)
def test_a_bad_answer_falls_back_to_the_derived_text(
    endpoint: Any, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = endpoint(answer)
    with caplog.at_level(logging.WARNING, logger="insights.metadata"):
        assert _model(server.url).refine(DRAFT, QUERY) == DRAFT
    assert len(server.requests) == 1
    [record] = caplog.records
    assert "using the derived text" in record.getMessage()
    assert KEY not in caplog.text and "in-the-url" not in caplog.text


def test_an_answer_slower_than_the_timeout_falls_back(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    def slow(body: dict[str, Any]) -> tuple[int, bytes]:
        # Answers only once the test has its result: the client must have given up by then.
        server.release.wait(60)
        return 200, _completion(json.dumps({"name": "late", "description": "late"}))

    server = endpoint(slow)
    with caplog.at_level(logging.WARNING, logger="insights.metadata"):
        found = _model(server.url, timeout=0.2).refine(DRAFT, QUERY)
    server.release.set()
    assert found == DRAFT
    assert "timed out" in caplog.text


def test_a_loopback_model_must_be_allowed_explicitly(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = endpoint(lambda body: (200, _completion(json.dumps({"name": "n", "description": "d"}))))
    with caplog.at_level(logging.WARNING, logger="insights.metadata"):
        assert _model(server.url, policy=EgressPolicy()).refine(DRAFT, QUERY) == DRAFT
    assert server.requests == []  # refused before any connection
    assert "loopback" in caplog.text


def test_a_closed_port_falls_back(endpoint: Any) -> None:
    server = endpoint(lambda body: (200, b""))
    url = server.url
    server.close()
    assert _model(url).refine(DRAFT, QUERY) == DRAFT


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"INSIGHTS_TEXT_MODEL_URL": "ftp://models.example.org/"}, "INSIGHTS_TEXT_MODEL_URL"),
        ({"INSIGHTS_TEXT_MODEL_TIMEOUT_SECONDS": "0"}, "INSIGHTS_TEXT_MODEL_TIMEOUT_SECONDS"),
        ({"INSIGHTS_TEXT_MODEL_ALLOWED_NETWORKS": "10.0.0.0/40"}, "INSIGHTS_TEXT_MODEL_ALLOWED_NETWORKS"),
    ],
)
def test_settings_the_model_cannot_run_with_are_refused_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Settings.from_env(env)
    assert variable in err.value.message


ANALYSIS = "**$pageview**: up from 2 to 4 (+100.0%).\n- Last value 4 is +70.7% against the average 2.34."
FINDINGS = {"trends": {"series": [{"label": "$pageview", "first_value": 2, "last_value": 4}]}}


def test_an_analysis_is_reworded_when_the_rewording_keeps_to_the_drafts_numbers(endpoint: Any) -> None:
    reworded = "Pageviews doubled, from 2 to 4 (+100.0%); the last value, 4, is 70.7% above the 2.34 average."
    server = endpoint(lambda body: (200, _completion(reworded)))
    assert _model(server.url).narrate(ANALYSIS, FINDINGS) == reworded
    [(_, body)] = server.requests
    assert json.loads(body["messages"][-1]["content"]) == {"draft": ANALYSIS, "findings": FINDINGS}
    assert "response_format" not in body  # Markdown, not a JSON object


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param("Pageviews rose from 2 to 5.", "numbers the findings do not", id="invented-number"),
        pytest.param("Up 100.0% to 4, about 3,000 a month.", "numbers the findings do not", id="invented-thousands"),
        pytest.param("   ", "not the expected JSON", id="empty"),
        pytest.param("x" * 4001, "too long", id="too-long"),
    ],
)
def test_a_rewording_that_adds_numbers_or_is_unusable_falls_back(
    endpoint: Any, answer: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = endpoint(lambda body: (200, _completion(answer)))
    with caplog.at_level(logging.WARNING, logger="insights.metadata"):
        assert _model(server.url).narrate(ANALYSIS, FINDINGS) == ANALYSIS
    assert reason in caplog.text


def test_a_slow_or_failing_model_leaves_the_derived_analysis(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    def slow(body: dict[str, Any]) -> tuple[int, bytes]:
        server.release.wait(60)
        return 200, _completion("late")

    server = endpoint(slow)
    with caplog.at_level(logging.WARNING, logger="insights.metadata"):
        assert _model(server.url, timeout=0.2).narrate(ANALYSIS, FINDINGS) == ANALYSIS
    server.release.set()
    assert "timed out" in caplog.text
    failing = endpoint(lambda body: (503, b"{}"))
    assert _model(failing.url).narrate(ANALYSIS, FINDINGS) == ANALYSIS
