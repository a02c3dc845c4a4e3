"""Real local services for tests, bound to 127.0.0.1 only, started and stopped by fixtures.

- `moto_s3`: the moto S3 server (`moto_server -H 127.0.0.1 -p PORT`) in its own process;
- `mlflow_server`: `mlflow server --backend-store-uri sqlite:///... --artifacts-destination DIR`.

Each waits (bounded) for the service to answer, and at teardown terminates the process
group it started (SIGTERM, then SIGKILL). A small supervisor process also stops the
service if the test process dies without tearing down (e.g. killed by a timeout). Import the fixtures into a test module:
`from services import moto_s3, mlflow_server  # noqa: F401`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Service:
    url: str
    proc: subprocess.Popen
    log: Path
    extra: dict


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the supervisor's group (it stops the service's group), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"service exited with {proc.returncode} before answering {url}:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s ({last}):\n{log.read_text(errors='replace')[-3000:]}")


# Runs the service in its own process group and stops that group when told to (SIGTERM) or
# when the test process that started it disappears (pytest killed: no teardown would run).
SUPERVISOR = """
import os, signal, subprocess, sys, time
parent = os.getppid()
child = subprocess.Popen(sys.argv[1:], start_new_session=True)
def stop(*_):
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while child.poll() is None:
    if os.getppid() != parent:
        stop()
    time.sleep(0.5)
sys.exit(child.returncode)
"""


def start_service(
    cmd: list[str], health_url: str, log: Path, timeout: float, env: dict | None = None
) -> subprocess.Popen:
    logf = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, *cmd],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    logf.close()
    try:
        _wait_http(health_url, proc, log, timeout)
    except BaseException:
        _stop(proc)
        raise
    return proc


def start_moto(workdir: Path, timeout: float = 60.0) -> Service:
    port = free_port()
    log = workdir / "moto.log"
    exe = BIN / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = start_service([*cmd, "-H", HOST, "-p", str(port)], f"http://{HOST}:{port}/moto-api/", log, timeout)
    return Service(f"http://{HOST}:{port}", proc, log, {})


def start_mlflow(workdir: Path, timeout: float = 120.0) -> Service:
    port = free_port()
    db = workdir / "mlflow-server.db"
    artifacts = workdir / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = workdir / "mlflow-server.log"
    exe = BIN / "mlflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    proc = start_service(
        [
            *cmd,
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        f"http://{HOST}:{port}/health",
        log,
        timeout,
    )
    return Service(f"http://{HOST}:{port}", proc, log, {"db": db, "artifacts": artifacts})


def _running(svc: Service):
    try:
        yield svc
    finally:
        _stop(svc.proc)


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1:<free port>; yields the Service (url = endpoint)."""
    yield from _running(start_moto(tmp_path_factory.mktemp("moto")))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking + registry server (sqlite, local artifacts) on 127.0.0.1."""
    yield from _running(start_mlflow(tmp_path_factory.mktemp("mlflow")))


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
    )
