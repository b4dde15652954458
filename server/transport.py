"""Transport: the server's listening port (TLS, mutual TLS, or plaintext on loopback) and its
connection policies (keepalive, message sizes, compression), and clients' channels to it (the
loader, the benchmarks) with the service config they may apply."""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from server.config import Settings, check_transport, loopback_host
from server.errors import InvalidArgument

log = logging.getLogger("insights.transport")

_CLIENT_PREFIX = "INSIGHTS_CLIENT_TLS"
ChannelOptions = Sequence[tuple[str, Any]]


def _read(path: str, variable: str) -> bytes:
    """A PEM file's bytes, or a configuration error naming the variable and the reason."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidArgument(f"{variable}: cannot read {path}: {exc.strerror}", field=variable) from None
    if b"-----BEGIN " not in data:
        raise InvalidArgument(f"{variable}: {path} is not a PEM file", field=variable)
    return data


# ---------------------------------------------------------------------------
# The server side
# ---------------------------------------------------------------------------


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' files (None: plaintext); every file is checked now, so
    that a bad one stops the start with its name instead of failing each handshake later."""
    check_transport(settings)
    if not settings.tls:
        return None
    cert = _read(settings.tls_cert, "INSIGHTS_TLS_CERT")
    key = _read(settings.tls_key, "INSIGHTS_TLS_KEY")
    client_ca = _read(settings.tls_client_ca, "INSIGHTS_TLS_CLIENT_CA") if settings.tls_client_ca else None
    # grpc only parses these at the first handshake; the standard library says now what is wrong.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidArgument(
            f"INSIGHTS_TLS_CERT/INSIGHTS_TLS_KEY: not a certificate chain and its private key: {exc}",
            field="tls_cert",
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidArgument(
                f"INSIGHTS_TLS_CLIENT_CA: not PEM CA certificates: {exc}", field="tls_client_ca"
            ) from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind(server: grpc.aio.Server, settings: Settings, listen: str | None = None) -> int:
    """Adds the listening port (`listen`, default the settings' address) and returns it."""
    address = listen or settings.listen
    credentials = server_credentials(replace(settings, listen=address))
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    host = address.rpartition(":")[0]
    if credentials is None and not loopback_host(host):
        log.warning(
            "serving PLAINTEXT on non-loopback %s (INSIGHTS_ALLOW_PLAINTEXT): API keys travel in clear "
            "unless a TLS-terminating proxy is in front",
            address,
        )
    return int(port)


# Ping strikes a client gets (pings faster than the minimum interval) before too_many_pings: gRPC's
# default, stated here with the interval it goes with.
MAX_PING_STRIKES = 2
# grpc_compression_level's LOW: the first of the algorithms a caller accepts, ranked gzip, deflate.
_COMPRESSION_LEVEL_LOW = 1


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """The server's channel options: message sizes and the keepalive policy (README, "Connections").

    Keepalive pings are accepted without calls in flight (clients behind NATs and load balancers
    ping idle connections) at the settings' minimum interval; responses are capped by the
    largest a caller may opt in to, which the response-limit interceptor enforces with a clear error
    first.
    """
    return [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_response_opt_in_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", round(settings.keepalive_min_ping_interval_seconds * 1000)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        *compression_options(settings),
    ]


def compression_options(settings: Settings) -> list[tuple[str, Any]]:
    """Response compression (INSIGHTS_COMPRESSION) as a compression *level*: grpc then picks, per
    call, the algorithm the caller accepts (grpc-accept-encoding), gzip first, and sends a caller
    that accepts none uncompressed responses. (A default *algorithm*, what grpc.aio.server's
    `compression` sets, is sent even to callers that do not accept it.)"""
    if settings.compression.strip().lower() == "none":
        return []
    return [("grpc.default_compression_level", _COMPRESSION_LEVEL_LOW)]


def describe(settings: Settings) -> str:
    """How the server speaks, for its start-up log line."""
    if settings.tls_client_ca:
        return "mutual TLS (client certificates required)"
    return "TLS" if settings.tls else "plaintext"


def with_server_tls(settings: Settings, env: Mapping[str, str] | None = None) -> Settings:
    """`settings` plus the environment's INSIGHTS_TLS_* (for servers the benchmarks start)."""
    env = os.environ if env is None else env
    return replace(
        settings,
        tls_cert=env.get("INSIGHTS_TLS_CERT", ""),
        tls_key=env.get("INSIGHTS_TLS_KEY", ""),
        tls_client_ca=env.get("INSIGHTS_TLS_CLIENT_CA", ""),
    )


