"""Domain errors become statuses that always fit a client's trailer limit, however large the input."""

from __future__ import annotations

import math

from google.rpc import error_details_pb2, status_pb2

from interceptors.errors import MAX_MESSAGE_BYTES, clip, to_status
from server.errors import DomainError, FieldViolation, InvalidArgument, NotFound, ResourceExhausted

CLIENT_METADATA_LIMIT = 8 * 1024  # grpc's default for received headers and trailers


def _trailer_bytes(status: status_pb2.Status) -> int:
    """The worst case on the wire: grpc-message percent-encodes every byte, details go as base64."""
    return 3 * len(status.message.encode()) + 4 * math.ceil(status.ByteSize() / 3) + 256


def _details(status: status_pb2.Status) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return info, bad


def test_clip_keeps_short_text_and_cuts_long_text_at_a_character_boundary() -> None:
    assert clip("insight 7", 16) == "insight 7"
    for text in ["x" * 5000, "ü" * 5000, "😀" * 5000]:
        cut = clip(text, 1024)
        assert len(cut.encode()) <= 1024
        assert cut.startswith(text[:100]) and cut.endswith("(5000 characters)")


def test_a_not_found_echoing_a_huge_id_fits_the_trailers() -> None:
    for huge in ["x" * 8000, "ü" * 8000]:
        status = to_status(
            NotFound(f"Insight {huge} not found.", reason="INSIGHT_NOT_FOUND", metadata={"insight": huge})
        )
        info, _ = _details(status)
        assert status.message.startswith("Insight xxx" if huge[0] == "x" else "Insight üüü")
        assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
        assert info.reason == "INSIGHT_NOT_FOUND" and info.metadata["insight"].startswith(huge[:50])
        assert _trailer_bytes(status) < CLIENT_METADATA_LIMIT


def test_many_huge_violations_keep_the_first_and_count_the_rest() -> None:
    violations = [FieldViolation(f"series[{i}].{'k' * 8000}", "d" * 8000) for i in range(1000)]
    status = to_status(InvalidArgument("bad series", violations=violations))
    info, bad = _details(status)
    assert status.message.startswith("series[0].kkk")
    assert bad.field_violations and bad.field_violations[0].field.startswith("series[0].kkk")
    kept = len(bad.field_violations)
    assert info.metadata["omitted_violations"] == str(1000 - kept)
    assert info.metadata["field"].startswith("series[0]")
    assert _trailer_bytes(status) < CLIENT_METADATA_LIMIT


def test_huge_error_info_metadata_and_retry_info_still_fit() -> None:
    metadata = {f"key-{i}-{'m' * 500}": "v" * 5000 for i in range(100)}
    for error in (
        DomainError("m" * 20000, reason="R" * 500, metadata=metadata),
        ResourceExhausted("limit", reason="TOO_MANY", metadata=metadata, retry_after=2.5),
    ):
        status = to_status(error)
        assert _trailer_bytes(status) < CLIENT_METADATA_LIMIT
        info, _ = _details(status)
        assert info.metadata and all(len(v.encode()) <= 256 for v in info.metadata.values())
    retry = error_details_pb2.RetryInfo()
    assert any(d.Is(retry.DESCRIPTOR) and d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds == 2 and retry.retry_delay.nanos == 500_000_000
