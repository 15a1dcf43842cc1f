"""`watchdogsh.shipped`, the watchdog's script as the shell gets it: each line without its
indentation and its comment (from the first ` #` on), no line left empty, one newline at the
end. Called here on a text of its own: the module's script is shipped as it loads."""
from __future__ import annotations

import pytest

from executor.procs.watchdogsh import shipped

pytestmark = pytest.mark.timeout(10)


def test_indentation_comments_and_empty_lines_are_left_out():
    written = "  x=1  # set x\n\n    # a line of comment alone\n\tcase $x in 1) echo one;; esac # says # one\nexit 0\n"
    assert shipped(written) == "x=1\ncase $x in 1) echo one;; esac\nexit 0\n"


def test_a_hash_inside_a_word_is_no_comment_and_one_line_ends_with_its_newline():
    assert shipped('echo "${#list}" a#b') == 'echo "${#list}" a#b\n'
