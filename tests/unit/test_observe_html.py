"""`executor/observe/html.py`, each part whole: what a sandbox, the registry or a log holds is
escaped for the place it goes (an attribute's quotes too; a log's newlines and tabs kept),
each URL segment percent-encoded so that a name cannot leave it, and the frame, tables,
facts and error page as the browser gets them."""
from __future__ import annotations

import pytest

from executor.observe.html import (
    cell,
    error_page,
    esc,
    esc_text,
    facts,
    log_url,
    page,
    state,
    table,
    task_url,
)


@pytest.mark.parametrize(("value", "escaped"), [
    ('<a href="x">it\'s & more</a>', "&lt;a href=&quot;x&quot;&gt;it&#x27;s &amp; more&lt;/a&gt;"),
    ("red\x1b[31m bell\x07", "red\\x1b[31m bell\\x07"),
    ("tab\there\nline", "tab\\there\\nline"),  # in an attribute or a cell: one line
    (42, "42"),
])
def test_a_value_is_escaped_for_an_attribute_and_written_on_one_line(value, escaped):
    assert esc(value) == escaped


def test_a_log_keeps_its_lines_and_tabs_and_its_quotes_need_no_escape_in_a_pre():
    text = 'a\t"b" <c>\nd\x1b[2Je\tf\r\n'
    assert esc_text(text) == 'a\t"b" &lt;c&gt;\nd\\x1b[2Je\tf\\r\n'


@pytest.mark.parametrize(("task_id", "api", "supervisor", "url"), [
    ("web-1", False, "", "/tasks/web-1"),
    ("a/../b ?#%", False, "", "/tasks/a%2F..%2Fb%20%3F%23%25"),
    ("web-1", True, "", "/api/tasks/web-1"),
    ("web-1", False, "4242-99", "/tasks/web-1?supervisor=4242-99"),
    ("web-1", True, "a&b=c", "/api/tasks/web-1?supervisor=a%26b%3Dc"),
])
def test_a_task_s_url_keeps_its_id_in_one_segment(task_id, api, supervisor, url):
    assert task_url(task_id, api=api, supervisor=supervisor) == url


def test_a_log_s_url_keeps_the_process_in_one_segment_and_leaves_out_what_is_none():
    assert log_url("t", "web") == "/tasks/t/processes/web/logs"
    assert log_url("t", "we/b?", api=True) == "/api/tasks/t/processes/we%2Fb%3F/logs"
    assert log_url("t", "web", run=3, stream="stderr", offset=None) == "/tasks/t/processes/web/logs?run=3&stream=stderr"
    assert log_url("t", "web", supervisor="4242-99", run=0) == "/tasks/t/processes/web/logs?run=0&supervisor=4242-99"


@pytest.mark.parametrize(("name", "css"), [
    ("RUNNING", "s-RUNNING"), ("SANDBOX GONE", "s-SANDBOX_GONE"), ('x"><b>', "s-other"), ("", "s-other")])
def test_a_state_is_coloured_by_a_class_only_its_letters_make(name, css):
    assert state(name) == f'<span class="state {css}">{esc(name)}</span>'


def test_a_cell_has_a_class_only_when_given_one():
    assert cell("<b>x</b>") == "<td><b>x</b></td>"
    assert cell("7", "num") == '<td class="num">7</td>'


def test_a_table_whole():
    found = table('the "runs"', ["run", "state", "reason"], [["0", "<b>ok</b>", "why"], ["1", "-", "long"]],
                  numeric=[0], wrap=[2])
    assert found == (
        '<div class="scroll" tabindex="0" role="region" aria-label="the &quot;runs&quot;">'
        '<table><caption class="vh">the &quot;runs&quot;</caption><thead><tr>'
        '<th scope="col" class="num">run</th><th scope="col">state</th><th scope="col">reason</th>'
        "</tr></thead><tbody>"
        '<tr><td class="num">0</td><td><b>ok</b></td><td class="wrap">why</td></tr>'
        '<tr><td class="num">1</td><td>-</td><td class="wrap">long</td></tr>'
        "</tbody></table></div>")


def test_facts_escape_their_names_not_their_values():
    assert facts([("a<b", "<i>1</i>"), ("c", "2")]) == (
        '<dl class="facts"><dt>a&lt;b</dt><dd><i>1</i></dd><dt>c</dt><dd>2</dd></dl>')


def test_a_page_whole():
    assert page('t<"', "<p>body</p>", where="<b>w</b>", head_extra="<meta x>", scripts=["a.js", 'b"'] ) == (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>t&lt;&quot; · stoker observe</title>"
        '<link rel="stylesheet" href="/static/observe.css"><meta x>'
        '<script src="/static/a.js" defer></script><script src="/static/b&quot;" defer></script>'
        "</head><body>"
        '<header><a class="skip" href="#main">Skip to the page\'s content</a>'
        '<a class="home" href="/">stoker observe</a><span class="where"><b>w</b></span></header>'
        '<main id="main"><p>body</p></main></body></html>\n')


def test_an_error_page_names_its_status_and_reason_escaped():
    found = error_page(404, "no task <x>")
    assert found == page("404", '<h1>404</h1><p>no task &lt;x&gt;</p><p><a href="/">All tasks</a></p>')
    assert "<title>404 · stoker observe</title>" in found
    assert '<link rel="stylesheet" href="/static/observe.css"></head>' in found  # nothing more in its head
    assert '<span class="where"></span>' in found
