"""`proctree.marker_matcher` (what `scan_markers` asks of each environ, the supervisor's
leftover sweep on its restart path and the observer's LOST tasks alike) says exactly what
`has_marker`, the rule everything else judges by, says: on environs built of the markers'
own variables (first entry, duplicated, another value, a value holding `=`, the last entry
without its NUL, inside another entry's value) and on arbitrary bytes."""
from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from executor.procs.proctree import has_marker, marker_matcher

_NAMES = [b"STOKER_TASK_MARKER", b"STOKER_RUN_MARKER", b"PATH", b"A"]
_VALUES = st.binary(max_size=6).map(lambda v: v.replace(b"\0", b"")) | st.sampled_from([b"ab", b"ab=cd", b"=", b""])
_ENTRIES = st.builds(lambda n, v: n + b"=" + v, st.sampled_from(_NAMES), _VALUES)
_MARKERS = st.lists(_ENTRIES | st.binary(max_size=8), max_size=5)


@st.composite
def _environs(draw: st.DrawFn) -> bytes:
    """Entries joined by NULs, with or without the last NUL, sometimes with stray bytes."""
    entries = draw(st.lists(_ENTRIES | st.binary(max_size=8), max_size=8))
    environ = b"\0".join(entries) + draw(st.sampled_from([b"\0", b""]))
    return draw(st.sampled_from([environ, b"\0" + environ, environ + draw(st.binary(max_size=4))]))


@given(_environs(), _MARKERS)
@example(b"STOKER_TASK_MARKER=ab\0", [b"STOKER_TASK_MARKER=ab"])  # the only, first entry
@example(b"STOKER_TASK_MARKER=ab", [b"STOKER_TASK_MARKER=ab"])  # no NUL: cut short, no entry
@example(b"A=STOKER_TASK_MARKER=ab\0", [b"STOKER_TASK_MARKER=ab"])  # inside another value
@example(b"STOKER_TASK_MARKER=abc\0STOKER_TASK_MARKER=ab\0", [b"STOKER_TASK_MARKER=ab"])  # duplicated
@example(b"STOKER_TASK_MARKER=ab=cd\0", [b"STOKER_TASK_MARKER=ab=cd", b"STOKER_TASK_MARKER=ab"])
@example(b"X\0Y\0", [b"Y"])  # a marker with no `=` (none is written so, but the rule allows it)
@example(b"A=1\0B=2\0", [b"A=1\0B=2"])  # one holding a NUL: two entries for has_marker
@example(b"\0\0", [b""])
def test_marker_matcher_says_what_has_marker_says(environ: bytes, markers: list[bytes]) -> None:
    assert marker_matcher(markers)(environ) == has_marker(environ, markers)


def test_a_huge_environ_without_nul_matches_nothing_and_one_marker_at_its_end_is_found() -> None:
    marker = b"STOKER_TASK_MARKER=ab"
    huge = b"STOKER_TASK_MARKER=" * 50_000
    carries = marker_matcher([marker])
    assert not carries(huge) and not has_marker(huge, [marker])
    assert carries(b"A=" + huge + b"\0" + marker + b"\0")
