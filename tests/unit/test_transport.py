"""Transport settings: TLS files go together, plaintext is refused off loopback unless allowed,
and clients choose TLS off loopback (a bearer key only travels in clear on this machine)."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.errors import InvalidArgument
from server.transport import ClientTransport


def test_a_certificate_without_its_key_is_a_configuration_error() -> None:
    with pytest.raises(InvalidArgument, match="INSIGHTS_TLS_CERT and INSIGHTS_TLS_KEY go together"):
        Settings.from_env({"INSIGHTS_TLS_CERT": "/etc/insights/cert.pem"})
    with pytest.raises(InvalidArgument, match="go together"):
        Settings.from_env({"INSIGHTS_TLS_KEY": "/etc/insights/key.pem"})


def test_a_client_ca_without_a_server_certificate_is_a_configuration_error() -> None:
    with pytest.raises(InvalidArgument, match="INSIGHTS_TLS_CLIENT_CA needs INSIGHTS_TLS_CERT"):
        Settings.from_env({"INSIGHTS_TLS_CLIENT_CA": "/etc/insights/clients.pem"})


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "insights.internal:443"])
def test_plaintext_off_loopback_is_refused_unless_allowed(listen: str) -> None:
    with pytest.raises(InvalidArgument, match="not a loopback address and TLS is off"):
        Settings.from_env({"INSIGHTS_LISTEN": listen})
    allowed = Settings.from_env({"INSIGHTS_LISTEN": listen, "INSIGHTS_ALLOW_PLAINTEXT": "true"})
    assert allowed.allow_plaintext and not allowed.tls
    with_tls = Settings.from_env(
        {"INSIGHTS_LISTEN": listen, "INSIGHTS_TLS_CERT": "c.pem", "INSIGHTS_TLS_KEY": "k.pem"}
    )
    assert with_tls.tls


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "127.0.0.2:0", "localhost:50051", "[::1]:50051"])
def test_plaintext_on_loopback_needs_nothing(listen: str) -> None:
    assert not Settings.from_env({"INSIGHTS_LISTEN": listen}).tls


def test_clients_use_tls_off_loopback_and_plaintext_on_it_by_default() -> None:
    default = ClientTransport.from_env({})
    assert not default.secure("127.0.0.1:50051") and not default.secure("localhost:1")
    assert default.secure("insights.example.com:443") and default.secure("10.0.0.7:50051")
    # A CA file (or a client certificate) means TLS, on loopback too.
    assert ClientTransport.from_env({}, ca="ca.pem").secure("127.0.0.1:50051")
    assert ClientTransport.from_env({"INSIGHTS_CLIENT_TLS_CA": "ca.pem"}).secure("127.0.0.1:1")
    # The environment describes a TLS server: its clients speak TLS to it.
    assert ClientTransport.from_env({"INSIGHTS_TLS_CERT": "c.pem"}).secure("127.0.0.1:50051")
    # Plaintext off loopback only when asked for.
    plain = ClientTransport.from_env({"INSIGHTS_CLIENT_TLS": "false"})
    assert not plain.secure("insights.example.com:443")
    assert not ClientTransport.from_env({"INSIGHTS_CLIENT_TLS": "true"}, tls=False).secure("10.0.0.7:1")


def test_client_tls_settings_that_conflict_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="client certificate and its key go together"):
        ClientTransport.from_env({}, cert="client.pem")
    with pytest.raises(InvalidArgument, match="plaintext was asked for"):
        ClientTransport.from_env({}, tls=False, ca="ca.pem")
    with pytest.raises(InvalidArgument, match="INSIGHTS_CLIENT_TLS must be true or false"):
        ClientTransport.from_env({"INSIGHTS_CLIENT_TLS": "maybe"})
