"""Screens: `dashboard` (the ZenML dashboard on this project's store).

ZenML's own `zenml login --local` connects the client to the server it starts, so once that server
stops, later runs fail to reach it. `scregnet dashboard` instead serves the dashboard in a child
process against the client's own local store (the SQLite database under $SCREGNET_HOME), with the
settings ZenML's local deployer uses (no authentication, local file access for artifact
visualisations), bound to 127.0.0.1 only, and leaves the client's configuration alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from scregnet.cli._common import fail

DEFAULT_PORT = 8237  # ZenML's local server port
HOST = "127.0.0.1"  # the server runs without authentication: this machine only
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
_SERVE = (
    "import uvicorn; uvicorn.run('zenml.zen_server.zen_server_api:app', host={host!r}, port={port}, "
    "log_level={level!r}, server_header=False)"
)


def local_store():
    """(store URL, local stores path, config directory, user id) of the ZenML client; refuses a
    client connected to a ZenML server (that server has its own dashboard)."""
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType

    gc = GlobalConfiguration()
    store = gc.store_configuration
    if store.type != StoreType.SQL:
        fail(f"the ZenML client is connected to the server {store.url}: open its dashboard there", 2)
    gc.zen_store  # noqa: B018  (creates and migrates the database on first use: the server does not migrate)
    return gc.store_configuration.url, gc.local_stores_path, gc.config_directory, str(gc.user_id)


def skip_survey() -> str:
    """Mark the local user's first-visit survey (name, e-mail for ZenML's newsletter) as answered,
    e-mail not opted in, so the dashboard opens on the runs (the server logs everyone in as this
    user); returns the active project's name."""
    from zenml.client import Client

    client = Client()
    user = client.active_user
    metadata = dict(user.user_metadata or {})
    if user.email_opted_in is None or not metadata.get("finished_onboarding_survey"):
        metadata["finished_onboarding_survey"] = True
        client.update_user(user.id, updated_email_opt_in=False, updated_metadata=metadata)
    return client.active_project.name


def server_env(store_url: str, local_stores: str, config_dir: str, user_id: str) -> dict[str, str]:
    """The environment of a ZenML server on the client's local store (as ZenML's local deployer sets it)."""
    from zenml import constants as c
    from zenml.enums import AuthScheme
    from zenml.models import ServerDeploymentType

    env = {k: v for k, v in os.environ.items() if not k.startswith(c.ENV_ZENML_STORE_PREFIX)}
    env.update(
        {
            c.ENV_ZENML_SERVER: "true",
            f"{c.ENV_ZENML_STORE_PREFIX}URL": store_url,
            c.ENV_ZENML_LOCAL_STORES_PATH: local_stores,
            # The server's own global configuration, apart from the client's.
            c.ENV_ZENML_CONFIG_PATH: str(Path(config_dir) / "zen_server" / "scregnet-dashboard"),
            c.ENV_ZENML_SERVER_AUTH_SCHEME: AuthScheme.NO_AUTH.value,
            c.ENV_ZENML_SERVER_DEPLOYMENT_TYPE: str(ServerDeploymentType.LOCAL.value),
            c.ENV_ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS: "true",  # artifact visualisations (the HTML report)
            c.ENV_ZENML_DISABLE_DATABASE_MIGRATION: "true",  # the client migrated it (`local_store`)
            c.ENV_ZENML_SERVER_AUTO_ACTIVATE: "true",
            c.ENV_ZENML_ANALYTICS_OPT_IN: "false",
            c.ENV_ZENML_USER_ID: user_id,
            "ZENML_LOGGING_VERBOSITY": "WARN",
        }
    )
    return env


def port_free(port: int, host: str = HOST) -> bool:
    """Nothing listens on `host:port` (and we may bind it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    """GET `url`/health answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies (Linux), so no server outlives the command."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def start_server(port: int, env: dict[str, str], log_level: str = "warning") -> subprocess.Popen:
    """The server process (uvicorn running ZenML's server app) on 127.0.0.1:`port`."""
    code = _SERVE.format(host=HOST, port=port, level=log_level)
    return subprocess.Popen([sys.executable, "-c", code], env=env, preexec_fn=_die_with_parent)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it has not exited after `STOP_TIMEOUT_S`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float = START_TIMEOUT_S) -> None:
    """Until `url`/health answers; fails if the server exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the ZenML server exited with code {proc.returncode} before it was ready (its output is above)")
        if healthy(url):
            return
        time.sleep(0.5)
    stop_server(proc)
    fail(f"the ZenML server did not answer {url}/health within {timeout:.0f}s")


@click.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1 (the server has no authentication: it listens on this machine only).",
)
def dashboard(port: int) -> None:
    """Serve the ZenML dashboard on this project's ZenML store ($SCREGNET_HOME); Ctrl-C stops it.

    Pipeline runs, their DAGs and step logs, and the evaluation report of each run (the evaluate
    step's `evaluation_report` artifact). The ZenML client's configuration is left as it is.
    """
    url = f"http://{HOST}:{port}"
    if not port_free(port):
        fail(f"port {port} on {HOST} is in use (another dashboard?): choose another with --port", 2)
    store_url, local_stores, config_dir, user_id = local_store()
    project = skip_survey()
    proc = start_server(port, server_env(store_url, local_stores, config_dir, user_id))

    def _terminate(signum, frame):  # SIGTERM: stop the server as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        click.echo(f"starting the ZenML dashboard on the store {store_url} ...")
        wait_healthy(proc, url)
        click.echo(f"ZenML dashboard: {url}  (pipeline runs: {url}/projects/{project}/runs; Ctrl-C stops it)")
        sys.stdout.flush()
        proc.wait()
        if proc.returncode:
            fail(f"the ZenML server stopped with code {proc.returncode}")
    except KeyboardInterrupt:
        click.echo("stopping the ZenML dashboard")
    finally:
        stop_server(proc)
        signal.signal(signal.SIGTERM, previous)


COMMANDS = (dashboard,)
