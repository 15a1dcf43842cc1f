"""`stoker observe` in a real headless browser: Debian's chromium driven by Selenium
through chromedriver, against real `stoker run` tasks. The list shows both tasks, a task's
page lists its processes with the pids `stoker status` gives, and a followed log shows a
line its process printed after the page was opened; following also copes with a log that
ends inside a character, a rotated log, a chatty one (the page keeps its last 1 MiB) and a
process that restarts (it goes on into the next run). One browser for the module; each page
is also saved as a screenshot (the paths are printed; `STOKER_SCREENSHOTS=DIR` saves them
there too). Skipped, saying so, when chromium or chromedriver is missing (`make browser`
installs them; CI does, and fails them instead of skipping)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.observer import ObservedHost, config
from tests.support.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

MISSING = "" if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK) else \
    f"{CHROMIUM} or {CHROMEDRIVER} missing: `make browser` installs Debian's chromium and chromium-driver"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(bool(MISSING) and not IN_CI, reason=MISSING)]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]
# The "say" process prints what the test writes into say.txt in the sandbox, once; "chatty"
# (in the other task) the same from chatty.txt, for the mebibyte test alone: a "say" log that
# big made the rotated-log test's new file as big, and the page's cap took its marker line
# (when that test ran after it).
SAY = "while sleep 0.1; do if [ -f say.txt ]; then cat say.txt; rm -f say.txt; fi; done"
CHATTY = SAY.replace("say.txt", "chatty.txt")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("observe-screenshots")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observe-browser")
    observed = ObservedHost(tmp)
    try:
        observed.run(config(tmp, "web", {"say": SAY, "sleeper": "exec sleep 1000"}))
        observed.run(config(tmp, "batch", {"worker": "echo working; exec sleep 1000", "chatty": CHATTY}))
        observed.observe()
        yield observed
    finally:
        observed.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if MISSING:
        pytest.fail(f"CI must run the browser tests: {MISSING}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    extra = os.environ.get("STOKER_SCREENSHOTS")
    if extra:
        shutil.copy(path, Path(extra) / f"observe-{name}.png")


def tasks(host: ObservedHost) -> dict[str, str]:
    """job name → task id."""
    return {t["job_key"].rsplit("/", 1)[1]: t["task_id"] for t in host.json("/api/tasks")}


def test_the_task_list_shows_both_tasks(host, browser, shots):
    from selenium.webdriver.common.by import By

    browser.get(host.url + "/")
    links = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "table a[href^='/tasks/']")}
    assert links == set(tasks(host).values())
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tasks on this host"
    assert "2 live, 0 ended" in browser.page_source
    screenshot(browser, shots, "tasks")


def test_a_task_page_lists_its_processes_with_the_pids_stoker_status_gives(host, browser, shots):
    from selenium.webdriver.common.by import By

    tid = tasks(host)["web"]
    browser.get(f"{host.url}/tasks/{tid}")
    assert browser.find_element(By.TAG_NAME, "h1").text == tid
    table = browser.find_elements(By.CSS_SELECTOR, "table")[0]
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "th")]
    shown = {}
    for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        shown[cells[headers.index("process")]] = (cells[headers.index("state")],
                                                   int(cells[headers.index("pid")]))
    status = json.loads(host.stoker("status", tid, "--json").stdout)
    expected = {p["name"]: ("RUNNING", p["runs"][-1]["pid"])
                for p in status["attempts"][-1]["processes"]}
    assert shown == expected and len(shown) == 2
    screenshot(browser, shots, "task")


def test_a_followed_log_shows_a_line_printed_after_the_page_was_opened(host, browser, shots):
    from selenium.webdriver.common.by import By

    tid = tasks(host)["web"]
    browser.get(f"{host.url}/tasks/{tid}/processes/say/logs?run=0&stream=stdout&follow=1")
    log = browser.find_element(By.ID, "log")
    wait_for(lambda: "following" in browser.find_element(By.ID, "follow-state").text, 10)
    line = "printed after the page was opened"
    (host.runs[0].sandbox / "say.txt").write_text(line + " \x1b[1mbold\r\n")
    wait_for(lambda: line in log.text, 15, interval_secs=0.1, message="the new line in the page")
    assert log.text.count(line) == 1
    # Control characters are written out as on the page's first bytes (`html.esc_text`).
    assert f"{line} \\x1b[1mbold\\r\n" in log.text + "\n"
    screenshot(browser, shots, "log")


def test_a_followed_log_replaced_by_a_longer_file_is_read_from_the_new_file_s_start(host, browser):
    """Rotation renames `stdout` to `stdout.1` and starts a new one; a tab that looks again
    only once the new file is longer than what it showed (a background tab is woken once a
    minute) must not go on in the new file where the old one stopped."""
    from selenium.webdriver.common.by import By

    tid = tasks(host)["web"]
    run_dir = host.runs[0].sandbox / ".logs/say/0"
    browser.get(f"{host.url}/tasks/{tid}/processes/say/logs?run=0&stream=stdout&follow=1")
    log = browser.find_element(By.ID, "log")
    end = int(log.get_attribute("data-end"))
    os.rename(run_dir / "stdout", run_dir / "stdout.9")  # the pump writes on into stdout.9
    try:
        (run_dir / "stdout").write_text("the new file's first line\n" + "y" * end + "\n")
        wait_for(lambda: "the new file's first line" in log.text, 10, interval_secs=0.05,
                 message="the new file from its start")
        assert "a new log file" in log.text
    finally:
        os.replace(run_dir / "stdout.9", run_dir / "stdout")


def test_a_log_ending_inside_a_character_is_asked_again_a_second_later_not_at_once(host, browser):
    """The first bytes of a character whose rest is not written yet are held back (`end` <
    `size`, and nothing new): the script waits a second, as at the end of the log, instead
    of asking again at once, in a loop, for as long as the log stays so."""
    tid = tasks(host)["web"]
    stdout = host.runs[0].sandbox / ".logs/say/0/stdout"
    (host.runs[0].sandbox / "say.txt").write_bytes("half a character: €".encode()[:-2])
    wait_for(lambda: stdout.read_bytes().endswith(b": \xe2"), 10, interval_secs=0.05)
    browser.get(f"{host.url}/tasks/{tid}/processes/say/logs?run=0&stream=stdout&follow=1")
    starts = wait_for(lambda: browser.execute_script(
        "var s = performance.getEntriesByType('resource').filter(function (e) {"
        " return e.name.indexOf('/api/') >= 0; }).map(function (e) { return e.startTime; });"
        " return s.length >= 2 ? s : null;"), 10, interval_secs=0.05, message="two fetches")
    assert starts[1] - starts[0] >= 500, f"asked again {starts[1] - starts[0]:.0f} ms later"


def test_a_followed_log_keeps_only_its_last_mebibyte_in_the_page(host, browser):
    """Following a chatty log for hours must not grow the page without end: past
    `KEEP_CHARS` the oldest text goes (as the page without JavaScript starts again from the
    latest bytes past its cap)."""
    from selenium.webdriver.common.by import By

    from executor.observe.assets import KEEP_CHARS
    from executor.observe.logrange import MAX_CHUNK_BYTES

    tid = tasks(host)["batch"]
    stdout = host.runs[1].sandbox / ".logs/chatty/0/stdout"
    payload = ("x" * 99 + "\n") * ((KEEP_CHARS + MAX_CHUNK_BYTES) // 100)
    size = stdout.stat().st_size + len(payload)
    # Written whole, then renamed: the "chatty" loop must not print a half-written file.
    (host.runs[1].sandbox / "chatty.tmp").write_text(payload)
    os.rename(host.runs[1].sandbox / "chatty.tmp", host.runs[1].sandbox / "chatty.txt")
    wait_for(lambda: stdout.stat().st_size == size, 10, interval_secs=0.05)
    # From the start: the script then reads the rest after the first range, 256 KiB a fetch.
    browser.get(f"{host.url}/tasks/{tid}/processes/chatty/logs?run=0&stream=stdout&offset=0&follow=1")
    wait_for(lambda: browser.find_element(By.ID, "log").get_attribute("data-end") == str(size),
             20, interval_secs=0.1, message="the page followed to the end of the log")
    kept = browser.execute_script("return document.getElementById('log').textContent.length;")
    assert KEEP_CHARS - MAX_CHUNK_BYTES <= kept <= KEEP_CHARS, kept
    assert "older bytes left the page" in browser.find_element(By.ID, "follow-state").text


def test_a_followed_log_goes_on_into_the_process_s_next_run(host, browser):
    """The page stayed on the run it was opened for once the process restarted; now the
    script goes on into the next run after a marker line, as `stoker tail -f` does."""
    from selenium.webdriver.common.by import By

    tid = tasks(host)["batch"]
    browser.get(f"{host.url}/tasks/{tid}/processes/worker/logs?run=0&stream=stdout&follow=1")
    log = browser.find_element(By.ID, "log")
    assert log.text == "working"
    next_run = host.runs[1].sandbox / ".logs/worker/1"  # as the supervisor makes it
    next_run.mkdir()
    (next_run / "stdout").write_text("the next run\n")
    wait_for(lambda: "the next run" in log.text, 10, interval_secs=0.05, message="run 1 in the page")
    assert log.text == "working\n==> worker run 1: stdout <==\nthe next run"
