"""`config/sourced.py` on a settings class of the test's own: each field's table row as
`config/argdecl.py` and `config/quickargs.py` read it, the precedence flag > variable >
default (an empty variable unset), a default computed from the environment, and every
problem named by the flag or the variable it came from. Pure: environments are dicts.

The class is made in each test (`_settings`), not at import: `setting` runs as the class is
made, and a class made once at import would not show a change of it (tools/mutation.py)."""
from __future__ import annotations

import attrs
import pytest

from config.errors import SettingsError
from config.sourced import Sourced, flag_conflicts, from_environment, setting


def _home(environ) -> str | None:
    return environ.get("HOME") and environ["HOME"] + "/sb"


def _settings() -> type:
    @attrs.frozen
    class Example(Sourced):
        needed: str = setting(env=("EX_NEEDED", "OLD_NEEDED"), flag="--needed", help="what is needed")
        flagged: str = setting(flag="--flagged", help="a flag only")
        bare: str = setting(help="neither")
        count: int = setting(env=("EX_COUNT",), flag="--count", parse=int, default=3, help="how many")
        where: str | None = setting(env=("EX_WHERE",), flag="--where", default_from=_home, help="a place",
                                    aliases=("--where_to",), metavar="DIR")
        tags: list[str] = setting(flag="--tag", factory=list, repr=False, help="tags", action="append")

    return Example


FULL = {"EX_NEEDED": "n"}
GIVEN = {"flagged": "f", "bare": "b"}


def test_each_field_is_its_table_row():
    fields = attrs.fields_dict(_settings())
    assert dict(fields["where"].metadata) == {
        "help": "a place", "env": ("EX_WHERE",), "flag": "--where", "parse": fields["needed"].metadata["parse"],
        "argparse": {"metavar": "DIR"}, "aliases": ("--where_to",), "default_from": _home}
    assert fields["count"].metadata["parse"] is int and fields["count"].default == 3
    assert fields["where"].default is None  # computed from the environment when read
    assert fields["needed"].default is attrs.NOTHING
    assert fields["tags"].metadata["argparse"] == {"action": "append"}


def test_a_factory_gives_each_reading_its_own_value_and_repr_false_hides_the_field():
    cls = _settings()
    one, two = cls.from_env(FULL, **GIVEN), cls.from_env(FULL, **GIVEN)
    assert one.tags == [] and one.tags is not two.tags
    assert "tags" not in repr(one) and "needed='n'" in repr(one)


def test_a_flag_wins_over_a_variable_which_wins_over_the_default():
    cls = _settings()
    assert cls.from_env(FULL, **GIVEN).count == 3
    assert cls.from_env({**FULL, "EX_COUNT": "7"}, **GIVEN).count == 7
    assert cls.from_env({**FULL, "EX_COUNT": "7"}, count="9", **GIVEN).count == 9
    assert cls.from_env({**FULL, "EX_COUNT": ""}, **GIVEN).count == 3  # empty: unset
    assert cls.from_env({"EX_NEEDED": "", "OLD_NEEDED": "old"}, **GIVEN).needed == "old"  # the next variable


def test_a_default_from_the_environment_is_computed_only_when_nothing_gives_the_field():
    cls = _settings()
    assert cls.from_env({**FULL, "HOME": "/h"}, **GIVEN).where == "/h/sb"
    assert cls.from_env({**FULL}, **GIVEN).where is None
    assert cls.from_env({**FULL, "HOME": "/h", "EX_WHERE": "/w"}, **GIVEN).where == "/w"


def test_every_missing_field_is_named_by_its_variables_else_its_flag_else_its_name():
    with pytest.raises(SettingsError) as caught:
        _settings().from_env({})
    assert list(caught.value.problems) == ["EX_NEEDED or OLD_NEEDED is not set (what is needed)",
                                     "--flagged is not set (a flag only)", "bare is not set (neither)"]


def test_a_value_that_does_not_parse_is_named_by_where_it_came_from():
    cls = _settings()
    with pytest.raises(SettingsError) as caught:
        cls.from_env({**FULL, "EX_COUNT": "x"}, needed=5, bare="b", flagged="f")
    assert list(caught.value.problems) == ["--needed=5 is not text",
                                     "EX_COUNT=invalid literal for int() with base 10: 'x'"]


def test_the_variable_a_setting_came_from_is_named():
    cls = _settings()
    assert from_environment(cls, "needed", {"OLD_NEEDED": "o"}) == ("OLD_NEEDED", "o")
    assert from_environment(cls, "needed", {"EX_NEEDED": "e", "OLD_NEEDED": "o"}) == ("EX_NEEDED", "e")
    assert from_environment(cls, "needed", {"EX_NEEDED": ""}) == ("", None)
    assert from_environment(cls, "no_such", {"EX_NEEDED": "e"}) == ("", None)


def test_a_flag_that_overrode_a_variable_set_otherwise_is_one_sentence():
    cls = _settings()
    args = type("Args", (), {"needed": "a", "count": 3, "where": None})()
    assert flag_conflicts(cls, args, {"EX_NEEDED": "b", "EX_COUNT": "3", "EX_WHERE": "/w"}) == [
        "--needed a wins over EX_NEEDED=b"]
