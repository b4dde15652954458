"""A `python -m server serve` process of a benchmark's own, over the demo dataset in a temp dir,
and what the benchmark reads of it from outside (RSS, CPU time)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent

# Benches measure what the service can do, not the per-key limits a deployment sets.
UNTHROTTLED = {"throttle_default": "off", "throttle_compute": "off", "throttle_ai": "off"}


def unthrottled(settings: Settings) -> Settings:
    """`settings` without throttles (see UNTHROTTLED)."""
    return dataclasses.replace(settings, throttle_default="off", throttle_compute="off", throttle_ai="off")


@dataclass
class Prepared:
    """A migrated database, a key with every scope and the demo events, in `tmp`."""

    tmp: Path
    env: dict[str, str]
    key: str
    environment_id: int
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux, /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def prepared(events: int, prefix: str, **settings: str) -> Iterator[Prepared]:
    """A temp dir with the metadata database, a '*' key and `events` demo events; removed after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        port = free_port()
        env = {
            **os.environ,
            "INSIGHTS_LISTEN": f"127.0.0.1:{port}",
            "INSIGHTS_DATABASE_URL": f"sqlite:///{tmp / 'insights.db'}",
            "INSIGHTS_EVENTS_DSN": f"chdb://{tmp / 'events'}",
            "INSIGHTS_ALERT_POLL_SECONDS": "0",
            "INSIGHTS_LOG_LEVEL": "WARNING",
            **{f"INSIGHTS_{name.upper()}": value for name, value in UNTHROTTLED.items()},
            **{f"INSIGHTS_{name.upper()}": value for name, value in settings.items()},
        }
        _run([sys.executable, "-m", "server", "migrate"], env)
        printed = _run([sys.executable, "-m", "server", "create-api-key", "--scopes", "*", "--label", "bench"], env)
        key = re.search(r"(phx_\S+)", printed)
        environment = re.search(r"Environment: (\d+)", printed)
        assert key and environment, printed
        started = time.monotonic()
        _run([sys.executable, "-m", "server", "demo", "--events", str(events)], env)
        print(f"demo dataset: {events} events in {time.monotonic() - started:.0f} s")
        yield Prepared(tmp, env, key.group(1), int(environment.group(1)), port)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def serving(prepared: Prepared) -> Iterator[subprocess.Popen[bytes]]:
    """The server process, SERVING on the prepared port; SIGTERM (then SIGKILL) on exit."""
    with (prepared.tmp / "server.log").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], cwd=ROOT, env=prepared.env, stdout=out, stderr=out
        )
        try:
            with grpc.insecure_channel(prepared.target) as channel:
                wait_ready(channel)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_ready(channel: grpc.Channel, timeout: float = 120) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not become SERVING")