# ---------------------------------------------------------------------------
# The client side
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTransport:
    """How a client reaches the service: plaintext, or TLS (optionally with a client certificate).

    Unless `tls` says otherwise, TLS is used when a CA or client certificate is given or the
    target is not on loopback: a bearer key only travels in clear on this machine.
    """

    # True/False force TLS or plaintext; None decides per target (see above).
    tls: bool | None = None
    # PEM CA certificates trusted for the server's certificate; empty: the system's roots.
    ca: str = ""
    # PEM client certificate and private key, for a server that requires mutual TLS.
    cert: str = ""
    key: str = ""
    # The name checked against the server's certificate instead of the target's host.
    server_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> ClientTransport:
        """INSIGHTS_CLIENT_TLS[_CA|_CERT|_KEY|_SERVER_NAME], then flags (None: not given).

        With INSIGHTS_TLS_CERT set, the server this environment describes speaks TLS: so does
        the client, unless told otherwise.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        raw = env.get(_CLIENT_PREFIX, "").strip().lower()
        if raw:
            if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise InvalidArgument(f"{_CLIENT_PREFIX} must be true or false: {raw!r}", field="tls")
            values["tls"] = raw in ("1", "true", "yes", "on")
        elif env.get("INSIGHTS_TLS_CERT"):
            values["tls"] = True
        for name in ("ca", "cert", "key", "server_name"):
            given = env.get(f"{_CLIENT_PREFIX}_{name.upper()}")
            if given:
                values[name] = given
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values).validated()

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ClientTransport:
        """From the flags `add_arguments` defines, over the environment."""
        return cls.from_env(
            env,
            tls=args.tls,
            ca=args.tls_ca,
            cert=args.tls_cert,
            key=args.tls_key,
            server_name=args.tls_server_name,
        )

    def validated(self) -> ClientTransport:
        if bool(self.cert) != bool(self.key):
            raise InvalidArgument(
                "a client certificate and its key go together (--tls-cert and --tls-key)", field="cert"
            )
        if self.tls is False and (self.ca or self.cert):
            raise InvalidArgument("plaintext was asked for, but TLS files were given", field="tls")
        return self

    def secure(self, target: str) -> bool:
        """Whether a channel to `target` uses TLS."""
        if self.tls is not None:
            return self.tls
        return bool(self.ca or self.cert) or not loopback_host(target.rpartition(":")[0])

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS channel credentials (files read now: a missing one is a clear error)."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "--tls-ca") if self.ca else None,
            private_key=_read(self.key, "--tls-key") if self.key else None,
            certificate_chain=_read(self.cert, "--tls-cert") if self.cert else None,
        )

    def _options(self, options: ChannelOptions) -> list[tuple[str, Any]]:
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return [*options, *extra]

    def channel(self, target: str, options: ChannelOptions = ()) -> grpc.Channel:
        """A blocking-API channel to `target`."""
        if not self.secure(target):
            return grpc.insecure_channel(target, options=list(options))
        return grpc.secure_channel(target, self.credentials(), options=self._options(options))

    def aio_channel(self, target: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        """An asyncio channel to `target`."""
        if not self.secure(target):
            return grpc.aio.insecure_channel(target, options=list(options))
        return grpc.aio.secure_channel(target, self.credentials(), options=self._options(options))

    def describe(self, target: str) -> str:
        if not self.secure(target):
            return "plaintext"
        return "mutual TLS" if self.cert else "TLS"


# The service config clients may apply (README, "Service config"): retries of idempotent calls on
# UNAVAILABLE and default deadlines per method. Plain JSON, so that clients in any language read it.
SERVICE_CONFIG_PATH = Path(__file__).with_name("service_config.json")


def service_config() -> str:
    """The service config as the one-line JSON text the `grpc.service_config` channel option takes."""
    return json.dumps(json.loads(SERVICE_CONFIG_PATH.read_text()), separators=(",", ":"))


def service_config_options() -> list[tuple[str, Any]]:
    """Channel options that apply the service config (retries were on by default in grpcio 1.85
    already; `grpc.enable_retries` says so for older ones).

    Opt-in, not a default of the channels here: a config timeout caps the caller's own deadline
    (gRPC takes the smaller), and the benchmarks' heavy queries set longer ones on purpose.
    """
    return [("grpc.service_config", service_config()), ("grpc.enable_retries", 1)]


def client_channel(
    target: str, options: ChannelOptions = (), *, with_service_config: bool = False
) -> grpc.aio.Channel:
    """An asyncio channel to `target` as the environment's INSIGHTS_CLIENT_TLS_* say (benchmarks),
    with the service config when asked."""
    extra = service_config_options() if with_service_config else []
    return ClientTransport.from_env().aio_channel(target, [*extra, *options])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The client transport flags (each also read from INSIGHTS_CLIENT_TLS_*)."""
    group = parser.add_argument_group(
        "transport", "plaintext on loopback by default; TLS off loopback or when a file below is given"
    )
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--tls", action="store_true", default=None, help="use TLS (INSIGHTS_CLIENT_TLS=true)")
    mode.add_argument(
        "--plaintext",
        dest="tls",
        action="store_false",
        default=None,
        help="no TLS, even off loopback (INSIGHTS_CLIENT_TLS=false)",
    )
    group.add_argument("--tls-ca", help="PEM CA certificates to trust (INSIGHTS_CLIENT_TLS_CA)")
    group.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS (INSIGHTS_CLIENT_TLS_CERT)")
    group.add_argument("--tls-key", help="its private key (INSIGHTS_CLIENT_TLS_KEY)")
    group.add_argument(
        "--tls-server-name",
        help="name to check the server certificate against (INSIGHTS_CLIENT_TLS_SERVER_NAME)",
    )
