"""`make run` in a temp dir: a migrated database, a '*' key, the demo dataset and a `python -m server
serve` process on a free loopback port, as a newcomer following the README has them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoServer:
    """The running demo: the environment its processes share, the printed key and environment id."""

    env: dict[str, str]
    key: str
    environment_id: int
    port: int
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -m server {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _wait_serving(target: str, timeout: float) -> None:
    """Blocks until the server's overall health is SERVING (a Watch stream: no polling)."""
    with grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True
        )
        for answer in watch:
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                return
    raise RuntimeError(f"the server at {target} never answered SERVING")


@contextlib.contextmanager
def demo_server(tmp: Path, events: int) -> Iterator[DemoServer]:
    """What `make run` does (migrate, a '*' key, `demo --events N`, serve), with every file under `tmp`."""
    port = _free_port()
    env = {
        **os.environ,
        "INSIGHTS_LISTEN": f"127.0.0.1:{port}",
        "INSIGHTS_DATABASE_URL": f"sqlite:///{tmp / 'insights.db'}",
        "INSIGHTS_EVENTS_DSN": f"chdb://{tmp / 'events'}",
        "INSIGHTS_ALERT_POLL_SECONDS": "0",
        "INSIGHTS_LOG_LEVEL": "WARNING",
    }
    _cli(["migrate"], env)
    printed = _cli(["create-api-key", "--scopes", "*", "--label", "demo"], env)
    key = re.search(r"(phx_\S+)", printed)
    environment = re.search(r"Environment: (\d+)", printed)
    if not (key and environment):
        raise RuntimeError(f"create-api-key printed no key or environment:\n{printed}")
    _cli(["demo", "--events", str(events), "--if-empty"], env)
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            _wait_serving(f"127.0.0.1:{port}", timeout=120)
            yield DemoServer(env, key.group(1), int(environment.group(1)), port, log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
