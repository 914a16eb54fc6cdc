"""Open a running dashboard in headless Chromium, check each page renders without an error
element, and save a screenshot of it: `python -m app.screenshots --url URL --out DIR`.
The browser test and the README's images both come from here."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.curves import PANELS

PAGES = {"runs": "", "curves": "curves", "splat_map": "splat_map", "generate": "generate", "diagnose": "diagnose"}
DRAWN_PLOTS = "return [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg'))"
# the fewest Plotly charts each page draws (Generate: after a Langevin run)
EXPECTED_PLOTS = {"runs": 0, "curves": len(PANELS), "splat_map": 1, "generate": 3, "diagnose": 4}
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1500,1100")


def browser(chromium: str = "/usr/bin/chromium", driver: str = "/usr/bin/chromedriver"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_rendered(drv, min_plots: int, timeout: float = 60.0) -> dict:
    """Wait until the script run is over and at least `min_plots` Plotly charts are drawn;
    returns what the page shows (plots, error elements and their text)."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    settled_since = None
    while True:
        running = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        titled = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] h1')
        plots = drv.execute_script(DRAWN_PLOTS)
        errors = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]')
        ready = titled and not running and len(plots) >= min_plots
        settled_since = (settled_since or time.time()) if ready else None
        timed_out = time.time() > deadline
        if errors or timed_out or (settled_since and time.time() - settled_since > 1.5):
            return {"plots": len(plots), "errors": [e.text for e in errors], "timed_out": timed_out and not ready}
        time.sleep(0.25)


def choose(drv, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    from selenium.webdriver.common.by import By

    drv.find_element(By.CSS_SELECTOR, f'[data-testid="stSelectbox"] input[aria-label="{label}"]').click()
    drv.find_element(By.XPATH, f"//*[@role='option'][normalize-space()='{option}']").click()


def capture(url: str, out: Path, pages: dict[str, int], timeout: float = 90.0) -> dict[str, dict]:
    """pages: name -> minimum number of plots expected. Returns what each page showed."""
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    drv = browser()
    results = {}
    try:
        for name, min_plots in pages.items():
            drv.get(f"{url.rstrip('/')}/{PAGES[name]}")
            if name == "generate":  # the page draws its charts once a Langevin run has generated text
                wait_rendered(drv, 0, timeout)
                choose(drv, "Sampler", "Langevin")
                drv.find_element(By.XPATH, "//button[.//p[text()='Generate']]").click()
                time.sleep(1.0)
            result = wait_rendered(drv, min_plots, timeout)
            drv.save_screenshot(str(out / f"{name}.png"))
            results[name] = result
    finally:
        drv.quit()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.screenshots", description=__doc__)
    p.add_argument("--url", default="http://localhost:8501")
    p.add_argument("--out", default="docs/img")
    p.add_argument("--pages", nargs="*", default=list(PAGES))
    args = p.parse_args(argv)
    results = capture(args.url, Path(args.out), {name: EXPECTED_PLOTS[name] for name in args.pages}, timeout=300)
    bad = False
    for name, r in results.items():
        print(f"{name:10s} plots {r['plots']:3d}  errors {r['errors'] or '-'}{'  TIMED OUT' if r['timed_out'] else ''}")
        bad |= bool(r["errors"]) or r["timed_out"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
