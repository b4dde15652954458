"""Every field of the seed's thresholds examples has a home in alerts.proto (through the reference codec)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from generated.insights.v1 import alerts_pb2, common_pb2
from server.queries.common.codec import from_reference_json, to_reference_json

SEED_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "seed-examples"


@pytest.mark.parametrize(
    "name", ["retrieve-insights-thresholds.response.json", "list-all-insights-thresholds.response.json"]
)
def test_seed_threshold_decodes(name: str) -> None:
    body = json.loads((SEED_DIR / name).read_text())
    threshold = body if "alerts" in body else body["results"][0]
    alert = threshold["alerts"][0]
    # UserBasic predates reference-JSON names; its snake_case keys are its proto field names.
    user = json_format.ParseDict(alert.pop("created_by"), common_pb2.UserBasic())
    assert user.role_at_organization == "engineering"
    alert["state"] = "Firing"  # the example's placeholder "string" is not a state
    message = from_reference_json(threshold, alerts_pb2.Threshold)
    decoded = message.alerts[0]
    assert decoded.detector_config.type == alerts_pb2.DETECTOR_TYPE_ENSEMBLE
    assert decoded.checks[0].targets_notified.bool_value is True
    assert decoded.investigation_inconclusive_action == "notify"
    assert decoded.calculation_interval == alerts_pb2.ALERT_CALCULATION_INTERVAL_HOURLY
    again = to_reference_json(message)
    assert from_reference_json(again, alerts_pb2.Threshold) == message
