"""Connection settings (compression, request size, keepalive minimum): values the server cannot run
with are refused at start naming the variable, never passed to grpc to be ignored."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.errors import InvalidArgument
from server.transport import compression_options


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("INSIGHTS_COMPRESSION", "zstd", "compression"),
        ("INSIGHTS_COMPRESSION", "deflate", "compression"),
        ("INSIGHTS_MAX_REQUEST_BYTES", "0", "max_request_bytes"),
        ("INSIGHTS_MAX_REQUEST_BYTES", str(2**31), "max_request_bytes"),
        ("INSIGHTS_KEEPALIVE_MIN_PING_INTERVAL_SECONDS", "0", "keepalive_min_ping_interval_seconds"),
    ],
)
def test_a_value_the_server_cannot_use_names_its_variable(variable: str, value: str, field: str) -> None:
    with pytest.raises(InvalidArgument, match=variable) as refused:
        Settings.from_env({variable: value})
    assert refused.value.violations[0].field == field


def test_compression_is_read_whatever_its_case_and_is_off_by_default() -> None:
    assert compression_options(Settings.from_env({"INSIGHTS_COMPRESSION": " GZIP "})) != []
    assert compression_options(Settings.from_env({})) == []
    assert compression_options(Settings.from_env({"INSIGHTS_COMPRESSION": "none"})) == []
