"""Settings of the service, read once from environment variables and flags."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from dataclasses import field as dataclass_field
from typing import Any

from server.domain.alerts.egress import EgressPolicy
from server.domain.throttle import DEFAULT_RATES, Rate, parse_rates
from server.errors import InvalidArgument
from storage.events import DEFAULT_MATERIALIZED, materialized_columns

_PREFIX = "INSIGHTS_"
# Values of INSIGHTS_COMPRESSION (gRPC's message compressions; "none" sends responses as they are).
COMPRESSIONS = ("none", "gzip")
# The metrics endpoint's host when INSIGHTS_METRICS_LISTEN names only a port: this machine only.
METRICS_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with; every field has a default."""

    # host:port to listen on; port 0 lets the kernel pick one.
    listen: str = "127.0.0.1:50051"
    # SQLAlchemy URL of the metadata database.
    database_url: str = "sqlite:///./var/insights.db"
    # Event store: chdb://PATH (embedded ClickHouse) or http(s)://host:port.
    events_dsn: str = "chdb://./var/events"
    # ClickHouse cluster name: when set, the schema is replicated tables + Distributed ones on it.
    clickhouse_cluster: str = ""
    # Seconds in-flight calls get to finish on shutdown.
    grace_seconds: float = 10.0
    # Threads running blocking database and engine calls.
    workers: int = 8
    # Seconds a verified API key is trusted without asking the database.
    auth_cache_seconds: float = 5.0
    # Seconds a read insight is served from memory (0 disables); other replicas' writes show after it.
    read_cache_seconds: float = 2.0
    # MiB of results this process holds: the result cache and the answers rebuilt from it for hot
    # reads share this one budget (memos give way first, then the least recently used results).
    result_cache_mb: int = 256
    # Largest response message a caller gets without opting in (what gRPC clients accept by default),
    # and the most a caller may opt in to with the x-insights-max-response-bytes header.
    max_response_bytes: int = 4 * 1024 * 1024
    max_response_opt_in_bytes: int = 64 * 1024 * 1024
    # Largest request message the server takes (gRPC's default, what clients send at most unless
    # told otherwise); a larger one is RESOURCE_EXHAUSTED before any handler reads it.
    max_request_bytes: int = 4 * 1024 * 1024
    # Response compression for callers on slow links: "gzip" compresses every response to a caller
    # that accepts it (grpc-accept-encoding: every gRPC library's default), at some CPU per
    # response; a caller taking only deflate gets deflate, one taking neither uncompressed
    # responses. "none" (the default): responses go as they are.
    compression: str = "none"
    # Shortest interval between a client's keepalive pings the server accepts while it sends the
    # client nothing: a client pinging faster is told too_many_pings (GOAWAY) after two strikes.
    # Below 5 s so that clients pinging every 5 s (a common grpc-js setting) keep their connection.
    keepalive_min_ping_interval_seconds: float = 4.0
    # Engine queries running at once; more wait in a queue.
    max_running_queries: int = 4
    # Runs allowed to wait for a slot; past it, RunQuery answers RESOURCE_EXHAUSTED.
    max_queued_queries: int = 100
    # Seconds a finished run's status stays readable.
    query_status_ttl_seconds: float = 1200.0
    # Limits of SQL insights (a caller's own SELECT): seconds a statement may run, and bytes of memory
    # and rows it may read (0: the engine's own limit).
    sql_max_execution_seconds: int = 60
    sql_max_memory_bytes: int = 0
    sql_max_rows_to_read: int = 0
    # Event property keys stored as columns of their own (comma-separated), read without JSON parsing.
    materialized_properties: str = ",".join(DEFAULT_MATERIALIZED)
    # Whether identical concurrent calls of coalescable methods share one run (off: for comparisons).
    coalescing: bool = True
    # Seconds a rotated sharing access token keeps working after RefreshSharingToken.
    sharing_grace_seconds: float = 300.0
    # Failed share-password guesses allowed per client address, and per link from all addresses
    # (higher, so one address cannot lock a link for everyone), within a window of this many seconds.
    sharing_unlock_window_seconds: float = 300.0
    sharing_unlock_failures_per_address: int = 10
    sharing_unlock_failures_per_link: int = 100
    # Seconds between passes of the alert scheduler; 0 disables it (CheckAlertNow still works).
    alert_poll_seconds: float = 30.0
    # Alerts checked at once by one scheduler pass.
    alert_concurrency: int = 4
    # Seconds one webhook attempt may take, and attempts per notification (with backoff).
    alert_webhook_timeout_seconds: float = 5.0
    alert_webhook_attempts: int = 3
    # Internal webhook targets admitted despite the SSRF policy: CIDRs, addresses, host names
    # ("*.corp.example" for a domain), comma-separated. Empty: webhooks reach public addresses only.
    alert_webhook_allowed_networks: str = ""
    # An OpenAI-compatible chat-completions endpoint that rephrases GenerateInsightMetadata's derived
    # text; empty (the default): the derived text is answered as is. The model name goes in the
    # request's "model"; the API key is sent as a bearer token (never logged, not in repr).
    text_model_url: str = ""
    text_model: str = ""
    text_model_api_key: str = dataclass_field(default="", repr=False)
    # Seconds one request to the text model may take before the derived text is answered instead.
    text_model_timeout_seconds: float = 10.0
    # Internal addresses the text model may be reached at, as INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS
    # (a model on loopback or the private network must be listed here; public addresses need not).
    text_model_allowed_networks: str = ""
    # host:port of the Prometheus endpoint (GET /metrics); a bare port (or ":port") listens on loopback.
    # Empty (the default): no endpoint.
    metrics_listen: str = ""
    # Python logging level.
    log_level: str = "INFO"
    # Throttles per API key and environment (or shared link): COUNT/UNIT rates, comma-separated, all
    # of which a call must fit (burst, sustained); `off`: that class is not throttled. `compute` is the
    # methods that may run the engine, `ai` the analysis ones, `default` every other call.
    throttle_default: str = DEFAULT_RATES["default"]
    throttle_compute: str = DEFAULT_RATES["compute"]
    throttle_ai: str = DEFAULT_RATES["ai"]
    # Log lines as text (`text`) or one JSON object per line (`json`), for a log collector.
    log_format: str = "text"
    # PEM certificate chain and private key the server presents; with both set it speaks TLS only.
    tls_cert: str = ""
    tls_key: str = ""
    # PEM CA certificates: when set, a client must present a certificate they signed (mutual TLS).
    tls_client_ca: str = ""
    # Plaintext on a non-loopback address (behind a TLS-terminating proxy); otherwise refused,
    # since API keys would cross the network in clear.
    allow_plaintext: bool = False

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def webhook_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.alert_webhook_allowed_networks)

    @property
    def text_model_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.text_model_allowed_networks)

    @property
    def throttles(self) -> dict[str, tuple[Rate, ...]]:
        """The rates of each throttle class (validated() has checked they parse)."""
        return {name: parse_rates(getattr(self, f"throttle_{name}")) for name in DEFAULT_RATES}

    @property
    def metrics_address(self) -> str:
        """Where the metrics endpoint listens (host:port), or "" when it is off."""
        found = self.metrics_listen.strip()
        if not found:
            return ""
        host, sep, port = found.rpartition(":")
        if not sep:
            host, port = "", found
        return f"{host or METRICS_HOST}:{port}"

    @property
    def materialized_keys(self) -> list[str]:
        return [k.strip() for k in self.materialized_properties.split(",") if k.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads INSIGHTS_<FIELD> variables, then applies explicit overrides (flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(_PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _coerce(field.name, field.type, raw)
        settings = cls(**values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given).validated()

    def validated(self) -> Settings:
        """Rejects values the service cannot run with, naming the variable."""
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidArgument("INSIGHTS_LISTEN must be host:port", field="listen")
        check_transport(self)
        if self.metrics_listen.strip():
            port = self.metrics_address.rpartition(":")[2]
            if not port.isdigit() or int(port) > 65535:
                raise InvalidArgument(
                    "INSIGHTS_METRICS_LISTEN must be host:port, :port or a port (0-65535)", field="metrics_listen"
                )
        if self.sql_max_execution_seconds < 1:
            raise InvalidArgument(
                "INSIGHTS_SQL_MAX_EXECUTION_SECONDS must be >= 1", field="sql_max_execution_seconds"
            )
        for name in ("sql_max_memory_bytes", "sql_max_rows_to_read"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"INSIGHTS_{name.upper()} must be >= 0 (0: the engine's limit)", field=name)
        if self.grace_seconds < 0:
            raise InvalidArgument("INSIGHTS_GRACE_SECONDS must be >= 0", field="grace_seconds")
        for name in (
            "result_cache_mb",
            "max_running_queries",
            "max_queued_queries",
            "query_status_ttl_seconds",
        ):
            if getattr(self, name) < (0 if name == "max_queued_queries" else 1):
                raise InvalidArgument(f"INSIGHTS_{name.upper()} is out of range", field=name)
        try:
            materialized_columns(self.materialized_keys)
        except ValueError as exc:
            raise InvalidArgument(
                f"INSIGHTS_MATERIALIZED_PROPERTIES: {exc}", field="materialized_properties"
            ) from None
        for name in DEFAULT_RATES:
            try:
                parse_rates(getattr(self, f"throttle_{name}"))
            except ValueError as exc:
                raise InvalidArgument(f"INSIGHTS_THROTTLE_{name.upper()}: {exc}", field=f"throttle_{name}") from None
        if self.log_format not in ("text", "json"):
            raise InvalidArgument("INSIGHTS_LOG_FORMAT must be text or json", field="log_format")
        if self.workers < 1:
            raise InvalidArgument("INSIGHTS_WORKERS must be >= 1", field="workers")
        if not 0 < self.max_response_bytes <= self.max_response_opt_in_bytes:
            raise InvalidArgument(
                "INSIGHTS_MAX_RESPONSE_BYTES must be > 0 and <= INSIGHTS_MAX_RESPONSE_OPT_IN_BYTES",
                field="max_response_bytes",
            )
        if not 0 < self.max_request_bytes <= 2**31 - 1:
            raise InvalidArgument(
                "INSIGHTS_MAX_REQUEST_BYTES must be > 0 and < 2 GiB", field="max_request_bytes"
            )
        if self.compression.strip().lower() not in COMPRESSIONS:
            raise InvalidArgument(
                f"INSIGHTS_COMPRESSION must be one of {', '.join(COMPRESSIONS)}: {self.compression!r}",
                field="compression",
            )
        if not 0.001 <= self.keepalive_min_ping_interval_seconds <= 7200:
            raise InvalidArgument(
                "INSIGHTS_KEEPALIVE_MIN_PING_INTERVAL_SECONDS must be in [0.001, 7200]",
                field="keepalive_min_ping_interval_seconds",
            )
        if self.clickhouse_cluster and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]{0,63}", self.clickhouse_cluster
        ):
            raise InvalidArgument(
                "INSIGHTS_CLICKHOUSE_CLUSTER must be an identifier (letters, digits, _)",
                field="clickhouse_cluster",
            )
        if self.read_cache_seconds < 0:
            raise InvalidArgument("INSIGHTS_READ_CACHE_SECONDS must be >= 0", field="read_cache_seconds")
        if self.sharing_grace_seconds < 0:
            raise InvalidArgument(
                "INSIGHTS_SHARING_GRACE_SECONDS must be >= 0", field="sharing_grace_seconds"
            )
        if self.sharing_unlock_window_seconds <= 0:
            raise InvalidArgument(
                "INSIGHTS_SHARING_UNLOCK_WINDOW_SECONDS must be > 0", field="sharing_unlock_window_seconds"
            )
        if not 1 <= self.sharing_unlock_failures_per_address <= self.sharing_unlock_failures_per_link:
            raise InvalidArgument(
                "INSIGHTS_SHARING_UNLOCK_FAILURES_PER_ADDRESS must be >= 1 and at most "
                "INSIGHTS_SHARING_UNLOCK_FAILURES_PER_LINK",
                field="sharing_unlock_failures_per_address",
            )
        if self.auth_cache_seconds < 0:
            raise InvalidArgument("INSIGHTS_AUTH_CACHE_SECONDS must be >= 0", field="auth_cache_seconds")
        if self.alert_poll_seconds < 0:
            raise InvalidArgument("INSIGHTS_ALERT_POLL_SECONDS must be >= 0", field="alert_poll_seconds")
        for name in ("alert_concurrency", "alert_webhook_attempts"):
            if not 1 <= getattr(self, name) <= 100:
                raise InvalidArgument(f"INSIGHTS_{name.upper()} must be 1-100", field=name)
        if not 0 < self.alert_webhook_timeout_seconds <= 60:
            raise InvalidArgument(
                "INSIGHTS_ALERT_WEBHOOK_TIMEOUT_SECONDS must be in (0, 60]",
                field="alert_webhook_timeout_seconds",
            )
        try:
            self.webhook_policy  # noqa: B018 - parsing is the check
        except ValueError as exc:
            raise InvalidArgument(
                f"INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS: {exc}", field="alert_webhook_allowed_networks"
            ) from None
        if not 0 < self.text_model_timeout_seconds <= 120:
            raise InvalidArgument(
                "INSIGHTS_TEXT_MODEL_TIMEOUT_SECONDS must be in (0, 120]", field="text_model_timeout_seconds"
            )
        if self.text_model_url and not re.match(r"https?://[^/?#]+", self.text_model_url):
            raise InvalidArgument(
                "INSIGHTS_TEXT_MODEL_URL must be an http:// or https:// URL", field="text_model_url"
            )
        try:
            self.text_model_policy  # noqa: B018 - parsing is the check
        except ValueError as exc:
            raise InvalidArgument(
                f"INSIGHTS_TEXT_MODEL_ALLOWED_NETWORKS: {exc}", field="text_model_allowed_networks"
            ) from None
        return self


def loopback_host(host: str) -> bool:
    """Whether a listen host only accepts connections from this machine (names other than
    localhost count as reachable: what they resolve to can change)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(settings: Settings) -> None:
    """Rejects TLS settings that do not go together, and plaintext off loopback unless allowed."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise InvalidArgument(
            "INSIGHTS_TLS_CERT and INSIGHTS_TLS_KEY go together: set both (TLS) or neither",
            field="tls_key" if settings.tls_cert else "tls_cert",
        )
    if settings.tls_client_ca and not settings.tls_cert:
        raise InvalidArgument(
            "INSIGHTS_TLS_CLIENT_CA needs INSIGHTS_TLS_CERT and INSIGHTS_TLS_KEY (mutual TLS is TLS)",
            field="tls_client_ca",
        )
    host = settings.listen.rpartition(":")[0]
    if not settings.tls and not settings.allow_plaintext and not loopback_host(host):
        raise InvalidArgument(
            f"INSIGHTS_LISTEN {settings.listen} is not a loopback address and TLS is off: API keys "
            "would cross the network in clear. Set INSIGHTS_TLS_CERT and INSIGHTS_TLS_KEY, or "
            "INSIGHTS_ALLOW_PLAINTEXT=true when a TLS-terminating proxy is in front",
            field="listen",
        )


def _coerce(name: str, kind: Any, raw: str) -> Any:
    if kind in (bool, "bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidArgument(f"{_PREFIX}{name.upper()} must be true or false: {raw!r}", field=name)
    try:
        if kind in (float, "float"):
            return float(raw)
        if kind in (int, "int"):
            return int(raw)
    except ValueError:
        raise InvalidArgument(f"{_PREFIX}{name.upper()} is not a number: {raw!r}", field=name) from None
    return raw
