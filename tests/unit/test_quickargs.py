"""`config/quickargs.py`: a supervisor's plain words read without argparse give argparse's
namespace exactly, and anything else is left to argparse (None)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.executorsettings import ExecutorSettings
from config.quickargs import parse
from config.registry import RegistrySettings
from config.settings import RunSettings
from executor.cli.main import _parser

RUN = (RunSettings, RegistrySettings)
EXECUTOR = (ExecutorSettings, RegistrySettings)

PLAIN = [  # read without argparse, to the namespace argparse makes of them
    (RUN, ["run", "job.aurora"]),
    (RUN, ["run", "job.aurora", "--sandbox", "/tmp/sb"]),
    (RUN, ["run", "--sandbox", "/tmp/sb", "job.aurora"]),
    (RUN, ["run", "--sandbox=/tmp/sb", "job.aurora", "c/r/e/n"]),
    (RUN, ["run", "job.aurora", "c/r/e/n", "--port", "http=8080", "--port=admin=9090", "--bind", "a=b"]),
    (RUN, ["run", "--log-format", "json", "--log-level", "debug", "job.aurora", "--kill-grace", "5"]),
    (RUN, ["run", "job.aurora", "--instance", "3", "--cgroups", "off", "--root", "/tmp/reg",
           "--registry-retention", "1hrs", "--keep-attempts", "2", "--restart-backoff", "1secs",
           "--restart-backoff-max", "9secs", "--announce", "127.0.0.1:2181"]),
    (RUN, ["run", "", "--sandbox", ""]),  # empty words are values too (rejected later, by the settings)
    (RUN, ["run", "job.aurora", "--sandbox", "a", "--sandbox", "b"]),  # the last one wins
    (RUN, ["run", "job.aurora", "--sandbox="]),  # an empty value after `=`
    (RUN, ["run", "--sandbox", "sb", "job.aurora", "c/r/e/n"]),  # positionals after the options
    (RUN, ["run", "job aurora with spaces", "--sandbox", "dir=with=equals"]),
    (RUN, ["run", "job.aurora", "--runner-logger-mode", "rotate", "--runner_rotate_log_size_mb=2",
           "--runner-rotate-log-backups", "3", "--runner-logger-destination", "both"]),
    (EXECUTOR, ["executor"]),
    (EXECUTOR, ["executor", "--pass-agent-env", "--preserve_env", "--nosetuid", "--hostname", "h",
                "--log-format=text", "--announcer-allow-custom-serverset-path", "--cgroups", "auto"]),
    (EXECUTOR, ["executor", "--runner-logger-mode", "rotate", "--runner_rotate_log_size_mb=1",  # Thermos' flags
                "--runner-logger-destination=both", "--stop_timeout_in_secs", "30", "--execute-as-user", "bob",
                "--nosetuid-health-checks", "--no-create-user", "--mesos-containerizer-path=/x",
                "--sandbox-mount-point", "/mnt", "--launch-timeout", "0"]),
]

NOT_PLAIN = [  # left to argparse: its help, its error, or its own reading of them
    (RUN, ["run"]),  # no CONFIG
    (RUN, ["run", "--help"]),
    (RUN, ["run", "job.aurora", "-h"]),
    (RUN, ["run", "job.aurora", "--sand", "/tmp/sb"]),  # an abbreviation
    (RUN, ["run", "job.aurora", "--sandbox"]),  # no value
    (RUN, ["run", "job.aurora", "--sandbox", "-x"]),  # a value that looks like a flag
    (RUN, ["run", "job.aurora", "--log-format", "xml"]),  # not a choice
    (RUN, ["run", "job.aurora", "c/r/e/n", "extra"]),  # one positional too many
    (RUN, ["run", "job.aurora", "--sandbox", "sb", "c/r/e/n"]),  # two runs of positionals
    (RUN, ["run", "--", "job.aurora"]),
    (RUN, ["run", "-", "--sandbox", "sb"]),
    (RUN, ["run", "job.aurora", "--version"]),
    (RUN, ["run", "job.aurora", "--log-format="]),  # an empty choice
    (RUN, ["run", "-1"]),  # a word argparse may read as a negative number
    (EXECUTOR, ["executor", "--pass-agent-env=yes"]),  # a switch takes no value
    (EXECUTOR, ["executor", "stray"]),
    (EXECUTOR, ["executor", "--runner-logger-mode", "fancy"]),  # not a choice
]


@pytest.mark.parametrize("classes,words", PLAIN)
def test_plain_words_give_argparse_s_namespace(classes, words):
    quick = parse(words, classes)
    assert quick is not None, words
    assert vars(quick) == vars(_parser(words[0]).parse_args(words))


@pytest.mark.parametrize("classes,words", NOT_PLAIN)
def test_other_words_are_left_to_argparse(classes, words):
    assert parse(words, classes) is None


def test_two_runs_of_positionals_are_argparse_s_error(capsys):
    """The case the quick reading refuses although each word is known: argparse fills both
    positionals from the first run of them, and the second run is an error."""
    with pytest.raises(SystemExit):
        _parser("run").parse_args(["run", "job.aurora", "--sandbox", "sb", "c/r/e/n"])
    assert "unrecognized arguments: c/r/e/n" in capsys.readouterr().err


def test_a_flag_of_a_form_it_does_not_read_leaves_the_command_to_argparse():
    import attrs

    from config.sourced import setting

    @attrs.frozen
    class Counted:
        verbose: int = setting(flag="--verbose", default=0, action="count", help="more")

    assert parse(["x", "--verbose"], (Counted,)) is None


def _one(**argparse_kw):
    """A settings class of one field, flagged `--opt` unless `flag` says otherwise."""
    import attrs

    from config.sourced import setting

    flag = argparse_kw.pop("flag", "--opt")

    @attrs.frozen
    class One:
        opt: str | None = setting(flag=flag, default=None, help="h", **argparse_kw)

    return One


@pytest.mark.parametrize("form", [
    {"nargs": "+"},  # an option of many words
    {"flag": "-o"},  # a flag of one dash
    {"positional": True, "choices": ("a", "b")},  # a positional with choices
    {"positional": True, "action": "append"},  # a positional of another action
    {"metavar": "X", "dest": "other"},  # a keyword not read here, beside plain ones
], ids=["nargs", "one-dash", "positional-choices", "positional-append", "other-keyword"])
def test_each_form_of_flag_it_does_not_read_leaves_the_command_to_argparse(form):
    assert parse(["x", "--opt", "v"], (_one(**form),)) is None
    assert parse(["x", "v"], (_one(**form),)) is None


def test_its_own_forms_of_flag_are_read():
    assert parse(["x", "--opt", "b"], (_one(choices=("a", "b"), metavar="X"),)).opt == "b"
    assert parse(["x", "v"], (_one(positional=True),)).__dict__ == {"command": "x", "--opt": "v"}


def test_positionals_are_filled_required_first_and_optional_ones_after_them():
    import attrs

    from config.sourced import setting

    @attrs.frozen
    class Two:
        first: str | None = setting(flag="FIRST", default=None, help="h", positional=True)
        second: str | None = setting(flag="SECOND", default=None, help="h", positional=True, nargs="?")

    @attrs.frozen
    class Misordered:  # an optional positional before a required one: argparse's own reading
        first: str | None = setting(flag="FIRST", default=None, help="h", positional=True, nargs="?")
        second: str | None = setting(flag="SECOND", default=None, help="h", positional=True)

    assert vars(parse(["x", "a"], (Two,))) == {"command": "x", "FIRST": "a", "SECOND": None}
    assert vars(parse(["x", "a", "b"], (Two,))) == {"command": "x", "FIRST": "a", "SECOND": "b"}
    assert parse(["x"], (Two,)) is None  # the required one missing
    assert parse(["x", "a", "b"], (Misordered,)) is None


_WORDS = ["job.aurora", "c/r/e/n", "", "x=1", "-x", "-1", "-", "--", "-h", "--help", "--sand",
          "--sandbox", "--sandbox=sb", "--sandbox=", "--port", "http=8080", "--port=a=1", "--bind",
          "--log-format", "json", "xml", "--log-format=text", "--cgroups", "off", "--instance", "3",
          "--pass-agent-env", "--pass-agent-env=yes", "--preserve_env", "--nosetuid", "--hostname"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([("run", RUN), ("executor", EXECUTOR)]),
       st.lists(st.sampled_from(_WORDS), max_size=7))
def test_any_words_are_argparse_s_reading_or_left_to_it(command, words):
    """For any words from the flags' own vocabulary and the awkward ones around it: the quick
    reading is argparse's namespace exactly, or None (and argparse then answers)."""
    name, classes = command
    quick = parse([name, *words], classes)
    if quick is not None:
        assert vars(quick) == vars(_parser(name).parse_args([name, *words])), words


