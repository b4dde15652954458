"""The vendored googleapis protos stay verbatim, licensed, and out of the Python stubs."""

from __future__ import annotations

from pathlib import Path

import google.rpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ROOT / "protos" / "google"
NAMES = ("status.proto", "error_details.proto", "code.proto")


@pytest.mark.parametrize("name", NAMES)
def test_vendored_proto_equals_the_published_one(name: str) -> None:
    # Clients decode grpc-status-details-bin with these; an edit (or a `buf format -w` that one day
    # reflows them) would describe errors the server does not send.
    published = Path(next(iter(google.rpc.__path__))) / name
    assert (VENDORED / "rpc" / name).read_bytes() == published.read_bytes(), (
        f"protos/google/rpc/{name} differs from googleapis-common-protos' copy; copy it again verbatim"
    )


def test_vendored_protos_carry_their_licence() -> None:
    assert "Apache License" in (VENDORED / "LICENSE").read_text()
    assert "Version 2.0" in (VENDORED / "LICENSE").read_text()


def test_vendored_protos_are_not_generated_into_generated() -> None:
    # Python takes google.rpc from googleapis-common-protos; a second copy would clash at import.
    assert not (ROOT / "generated" / "google").exists()
