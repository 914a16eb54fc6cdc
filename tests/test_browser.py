"""End to end in a real browser: `ebm-dashboard` serves a trainer run, headless Chromium opens
its pages, the curves and the splat map render with no error element, screenshots are saved."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT, child_env

from app.curves import PANELS

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(ws):
    """`ebm-dashboard` over the folder `ws` (logs/ and checkpoints/), refreshing every 2 s."""
    port = free_port()
    cmd = [sys.executable, "-m", "app.launch", "--logs", str(ws / "logs"), "--checkpoints", str(ws / "checkpoints")]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--refresh", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env()
    )
    url = f"http://localhost:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return url, proc
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"dashboard did not start: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)


@pytest.fixture
def run_copy(full_run, tmp_path):
    """A private copy of the session's full run alone (other tests add runs of a few steps);
    its checkpoints are copied in by the test or by `dashboard`."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed (scripts/system-deps.sh installs them)")
    src, _ = full_run
    (tmp_path / "logs" / "ebm").mkdir(parents=True)
    shutil.copy(src / "logs" / "ebm" / "full.jsonl", tmp_path / "logs" / "ebm" / "full.jsonl")
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def copy_checkpoints(full_run, ws) -> None:
    shutil.copytree(full_run[0] / "checkpoints" / "full", ws / "checkpoints" / "full", ignore=shutil.ignore_patterns("maps"))


@pytest.fixture
def dashboard(full_run, run_copy):
    copy_checkpoints(full_run, run_copy)
    url, proc = serve(run_copy)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_pages_render_in_headless_chromium(dashboard, tmp_path):
    from app.screenshots import EXPECTED_PLOTS, capture

    assert {"runs": 0, "curves": len(PANELS), "splat_map": 1, "generate": 3, "diagnose": 4} == EXPECTED_PLOTS
    results = capture(dashboard, tmp_path, EXPECTED_PLOTS, timeout=120)
    for name, r in results.items():
        assert not r["errors"] and not r["timed_out"], (name, r)
        assert (tmp_path / f"{name}.png").stat().st_size > 20_000  # a real picture, not a blank page
    assert results["curves"]["plots"] >= len(PANELS) and results["splat_map"]["plots"] >= 1


def test_the_shared_zoom_survives_refreshes(dashboard):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from app.screenshots import browser, wait_rendered

    drv = browser()
    try:
        drv.get(f"{dashboard}/curves")
        assert not wait_rendered(drv, len(PANELS), 120)["errors"]
        last = drv.execute_script("return document.querySelector('.js-plotly-plot').layout.xaxis.range[1]")
        start = int(last) // 2  # zoom into the second half of the run
        box = drv.find_element(By.CSS_SELECTOR, 'input[aria-label="x from"]')
        box.send_keys(str(start), Keys.ENTER)
        time.sleep(6)  # the panels refresh every 2 s
        ranges = drv.execute_script("return [...document.querySelectorAll('.js-plotly-plot')].map(p => p.layout.xaxis.range)")
        drawn = [r for r in ranges if r]
        assert len(ranges) == len(PANELS) and drawn and all(r[0] == start for r in drawn), (start, ranges)
    finally:
        drv.quit()


def test_a_charts_own_zoom_survives_two_refreshes(dashboard):
    """A zoom box dragged on one chart (as with the toolbar's zoom) is kept while the page
    refreshes its data (layout.uirevision)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from app.screenshots import browser, wait_rendered

    drv = browser()
    try:
        drv.get(f"{dashboard}/curves")
        assert not wait_rendered(drv, len(PANELS), 120)["errors"]
        plot = "document.querySelectorAll('.js-plotly-plot')[0]"
        before = drv.execute_script(f"return {plot}.layout.xaxis.range")
        area = drv.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .nsewdrag")[0]
        width = area.size["width"]
        drag = ActionChains(drv).move_to_element_with_offset(area, int(-width * 0.1), 0).click_and_hold()
        drag.move_by_offset(int(width * 0.2), 0).release().perform()
        time.sleep(1)
        zoomed = drv.execute_script(f"return {plot}.layout.xaxis.range")
        assert zoomed[1] - zoomed[0] < 0.5 * (before[1] - before[0]), (before, zoomed)  # the drag did zoom
        time.sleep(5)  # two refreshes at 2 s
        kept = drv.execute_script(f"return {plot}.layout.xaxis.range")
        assert kept == pytest.approx(zoomed, rel=1e-6), (zoomed, kept)
    finally:
        drv.quit()


def test_a_checkpoint_written_while_the_page_is_open_appears_without_a_reload(full_run, run_copy):
    from selenium.webdriver.common.by import By

    from app.screenshots import browser, wait_rendered

    url, proc = serve(run_copy)
    drv = browser()
    try:
        drv.get(f"{url}/generate")
        wait_rendered(drv, 0, 60)
        main = '[data-testid="stMain"]'
        assert "No checkpoints" in drv.find_element(By.CSS_SELECTOR, main).text
        copy_checkpoints(full_run, run_copy)  # the run's first checkpoint lands
        deadline = time.time() + 60
        while "No checkpoints" in drv.find_element(By.CSS_SELECTOR, main).text and time.time() < deadline:
            time.sleep(0.5)
        wait_rendered(drv, 0, 60)
        text = drv.find_element(By.CSS_SELECTOR, main).text
        assert "No checkpoints" not in text and "full/" in text and " · step " in text, text[:500]
        assert drv.find_elements(By.XPATH, "//button[.//p[text()='Generate']]")  # the form is there, ready to use
    finally:
        drv.quit()
        proc.terminate()
        proc.wait(timeout=20)


def test_the_constraints_panel_generates_and_shows_badges(dashboard, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from app.screenshots import browser, wait_rendered

    drv = browser()
    try:
        drv.get(f"{dashboard}/generate")
        wait_rendered(drv, 0, 120)
        drv.find_element(By.XPATH, "//summary[.//p[starts-with(text(), 'Constraints')]]").click()
        for label, value in (("Keywords (must appear)", "the"), ("Avoid (must not appear)", "of")):
            box = drv.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
            box.send_keys(value, Keys.TAB)
        drv.find_element(By.XPATH, "//button[.//p[text()='Generate']]").click()
        deadline = time.time() + 180
        while not drv.find_elements(By.CSS_SELECTOR, ".constrained-sample") and time.time() < deadline:
            time.sleep(0.5)
        samples = drv.find_elements(By.CSS_SELECTOR, ".constrained-sample")
        drv.save_screenshot(str(tmp_path / "generate-constraints.png"))
        assert len(samples) == 2, drv.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text[:800]
        assert all("met: of" in s.text for s in samples) and all(": the" in s.text for s in samples)
    finally:
        drv.quit()
