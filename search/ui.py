"""``abacus ui``: the MLflow UI for the store the searches write to, on 127.0.0.1 only.

Bound to the loopback interface because the MLflow server has no authentication: anyone who can
reach the port can read and delete runs. Reach it from another machine through an SSH tunnel
(``ssh -L 5000:127.0.0.1:5000 host``).

A taken port is refused before anything starts (MLflow would report it only in a log while the
user's browser shows whoever holds the port). MLflow 3 also starts job-runner processes for its
GenAI features (judges, trace rollups) by default; abacus does not use them, so they stay off
unless ``--jobs`` is given. MLflow 3.17's UI opens on its GenAI pages unless the URL says
``workflowType=machine_learning``: the links abacus prints say so (``ui_url``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

HOST = "127.0.0.1"
WORKFLOW = "workflowType=machine_learning"  # MLflow 3.17's UI: open on training runs, not GenAI


def ui_url(port: int, experiment_id: str | None = None) -> str:
    """The UI's address for the runs of one experiment (or the experiment list)."""
    where = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"http://{HOST}:{int(port)}/#/{where}?{WORKFLOW}"


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, int(port)))
        except OSError:
            return True
    return False


def server_env(jobs: bool = False) -> dict[str, str]:
    """The environment for the server: MLflow's job runners only when asked for."""
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if jobs else "false"
    return env


def mlflow_ui_argv(tracking_uri: str | None, port: int = 5000) -> list[str]:
    """The command line: ``python -m mlflow ui`` of this interpreter (``mlflow`` may not be on
    PATH when ``abacus`` is run from a venv without activating it)."""
    from search.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    # one worker: a personal UI does not need MLflow's default of 4 server processes
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", HOST, "--port", str(int(port)), "--workers", "1"]


def ui_command(
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port on 127.0.0.1")] = 5000,
    config: Annotated[Optional[Path], typer.Option("--config", help="take the store from this experiment YAML (mlflow.tracking_uri)")] = None,
    jobs: Annotated[bool, typer.Option("--jobs", help="also start MLflow's job runners (GenAI judges, trace rollups; abacus does not need them)")] = False,
) -> None:
    """Start the MLflow UI on 127.0.0.1 for the configured tracking store (replaces this process)."""
    from spaces import InvalidArchitectureError, UnknownNameError

    from search.errors import ConfigError
    from search.runs import RunLookupError, check_store
    from search.tracking import resolve_tracking_uri

    try:
        if tracking_uri is None and config is not None:
            from search.config import load_config

            tracking_uri = load_config(config).mlflow.tracking_uri
        uri = resolve_tracking_uri(tracking_uri)
        check_store(uri)
    except (RunLookupError, ConfigError, InvalidArchitectureError, UnknownNameError) as exc:
        typer.echo(f"abacus: error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if port_in_use(port):
        typer.echo(f"abacus: error: --port {port}: expected a free port on {HOST}, found it in use (another server?); pass another --port", err=True)
        raise typer.Exit(code=2)
    argv = mlflow_ui_argv(uri, port)
    typer.echo(f"MLflow UI for {uri} at {ui_url(port)} (Ctrl-C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, server_env(jobs))
