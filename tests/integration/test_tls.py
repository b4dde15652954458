"""TLS and mutual TLS: the real server serves them from certificate files, refuses plaintext and
untrusted clients at the handshake, and the loader and `serve` take the same settings."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from server.__main__ import main
from server.cli.loader import load_file
from server.config import Settings
from server.errors import InvalidArgument
from server.transport import ClientTransport, bind
from tests.integration.itkit import bearer, free_port, health_status, make_settings, wait_for_health
from tests.support.certs import Authority, Issued, openssl_unavailable_reason

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(openssl_unavailable_reason() is not None, reason=str(openssl_unavailable_reason()))


@dataclass(frozen=True)
class Certs:
    """A CA with a server certificate (127.0.0.1, localhost) and a client certificate, and a
    rogue CA whose client certificate the server must refuse."""

    ca: Authority
    server: Issued
    client: Issued
    rogue_ca: Authority
    rogue_client: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca, rogue = Authority.create(folder / "ca", "insights-test-ca"), Authority.create(folder / "rogue", "rogue-ca")
    return Certs(
        ca, ca.issue("server", server=True), ca.issue("client", server=False), rogue, rogue.issue("client", server=False)
    )


@dataclass
class Running:
    """A started App with TLS, a tenant of its own and a key."""

    app: Any
    target: str
    organization_id: int
    environment_id: int
    key: str


def _tenant(database_url: str) -> tuple[int, int, str]:
    from server.domain import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    upgrade(database_url)
    db = Database(database_url)
    try:
        org = accounts.create_organization(db, "tls org")
        user = accounts.create_user(db, "tls@example.com")
        accounts.add_membership(db, user, org)
        env = accounts.create_environment(db, org, "tls env")
        _, raw = accounts.create_api_key(db, user, ["*"])
        return org, env, raw
    finally:
        db.close()


async def _start(folder: Path, events_dsn: str, **tls: str) -> AsyncIterator[Running]:
    from server.app import App

    database_url = f"sqlite:///{folder / 'insights.db'}"
    organization_id, environment_id, key = await asyncio.to_thread(_tenant, database_url)
    app = App(make_settings(database_url, events_dsn, **tls))
    port = await app.start()
    try:
        yield Running(app, f"127.0.0.1:{port}", organization_id, environment_id, key)
    finally:
        await app.stop(1.0)


@pytest.fixture(scope="module")
async def tls_server(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> AsyncIterator[Running]:
    async for running in _start(
        tmp_path_factory.mktemp("tls"), events_dsn, tls_cert=str(certs.server.cert), tls_key=str(certs.server.key)
    ):
        yield running


@pytest.fixture(scope="module")
async def mtls_server(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> AsyncIterator[Running]:
    async for running in _start(
        tmp_path_factory.mktemp("mtls"),
        events_dsn,
        tls_cert=str(certs.server.cert),
        tls_key=str(certs.server.key),
        tls_client_ca=str(certs.ca.cert),
    ):
        yield running


async def _list_insights(channel: grpc.aio.Channel, running: Running) -> ipb.ListInsightsResponse:
    stub = igrpc.InsightsServiceStub(channel)
    request = ipb.ListInsightsRequest(environment_id=running.environment_id)
    return await stub.ListInsights(request, metadata=bearer(running.key), timeout=10)


async def _refused(transport: ClientTransport, target: str) -> grpc.aio.AioRpcError:
    """The error of an authenticated call through `transport` (fails the test when it succeeds)."""
    async with transport.aio_channel(target) as channel:
        stub = igrpc.InsightsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListInsights(ipb.ListInsightsRequest(environment_id=1), metadata=bearer("phx_x"), timeout=10)
    return caught.value


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


async def test_a_client_trusting_the_ca_calls_a_tls_server(tls_server: Running, certs: Certs) -> None:
    for target in (tls_server.target, tls_server.target.replace("127.0.0.1", "localhost")):
        async with ClientTransport(ca=str(certs.ca.cert)).aio_channel(target) as channel:
            await wait_for_health(channel)
            listed = await _list_insights(channel, tls_server)
            assert listed.count == 0


async def test_a_plaintext_client_is_refused_by_a_tls_server(tls_server: Running) -> None:
    error = await _refused(ClientTransport(tls=False), tls_server.target)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # Nothing answers in clear, not even health.
    async with grpc.aio.insecure_channel(tls_server.target) as channel:
        assert await health_status(channel) == -1


async def test_a_client_that_does_not_trust_the_servers_ca_refuses_it(tls_server: Running, certs: Certs) -> None:
    error = await _refused(ClientTransport(ca=str(certs.rogue_ca.cert)), tls_server.target)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------------
# Mutual TLS
# ---------------------------------------------------------------------------


async def test_mutual_tls_accepts_a_client_certificate_signed_by_the_client_ca(
    mtls_server: Running, certs: Certs
) -> None:
    transport = ClientTransport(ca=str(certs.ca.cert), cert=str(certs.client.cert), key=str(certs.client.key))
    async with transport.aio_channel(mtls_server.target) as channel:
        await wait_for_health(channel)
        assert (await _list_insights(channel, mtls_server)).count == 0


@pytest.mark.parametrize("client", ["none", "rogue"])
async def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(
    mtls_server: Running, certs: Certs, client: str
) -> None:
    chosen = {"none": ("", ""), "rogue": (str(certs.rogue_client.cert), str(certs.rogue_client.key))}[client]
    transport = ClientTransport(ca=str(certs.ca.cert), cert=chosen[0], key=chosen[1])
    error = await _refused(transport, mtls_server.target)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # Refused at the handshake: not even health answers.
    async with transport.aio_channel(mtls_server.target) as channel:
        assert await health_status(channel) == -1


# ---------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------


async def _fresh_environment(running: Running) -> int:
    """An environment of the running server's tenant with no events in the shared event store."""
    from server.domain import accounts

    while True:
        env = await asyncio.to_thread(
            accounts.create_environment, running.app.db, running.organization_id, "load here"
        )
        if await asyncio.to_thread(running.app.events.count_events, env) == 0:
            return int(env)


