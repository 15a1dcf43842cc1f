"""By hand: run axe-core (the accessibility checker) in Debian's chromium on each kind of
`stoker observe` page, and print its violations per page (rule, impact, how many nodes).

    npm pack axe-core && tar xzf axe-core-*.tgz   # in a scratch directory
    .venv/bin/python tools/observe_axe.py /path/to/package/axe.min.js [SCREENSHOT_DIR]

It starts real `stoker run` tasks in a private registry under /tmp (three processes with
a shell health check; one task whose supervisor it kills, so the task is LOST), one
`stoker observe`, and the browser (`make browser` installs it); it stops them all when done.
Pages: the task list, the two task pages, a log page, the same followed, and the task page
at 360 px wide. Not part of the suite: CI has no axe-core (the browser tests check the
structure axe-core would: tests/e2e/test_observe_browser.py).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.observer import ObservedHost, config  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

HEALTHY = textwrap.dedent("""
    jobs = [Service(cluster='local', role='me', environment='test', name='web',
                    task=Task(processes=[
                        Process(name='server', cmdline='touch ok; exec sleep 1000', min_duration=30),
                        Process(name='worker', cmdline='echo working; exec sleep 1000', min_duration=30),
                        Process(name='flaky', cmdline='echo once; exit 1', max_failures=0,
                                min_duration=0.1)],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=2),
                    health_check_config=HealthCheckConfig(
                        health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                            shell_command='test -f ok')),
                        initial_interval_secs=0.2, interval_secs=0.2, timeout_secs=0.5,
                        max_consecutive_failures=5, min_consecutive_successes=1))]
""")


def violations(driver, axe: str) -> list[tuple[str, str, int]]:
    driver.execute_script(axe)
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(function (r) {"
        " done(JSON.stringify(r.violations)); }, function (e) { done('ERROR ' + e); });")
    if result.startswith("ERROR"):
        raise RuntimeError(result)
    return [(v["id"], v["impact"], len(v["nodes"])) for v in json.loads(result)]


def check(driver, axe: str, url: str, label: str, shots: Path | None) -> None:
    driver.get(url)
    found = violations(driver, axe)
    overflow = driver.execute_script("return document.documentElement.scrollWidth - innerWidth;")
    print(f"{label}: {len(found)} rules violated; page wider than the window by {overflow} px")
    for rule, impact, nodes in found:
        print(f"    {rule} ({impact}): {nodes} nodes")
    if shots is not None:
        driver.save_screenshot(str(shots / (label.replace(" ", "-").replace("(", "")
                                            .replace(")", "").replace(",", "") + ".png")))


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_script_timeout(60)
    return driver


def pages(host: ObservedHost) -> dict[str, str]:
    ids = {t["job_key"].rsplit("/", 1)[1]: t["task_id"] for t in host.json("/api/tasks")}
    logs = f"/tasks/{ids['web']}/processes/worker/logs?run=0&stream=stdout"
    return {"list": "/", "task (health, 3 processes)": f"/tasks/{ids['web']}",
            "task LOST": f"/tasks/{ids['gone']}", "log": logs, "log followed": logs + "&follow=1"}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    axe = Path(argv[1]).read_text()
    shots = Path(argv[2]) if len(argv) > 2 else None
    with tempfile.TemporaryDirectory(prefix="stoker-axe-") as tmp:
        host = ObservedHost(Path(tmp))
        driver = None
        try:
            (Path(tmp) / "web.aurora").write_text(HEALTHY)
            host.run(Path(tmp) / "web.aurora")
            gone = host.run(config(Path(tmp), "gone", {"sleeper": "exec sleep 1000"}))
            os.kill(gone.pid, signal.SIGKILL)
            host.observe()
            wait_for(lambda: any(t["state"] == "LOST" for t in host.json("/api/tasks")), 20)
            driver = browser()
            for scheme, width in (("light", 1280), ("light", 360), ("dark", 1280)):
                driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                    "features": [{"name": "prefers-color-scheme", "value": scheme}]})
                driver.set_window_size(width, 1000)
                for name, path in pages(host).items():
                    check(driver, axe, host.url + path, f"{name} @{width}px {scheme}", shots)
        finally:
            if driver is not None:
                driver.quit()
            host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