def test_a_name_that_starts_with_a_dash_is_said_how_to_give(capsys):
    """`stoker status -dash` (a sandbox named `-dash`) printed the top-level usage and
    "unrecognized arguments: -dash": not the command's usage, nor that `--` gives it."""
    with pytest.raises(SystemExit):
        _parser(None).parse_args(["status", "-dash"])
    err = capsys.readouterr().err
    assert err.startswith("usage: stoker status ")
    assert err.endswith("stoker status: error: unrecognized arguments: -dash (a name that starts with '-' is "
                        "read as an option: put -- before it, stoker status -- -dash, or write it as a "
                        "path, ./-dash)\n")
    with pytest.raises(SystemExit):  # a command that takes no name: argparse's words
        _parser(None).parse_args(["ps", "-l"])
    assert capsys.readouterr().err.endswith("stoker: error: unrecognized arguments: -l\n")
    assert _parser(None).parse_args(["status", "--", "-dash"]).target == "-dash"


@pytest.mark.parametrize(("words", "usage", "suggested"), [
    (["tail", "-dash"], "stoker tail: error: the following arguments are required: SANDBOX|TASK_ID, PROCESS",
     "stoker tail -- -dash, or write it as a path, ./-dash)"),
    (["kill", "-x"], "stoker kill: error: the following arguments are required: SANDBOX|TASK_ID",
     "stoker kill -- -x, or write it as a path, ./-x)"),
    (["run", "-config.aurora"], "stoker run: error: the following arguments are required: CONFIG",
     "stoker run -- -config.aurora, or write it as a path, ./-config.aurora)"),
    (["kill", "--grace", "2", "-x"], "stoker kill: error: the following arguments are required: SANDBOX|TASK_ID",
     "stoker kill --grace 2 -- -x, or write it as a path, ./-x)"),
    (["run", "job.aurora", "-x"], "stoker run: error: unrecognized arguments: -x",
     "stoker run job.aurora -- -x, or write it as a path, ./-x)"),
])
def test_a_name_that_starts_with_a_dash_where_one_is_required_is_said_how_to_give(capsys, tmp_path, monkeypatch,
                                                                                  words, usage, suggested):
    """`stoker tail -dash`, `stoker kill -x`, `stoker run -config.aurora`: the name read as
    an option leaves a required one missing, and argparse said only that (no `--`); and the
    command suggested keeps the words given around the name (`stoker run job.aurora -x`
    was told `stoker run -- -x`, which runs a config `-x`). A one-letter name is one where
    that path is there (`-x`, a sandbox)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-x").mkdir()
    with pytest.raises(SystemExit):
        _parser(None).parse_args(words)
    err = capsys.readouterr().err
    assert err.startswith(f"usage: stoker {words[0]} ")
    assert err.endswith(f"{usage} (a name that starts with '-' is read as an option: put -- before it, {suggested}\n")


def test_a_mistyped_one_letter_option_is_argparse_s_words_alone(capsys, tmp_path, monkeypatch):
    """`stoker status -j` (no `-j` here: a `--json` mistyped) was told to put `--` before
    it as a name that starts with '-'; a one-letter word is a name only where that path is."""
    monkeypatch.chdir(tmp_path)
    for words, said in ((["status", "-j"], "stoker status: error: unrecognized arguments: -j\n"),
                        (["kill", "-j"], "stoker kill: error: the following arguments are required: SANDBOX|TASK_ID\n")):
        with pytest.raises(SystemExit):
            _parser(None).parse_args(words)
        assert capsys.readouterr().err.endswith(said)
    (tmp_path / "-j").mkdir()
    with pytest.raises(SystemExit):
        _parser(None).parse_args(["status", "-j"])
    assert "put -- before it, stoker status -- -j" in capsys.readouterr().err


def test_a_missing_name_beside_a_known_option_is_argparse_s_words(capsys):
    """`stoker tail -n 5`: no name starts with '-' there (`-n` is tail's, `-n5` too): argparse's words alone."""
    for words in (["tail", "-n", "5"], ["tail", "-n5"]):
        with pytest.raises(SystemExit):
            _parser(None).parse_args(words)
        assert capsys.readouterr().err.endswith(
            "stoker tail: error: the following arguments are required: SANDBOX|TASK_ID, PROCESS\n")
