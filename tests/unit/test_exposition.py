"""Prometheus' text format: the tests' strict parser (tests/support/exposition.py) refuses
each kind of malformed text, so the observer's tests can fail on it; the observer's writer
(`executor/observe/exposition.py`) writes any label value so that it reads back as itself."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.observe.exposition import CONTENT_TYPE, COUNTER, GAUGE, LABEL_NAME, NAME, Family, render, value
from executor.observe.metrics import FAMILIES
from tests.support.exposition import ExpositionError, parse

GOOD = """\
# HELP a_total Things done, with a \\\\ and a \\n in its help.
# TYPE a_total counter
a_total{x="1",y="q\\"uote \\\\ back\\nline"} 3
a_total{x="2",} 0
# a comment
# TYPE b gauge
b -1.5e-3
b{z="+"} +Inf
b{z="-"} -Inf
b{z="n"} NaN 1700000000000
# TYPE h histogram
h_bucket{le="+Inf"} 2
h_sum 1.5
h_count 2
"""


def test_a_well_formed_text_parses_with_its_values_labels_and_types():
    parsed = parse(GOOD)
    assert parsed.families["a_total"].kind == "counter"
    assert parsed.families["a_total"].help == "Things done, with a \\ and a \n in its help."
    assert parsed.value("a_total", x="1") == 3
    assert parsed.samples("a_total", x="1")[0].labels["y"] == 'q"uote \\ back\nline'
    assert parsed.value("b", z="+") == math.inf and math.isnan(parsed.value("b", z="n"))
    assert [s.value for s in parsed.samples("b") if not s.labels] == [-0.0015]
    assert parsed.value("h_count") == 2 and len(parsed.families["h"].samples) == 3


BAD = {
    "no final line feed": "a 1",
    "bad metric name": "1a 1\n",
    "bad label name": 'a{1x="v"} 1\n',
    "reserved label name": 'a{__name__="v"} 1\n',
    "label twice": 'a{x="1",x="2"} 1\n',
    "unquoted label value": "a{x=1} 1\n",
    "unclosed label value": 'a{x="1} 1\n',
    "unknown escape": 'a{x="\\t"} 1\n',
    "escape at the end": 'a{x="\\"} 1\n',
    "no closing brace": 'a{x="1" 1\n',
    "no value": "a\n",
    "not a float": "a one\n",
    "lowercase inf": "a inf\n",
    "hex value": "a 0x10\n",
    "float timestamp": "a 1 1.5\n",
    "three fields": "a 1 2 3\n",
    "duplicate series": 'a{x="1",y="2"} 1\na{y="2",x="1"} 2\n',
    "family interleaved": "a 1\nb 1\na{x=\"1\"} 1\n",
    "help twice": "# HELP a x\n# HELP a y\na 1\n",
    "type twice": "# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "type after samples": "a 1\n# TYPE a gauge\n",
    "unknown type": "# TYPE a meter\na 1\n",
    "help of another family in the middle": "# TYPE a gauge\na 1\n# HELP b x\na{x=\"1\"} 1\n",
    "negative counter": "# TYPE a_total counter\na_total -1\n",
    "bad help escape": "# HELP a one \\t two\na 1\n",
    "not UTF-8": b"a{x=\"\xff\"} 1\n",
    "name glued to value": 'a{x="1"}1\n',
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_the_parser_refuses_each_malformed_text(text):
    with pytest.raises(ExpositionError):
        parse(text)


def test_the_observers_names_and_types_are_the_formats():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    for name, (kind, text) in FAMILIES.items():
        assert NAME.match(name) and name.startswith("stoker_"), name
        assert (kind == COUNTER) == name.endswith("_total"), name  # counters, and only they
        assert text and "\n" not in text
    assert LABEL_NAME.match("task_id") and not LABEL_NAME.match("1x")


ODD = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ['"', "\\", "\n", '\\"', "\\n", "a\nb\"c\\d", "}", ",x=\"y\"", " 1", "é作\u2028\r"])


@settings(deadline=None)  # a time limit per example is a timing test: it failed under load (mutmut's stats)
@given(st.lists(ODD, min_size=1, max_size=5, unique=True))
def test_any_label_value_is_written_so_that_it_reads_back_as_itself(values):
    family = Family("odd_total", COUNTER, "odd\nhelp \\ text", [((("task_id", v), ("n", "1")), i)
                                                              for i, v in enumerate(values)])
    parsed = parse(render([family, Family("after", GAUGE, "x", [((), 1.5)])]))
    assert [(s.labels["task_id"], s.value) for s in parsed.samples("odd_total")] == \
        [(v, i) for i, v in enumerate(values)]
    assert parsed.families["odd_total"].help == "odd\nhelp \\ text" and parsed.value("after") == 1.5


def test_a_lone_surrogate_is_written_as_u_fffd_and_the_series_it_would_repeat_is_left_out():
    text = render([Family("a", GAUGE, "h", [((("p", "x\udcff"),), 1), ((("p", "x\ufffd"),), 2)])])
    assert text.encode() and parse(text).value("a", p="x\ufffd") == 1


@pytest.mark.parametrize("number, written", [(3, "3"), (True, "1"), (False, "0"), (0.25, "0.25"), (1e-7, "1e-07"),
                                             (-0.5, "-0.5"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
                                             (math.nan, "NaN")])
def test_values_are_written_as_go_reads_them(number, written):
    assert value(number) == written


def test_a_family_without_samples_is_left_out_whole_and_an_answer_of_none_is_empty():
    """No HELP and TYPE lines for a family with no series (a metric no task has), and no
    line feed alone for an answer with no series at all."""
    empty = Family("none_yet", GAUGE, "h", [])
    assert render([empty]) == render([]) == ""
    assert render([empty, Family("b", GAUGE, "h", [((), 2)])]) == "# HELP b h\n# TYPE b gauge\nb 2\n"
