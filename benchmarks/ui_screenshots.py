"""Screenshots of the screens a lab looks at, taken in headless Chromium, and the count of columns a
person must add by hand to see model vs baselines in MLflow's runs table.

Needs Chromium, chromedriver and selenium, none of them project dependencies: run it with a
throwaway virtual environment outside the repository, pointing it at the project's Python:

    apt-get install chromium chromium-driver
    python3 -m venv /tmp/shots && /tmp/shots/bin/pip install selenium
    /tmp/shots/bin/python benchmarks/ui_screenshots.py --python .venv/bin/python --home DIR --out docs

DIR is a $SCREGNET_HOME holding training runs (e.g. `scregnet demo --seed 0/1/2` and one
`scregnet train --data ../shared/beeline/Specific/mHSC-L/TFs500 --embedder pca`). Writes
mlflow_runs_table.png (the saved view `scregnet train` links to), mlflow_runs_default.png (the
experiment as MLflow first opens it), mlflow_charts.png, mlflow_run.png (the newest run's page) and
zenml_runs.png (the dashboard's run list), and prints the column counts.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
# Run in the project's Python: the experiment, its newest run, the headline metric names, the view id.
IDS = """
import json, os
from mlflow import MlflowClient
from scregnet.tracking import records
c = MlflowClient(f"sqlite:///{os.environ['SCREGNET_HOME']}/mlflow.db")
exp = c.get_experiment_by_name("scregnet")
run = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
print(json.dumps({"experiment": exp.experiment_id, "run": run.info.run_id, "headline": records.summary_names(),
                  "view": records.VIEW_ID}))
"""
ASSISTANT_CLOSE = "button[data-component-id='mlflow.assistant.chat_panel.close']"


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 300) -> None:
    """Until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=3).status == 200:
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(url)


def browser(chromium: str, chromedriver: str, profile: str, width: int, height: int):
    """A headless Chromium with an empty profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(180)
    return driver


def capture(driver, path: Path) -> None:
    """The viewport as PNG (retried: a busy renderer can miss the first request)."""
    for _ in range(6):
        try:
            data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
            path.write_bytes(base64.b64decode(data))
            print(f"wrote {path}")
            return
        except Exception as exc:  # selenium's timeouts on a loaded machine
            print(f"retrying the screenshot of {path.name}: {type(exc).__name__}")
            time.sleep(5)
    raise RuntimeError(f"could not capture {path}")


def open_page(driver, url: str, settle: float) -> None:
    """Load `url` afresh, wait `settle` s for the app to render, close MLflow's assistant panel if open."""
    driver.get("about:blank")  # a change of the #fragment alone would not reload the app
    driver.get(url)
    time.sleep(settle)
    driver.execute_script(f'var b = document.querySelector("{ASSISTANT_CLOSE}"); if (b) b.click();')
    time.sleep(2)


def headline_columns(driver) -> list[str]:
    """Runs-table columns showing a headline metric (`summary/...`); the window must be wide enough
    for the grid to render every column (it renders only the visible ones)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.ag-header-cell[col-id]'))"
        ".map(e => e.getAttribute('col-id')).filter(c => c.startsWith('metrics.`summary/'))"
    )


def main() -> None:
    """Start MLflow's UI and the ZenML dashboard on the store, take the screenshots, stop both."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="the project's Python (its venv has mlflow and scregnet)")
    ap.add_argument("--home", required=True, type=Path, help="a $SCREGNET_HOME with training runs")
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds a page gets to render")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = args.home.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env["SCREGNET_HOME"] = str(home)
    bin_dir = Path(args.python).parent
    ml_port, zen_port = free_port(), free_port()
    servers = [
        subprocess.Popen(
            [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"]
            + ["--port", str(ml_port), "--workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [args.python, "-m", "scregnet.cli", "dashboard", "--port", str(zen_port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    ml, zen = f"http://127.0.0.1:{ml_port}", f"http://127.0.0.1:{zen_port}"
    try:
        wait_http(f"{ml}/health")
        wait_http(f"{zen}/health")
        ids = json.loads(
            subprocess.run([args.python, "-c", IDS], cwd=REPO, env=env, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        exp_id, run_id, n = ids["experiment"], ids["run"], len(ids["headline"])
        view = f"{ml}/#/experiments/{exp_id}/runs?viewStateShareKey={ids['view']}"
        counts = {}
        with tempfile.TemporaryDirectory() as profile:  # counting: a window wide enough for every column
            d = browser(args.chromium, args.chromedriver, profile, 5000, 1000)
            try:
                open_page(d, f"{ml}/#/experiments/{exp_id}/runs", args.settle)
                counts["default view"] = headline_columns(d)
                open_page(d, view, args.settle)
                counts["saved view"] = headline_columns(d)
            finally:
                d.quit()
        with tempfile.TemporaryDirectory() as profile:
            d = browser(args.chromium, args.chromedriver, profile, 1920, 1000)
            try:
                open_page(d, f"{ml}/#/experiments/{exp_id}/runs", args.settle)
                capture(d, args.out / "mlflow_runs_default.png")
                open_page(d, view, args.settle)
                capture(d, args.out / "mlflow_runs_table.png")
                open_page(d, f"{ml}/#/experiments/{exp_id}/runs?compareRunsMode=CHART", 2 * args.settle)
                capture(d, args.out / "mlflow_charts.png")
                open_page(d, f"{ml}/#/experiments/{exp_id}/runs/{run_id}", args.settle)
                capture(d, args.out / "mlflow_run.png")
                open_page(d, f"{zen}/projects/default/runs", args.settle)
                capture(d, args.out / "zenml_runs.png")
            finally:
                d.quit()
        print(json.dumps({k: len(v) for k, v in counts.items()}))
        for k, v in counts.items():
            print(f"{k}: {len(v)} headline columns shown, {n - len(v)} to add by hand ({', '.join(v) or 'none'})")
    finally:
        for p in servers:
            p.terminate()
        for p in servers:
            p.wait(60)


if __name__ == "__main__":
    main()
