"""MLflow's own UI, in a real (headless) browser, after a tiny search: the experiment opens on the
runs, the ``tags.pareto = "true"`` filter shows exactly the front, the parent's ``pareto.html``
renders. Debian's chromium driven by playwright's Python client (never ``playwright install``:
nothing is downloaded); the server and the browser talk on 127.0.0.1 only. Screenshots go to
the test's output directory (``tmp_path/screenshots``; ``ABACUS_SCREENSHOTS`` copies them)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from search.config import load_config
from search.engine import SearchEngine
from search.ui import mlflow_ui_argv, server_env, ui_url

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
         "stage3.blocks": 1, "stage3.op": "conv", "stage3.bits": 32, "manidp.enabled": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path, monkeypatch):
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):  # CI must run it: .ci/run installs Debian's chromium
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} missing: `apt-get install -y chromium` (.ci/run does)")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, name="ui-e2e", space="addernet-resnet", fixed=SMALL, executor="local", workers=1, save_weights=False,
                      evaluator={"function": "problem_helpers:size_score"}, mlflow={"tracking_uri": uri},
                      strategy={"name": "random"}, **{"budget.trials": 6, "budget.epochs": 2})
    summary = SearchEngine(cfg, progress=False).run()
    port = _free_port()
    proc = subprocess.Popen(mlflow_ui_argv(uri, port), env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "MLflow server gave no answer in 240 s"
                time.sleep(0.5)
        yield port, summary
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def test_mlflow_ui_opens_on_runs_filters_the_front_and_renders_pareto_html(server, tmp_path):
    from playwright.sync_api import sync_playwright

    port, summary = server
    exp_id, parent = summary["mlflow_experiment_id"], summary["parent_run_id"]
    front = {f"ui-e2e-trial-{row['trial']:04d}" for row in summary["front"]}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    timeout = 180_000  # ms; a shared CPU makes the UI's first load slow
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.route("**/*", lambda route: route.continue_() if urllib.parse.urlparse(route.request.url).hostname in ("127.0.0.1", None)
                   or route.request.url.startswith(("blob:", "data:")) else route.abort())
        try:
            # 1. the link abacus prints opens the training runs of the experiment (not MLflow's GenAI pages)
            page.goto(ui_url(port, exp_id), timeout=timeout)
            page.locator(".ag-row").get_by_role("link", name="ui-e2e", exact=True).wait_for(timeout=timeout)
            assert f"/experiments/{exp_id}/runs" in page.url
            assert page.get_by_text("Detect Issues").count() == 0
            page.screenshot(path=str(shots / "1-runs.png"))

            # 2. the pareto filter: expanding the search shows exactly the front's trials
            query = urllib.parse.quote('tags.pareto = "true"')
            page.goto(f"{ui_url(port, exp_id)}&searchFilter={query}", timeout=timeout)
            page.locator(".ag-row").get_by_role("link", name="ui-e2e", exact=True).wait_for(timeout=timeout)
            page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
            page.get_by_role("link", name=sorted(front)[0], exact=True).wait_for(timeout=timeout)
            page.wait_for_timeout(1000)
            shown = {t.strip() for t in page.locator(".ag-row a").all_inner_texts() if t.strip().startswith("ui-e2e-trial-")}
            page.screenshot(path=str(shots / "2-front-filter.png"))
            assert shown == front, (shown, front)

            # 3. the parent's pareto.html artifact renders (a plotly figure with the front)
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{exp_id}/runs/{parent}/artifacts/pareto.html?workflowType=machine_learning",
                      timeout=timeout)
            deadline = time.monotonic() + timeout / 1000
            plotted = None
            while plotted is None and time.monotonic() < deadline:
                for frame in page.frames:
                    try:
                        if frame.locator("svg.main-svg").count() and "Pareto front" in frame.inner_text("body"):
                            plotted = frame
                    except Exception:  # a frame detached while the page loads
                        pass
                page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "3-pareto-html.png"))
            assert plotted is not None, "pareto.html did not render a plotly figure"
            assert "reference point" in plotted.inner_text("body")
        finally:
            browser.close()
            if os.environ.get("ABACUS_SCREENSHOTS"):
                shutil.copytree(shots, os.environ["ABACUS_SCREENSHOTS"], dirs_exist_ok=True)
