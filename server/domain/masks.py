"""Update masks: which paths a partial update may name."""

from __future__ import annotations

from collections.abc import Sequence

from server.errors import InvalidArgument


def check_update_mask(paths: Sequence[str], writable: Sequence[str], resource: str) -> set[str]:
    """The chosen paths, or INVALID_ARGUMENT naming `update_mask` and the first path not writable."""
    bad = [p for p in paths if p not in writable]
    if bad:
        raise InvalidArgument(
            f"update_mask path {bad[0]!r} is not a writable field of {resource} (writable: {', '.join(writable)})",
            field="update_mask",
            reason="INVALID_UPDATE_MASK",
        )
    return set(paths)