def _events_file(folder: Path) -> Path:
    path = folder / "events.jsonl"
    rows = [
        {"event": "$pageview", "distinct_id": f"user-{i}", "timestamp": "2024-05-01T10:00:00Z"} for i in range(5)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def test_the_loader_streams_events_over_tls(tls_server: Running, certs: Certs, tmp_path: Path) -> None:
    env = await _fresh_environment(tls_server)
    summary = await asyncio.to_thread(
        load_file,
        _events_file(tmp_path),
        env,
        target=tls_server.target,
        api_key=tls_server.key,
        progress=False,
        transport=ClientTransport(ca=str(certs.ca.cert)),
    )
    assert (summary.loaded, summary.rejected) == (5, 0)
    assert await asyncio.to_thread(tls_server.app.events.count_events, env) == 5


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_events_load_reaches_a_mutual_tls_server_with_the_client_certificate(
    mtls_server: Running, certs: Certs, tmp_path: Path
) -> None:
    env = await _fresh_environment(mtls_server)
    path = _events_file(tmp_path)
    # Its own metadata and event store: none of them may be touched when a server is named.
    local = ["--database-url", f"sqlite:///{tmp_path / 'local.db'}", "--events-dsn", f"chdb://{tmp_path / 'ev'}"]
    common = ["events", "load", str(path), *local, "--log-level", "WARNING", "--api-key", mtls_server.key]
    named = [*common, "--server", mtls_server.target, "--environment", str(env), "--tls-ca", str(certs.ca.cert)]

    code, out, err = await _cli(*named)
    assert code == 2 and "--tls-cert" in err, (out, err)
    code, out, err = await _cli(*named, "--tls-cert", str(certs.client.cert), "--tls-key", str(certs.client.key))
    assert code == 0, (out, err)
    assert f"loaded 5 events through the server at {mtls_server.target} (mutual TLS)" in out
    assert await asyncio.to_thread(mtls_server.app.events.count_events, env) == 5
    assert not (tmp_path / "ev").exists()


async def test_events_load_does_not_write_around_a_tls_server_it_cannot_talk_to(
    tls_server: Running, tmp_path: Path
) -> None:
    """A plaintext loader finding a TLS server at INSIGHTS_LISTEN says so, instead of opening the
    event store itself (which the server holds)."""
    local = ["--database-url", f"sqlite:///{tmp_path / 'local.db'}", "--events-dsn", f"chdb://{tmp_path / 'ev'}"]
    code, out, err = await _cli(
        "events", "load", str(_events_file(tmp_path)), *local, "--listen", tls_server.target, "--log-level", "WARNING"
    )
    assert code == 2, (out, err)
    assert f"something listens at {tls_server.target}" in err and "--tls-ca" in err
    assert not (tmp_path / "ev").exists()


# ---------------------------------------------------------------------------
# Starting: bad settings stop the server with a clear message
# ---------------------------------------------------------------------------


def _serve(tmp_path: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path / 'never.db'}",
            "--events-dsn",
            f"chdb://{tmp_path / 'never'}",
            "--log-level",
            "WARNING",
            *flags,
        ]
    )
    return code, capsys.readouterr().err


