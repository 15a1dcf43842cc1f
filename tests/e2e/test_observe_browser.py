"""`stoker observe` in a real headless browser: Debian's chromium driven by Selenium
through chromedriver, against real `stoker run` tasks. The list shows both tasks, a task's
page lists its processes with the pids `stoker status` gives, and a followed log shows a
line its process printed after the page was opened; following also copes with a log that
ends inside a character, a rotated log, a chatty one (the page keeps its last 1 MiB) and a
process that restarts (it goes on into the next run), and it stops asking once the task is
over. Each kind of page serves a screen reader, a keyboard and a phone: language, title,
heading order, table captions and column scopes, a skip link and a drawn focus, no sideways
scroll at 360 and 640 px (200 % zoom), contrast of 4.5:1 in both colour schemes. One
browser for the module; each page
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


# ---- for people who use a screen reader, only a keyboard, a phone, or high zoom ----

def pages(host: ObservedHost) -> dict[str, str]:
    """The three kinds of page: the list, a task's page, a process's log (followed)."""
    tid = tasks(host)["batch"]
    return {"list": "/", "task": f"/tasks/{tid}",
            "log": f"/tasks/{tid}/processes/worker/logs?run=0&stream=stdout&follow=1"}


def test_each_page_names_its_language_its_task_and_its_headings_in_order(host, browser):
    from selenium.webdriver.common.by import By

    tid = tasks(host)["batch"]
    for kind, path in pages(host).items():
        browser.get(host.url + path)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert "width=device-width" in browser.find_element(
            By.CSS_SELECTOR, "meta[name=viewport]").get_attribute("content")
        if kind != "list":
            assert tid in browser.title, (kind, browser.title)
        levels = [int(h.tag_name[1]) for h in browser.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4")]
        assert levels[0] == 1 and levels.count(1) == 1, (kind, levels)
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), (kind, levels)


def test_data_tables_have_a_caption_column_headers_and_scroll_by_keyboard(host, browser):
    from selenium.webdriver.common.by import By

    for path in list(pages(host).values())[:2]:
        browser.get(host.url + path)
        tables = browser.find_elements(By.TAG_NAME, "table")
        assert tables
        for t in tables:
            assert t.find_element(By.TAG_NAME, "caption").get_attribute("textContent").strip()
            assert {th.get_attribute("scope") for th in t.find_elements(By.TAG_NAME, "th")} == {"col"}
        for box in browser.find_elements(By.CSS_SELECTOR, "div.scroll"):
            assert box.get_attribute("tabindex") == "0" and box.get_attribute("aria-label")


def test_the_first_tab_reaches_a_skip_link_that_shows_and_leads_to_the_content(host, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(host.url + pages(host)["task"])
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    link = browser.switch_to.active_element
    assert link.get_attribute("href").endswith("#main") and link.is_displayed()
    assert 0 <= link.rect["x"] < browser.execute_script("return innerWidth;")
    link.send_keys(Keys.TAB)  # the next one, the link home: its focus is drawn
    assert browser.execute_script(
        "var s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.className, s.outlineStyle, parseFloat(s.outlineWidth)];"
    ) == ["home", "solid", 2]
    assert browser.find_element(By.ID, "main").tag_name == "main"


@pytest.mark.parametrize("width", [360, 640])  # a phone; 200 % zoom of a 1280-px window
def test_a_narrow_page_does_not_scroll_sideways_and_wide_tables_scroll_in_their_box(
        host, browser, shots, width):
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 800)
    try:
        for kind, path in pages(host).items():
            browser.get(host.url + path)
            assert browser.execute_script("return innerWidth;") <= width
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= innerWidth;"), kind
        browser.get(host.url + pages(host)["task"])
        box = browser.find_element(By.CSS_SELECTOR, "div.scroll")  # the processes' table
        assert box.get_property("scrollWidth") > box.get_property("clientWidth")
        screenshot(browser, shots, f"task-{width}px")
    finally:
        browser.set_window_size(1280, 1000)


CONTRAST_PAIRS = """
function rgb(s) { return (s.match(/[\\d.]+/g) || []).map(Number); }
function back(el) {
  for (; el; el = el.parentElement) {
    var c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] > 0) { return c.slice(0, 3); }
  }
  return [255, 255, 255];
}
return Array.prototype.map.call(document.querySelectorAll("a, .state, .muted, th"), function (el) {
  return [el.textContent.slice(0, 40), rgb(getComputedStyle(el).color).slice(0, 3), back(el)];
});
"""


def contrast(fg: list[float], bg: list[float]) -> float:
    def lum(c: list[float]) -> float:
        v = [x / 255 for x in c]
        v = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in v]
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_states_links_and_muted_text_contrast_at_least_4_5_to_1(host, browser, scheme):
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    try:
        for path in pages(host).values():
            browser.get(host.url + path)
            pairs = browser.execute_script(CONTRAST_PAIRS)
            assert any("RUNNING" in text for text, _, _ in pairs) or path.endswith("follow=1")
            low = [(text, fg, bg, round(contrast(fg, bg), 2)) for text, fg, bg in pairs
                   if contrast(fg, bg) < 4.5]
            assert not low, (scheme, path, low)
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})



def test_a_followed_log_stops_asking_once_its_task_is_over(tmp_path, browser):
    """The script asked the API every second for as long as the tab stayed open, long after
    the task had ended. Once an answer says the task is over and the page holds its latest
    run's log to the end, it says so and asks no more. (A host of its own: it stops its task,
    which the module's other tests read, in whatever order they run.)"""
    own = ObservedHost(tmp_path)
    try:
        own.run(config(tmp_path, "web", {"sleeper": "exec sleep 1000"}))
        own.observe()
        _stops_asking_once_its_task_is_over(own, browser)
    finally:
        own.close()


def _stops_asking_once_its_task_is_over(host: ObservedHost, browser) -> None:
    import signal
    import time

    from selenium.webdriver.common.by import By

    tid, run = tasks(host)["web"], host.runs[0]
    browser.get(f"{host.url}/tasks/{tid}/processes/sleeper/logs?follow=1")
    assert browser.find_element(By.ID, "log").get_attribute("data-follow") == "1"  # the script runs
    run.signal(signal.SIGTERM)
    assert run.wait() == 143
    wait_for(lambda: browser.find_element(By.ID, "follow-state").text ==
             "not following: the task is over, so nothing more is written to this log", 10,
             interval_secs=0.1, message="the script to say it stopped")
    fetches = "return performance.getEntriesByType('resource').filter(e => e.initiatorType === 'fetch').length;"
    asked = browser.execute_script(fetches)
    assert asked >= 1
    time.sleep(1.1)  # it asks every second while it follows
    assert browser.execute_script(fetches) == asked