def test_serve_refuses_a_certificate_without_its_key(tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _serve(tmp_path, "--tls-cert", str(certs.server.cert), capsys=capsys)
    assert code == 2
    assert "INSIGHTS_TLS_CERT and INSIGHTS_TLS_KEY go together" in err


def test_serve_names_a_certificate_file_it_cannot_read(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.pem"
    code, err = _serve(tmp_path, "--tls-cert", str(missing), "--tls-key", str(certs.server.key), capsys=capsys)
    assert code == 2
    assert f"INSIGHTS_TLS_CERT: cannot read {missing}: No such file or directory" in err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    code, err = _serve(tmp_path, "--tls-cert", str(certs.server.cert), "--tls-key", str(garbage), capsys=capsys)
    assert code == 2 and f"INSIGHTS_TLS_KEY: {garbage} is not a PEM file" in err
    code, err = _serve(
        tmp_path, "--tls-cert", str(certs.server.cert), "--tls-key", str(certs.client.key), capsys=capsys
    )
    assert code == 2 and "not a certificate chain and its private key" in err
    assert not (tmp_path / "never.db").exists() and not (tmp_path / "never").exists()


def test_serve_refuses_plaintext_off_loopback_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    code, err = _serve(tmp_path, "--listen", "0.0.0.0:0", capsys=capsys)
    assert code == 2 and "not a loopback address and TLS is off" in err

    async def bind_both() -> None:
        # Settings built without validation (as tests and benchmarks do) are checked at bind too.
        server = grpc.aio.server()
        with pytest.raises(InvalidArgument, match="not a loopback address"):
            bind(server, Settings(listen="0.0.0.0:0"))
        with caplog.at_level(logging.WARNING, logger="insights.transport"):
            assert bind(server, Settings(listen="0.0.0.0:0", allow_plaintext=True)) > 0
        await server.stop(0)

    asyncio.run(bind_both())
    assert any("PLAINTEXT on non-loopback" in r.getMessage() for r in caplog.records)


async def test_serve_speaks_mutual_tls_from_its_flags(certs: Certs, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTS_")}
    log = (tmp_path / "server.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve",
        "--listen", f"127.0.0.1:{port}",
        "--database-url", f"sqlite:///{tmp_path / 'insights.db'}",
        "--events-dsn", f"chdb://{tmp_path / 'events'}",
        "--tls-cert", str(certs.server.cert), "--tls-key", str(certs.server.key),
        "--tls-client-ca", str(certs.ca.cert),
        cwd=REPO, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        transport = ClientTransport(ca=str(certs.ca.cert), cert=str(certs.client.cert), key=str(certs.client.key))
        async with transport.aio_channel(f"127.0.0.1:{port}") as channel:
            await wait_for_health(channel, timeout=60)
        async with ClientTransport(ca=str(certs.ca.cert)).aio_channel(f"127.0.0.1:{port}") as channel:
            assert await health_status(channel) == -1
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()
    assert "mutual TLS (client certificates required)" in (tmp_path / "server.log").read_text()
