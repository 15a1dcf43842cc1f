"""A config file's text as editors save it: a byte order mark, CRLF line ends, and bytes
that are not UTF-8 (an error naming the line and column)."""
from __future__ import annotations

import json

import pytest

from config.loader import job_key, load_job, load_jobs, select_job
from config.plan import open_problem
from tests.support.configs import error_of, job, job_text, plain, process, write_config


def test_a_byte_order_mark_and_crlf_line_ends_are_read_as_windows_editors_write_them(tmp_path):
    """A file saved with a BOM (Notepad's "UTF-8 with BOM") was `job.aurora:1: syntax error:
    invalid non-printable character U+FEFF`; Python and Aurora's client read it. Its
    `sources` text keeps the BOM (a re-run compares the file byte for byte) and the plan
    may still be kept: the purity check parses it too."""
    bom = "\ufeff"
    (tmp_path / "more.aurora").write_bytes((bom + "cmd = 'echo caf\u00e9'\r\n").encode())
    path = tmp_path / "job.aurora"
    path.write_bytes((bom + "include('more.aurora')\r\n" + job_text("[Process(name='web', cmdline=cmd)]")
                      .replace("\n", "\r\n")).encode())
    sources: dict[str, str] = {}
    assert plain(load_jobs(path, sources)[0])["task"]["processes"][0]["cmdline"] == "echo caf\u00e9"
    assert sources[str(path)].startswith(bom) and open_problem(sources) is None
    single = tmp_path / "single.json"
    single.write_bytes((bom + json.dumps(plain(job(process("web"))))).encode())
    sources = {}
    assert job_key(load_jobs(single, sources)[0]) == "c/r/e/web" and open_problem(sources) is None


def test_a_latin1_config_is_named_by_line_and_column(tmp_path):
    """It said `'utf-8' codec can't decode byte 0xe9 in position 15: invalid continuation
    byte`: Python's offset into the whole file, which no editor shows."""
    path = tmp_path / "job.aurora"
    path.write_bytes("a = 'é'\n".encode() + b"b = 'caf\xe9'\n")
    assert error_of(path) == (f"'{path}': cannot read the config file: line 2, column 9: byte 0xe9 is not "
                              "UTF-8 (a config is UTF-8 text: save it as UTF-8)")


@pytest.mark.parametrize("field", ["cluster", "role", "environment", "name"])
def test_a_job_key_part_ending_in_a_newline_or_holding_a_letter_beyond_ascii_is_refused(tmp_path, field):
    """`name='quick\\n'` passed (`$` matches before a final newline): its task id, `stoker
    ps` row and console label carried `quick\\n`. `作业-é` passed too (Python 3's `\\w` is
    Unicode's): Aurora's client and scheduler refuse it (their `\\w` is ASCII), so a job
    `stoker run` ran could not be created there. Both are refused naming file, field, value;
    an empty one is called empty (it said `= '' may only contain ...`)."""
    rule = "may only contain ASCII letters, digits, _, - and . (Aurora refuses any other)"
    for value, shown in (("quick\\n", "'quick\\n'"), ("作业-é", "'作业-é'"), ("rôle", "'rôle'")):
        path = write_config(tmp_path, job_text(extra=f", {field}='{value}'").replace(f"{field}='{field[0]}', ", ""))
        error = error_of(path)
        assert str(path) in error and f"job.{field} = {shown} {rule}" in error
    empty = write_config(tmp_path, job_text(extra=f", {field}=''").replace(f"{field}='{field[0]}', ", ""), "empty.aurora")
    assert f"job.{field} is empty: it must be one or more ASCII letters, digits, _, - and ." in error_of(empty)
    plain = write_config(tmp_path, job_text(extra=f", {field}='Dev_prod-.9'").replace(f"{field}='{field[0]}', ", ""),
                         "plain.aurora")
    assert "Dev_prod-.9" in job_key(load_job(plain))


def test_a_job_key_typed_where_arguments_are_read_as_ascii_names_the_job_in_the_utf8_file(tmp_path):
    """`stoker run job.aurora c/rôle/e/web` under `LC_ALL=C PYTHONUTF8=0`: Python hands the
    key over as the surrogate escapes of its UTF-8 bytes, and it said `no job
    c/r\\xc3\\xb4le/e/web; the file defines: c/r\\xf4le/e/web`."""
    path = write_config(tmp_path, job_text().replace("role='r'", "role='rôle'"))
    typed = "c/rôle/e/web".encode().decode("ascii", "surrogateescape")
    assert job_key(select_job(load_jobs(path), typed, path)) == "c/rôle/e/web"


@pytest.mark.parametrize("suffix", [".json", ".aurora"])
def test_half_a_surrogate_pair_is_refused_naming_the_field(tmp_path, suffix):
    """Found by the fuzz harness (tests/fuzz/fuzz_config.py): JSON's `"\\ud910"` escape (or
    Python's `'\\ud910'`) in a cmdline made `stoker inspect` and `stoker run` end in a
    UnicodeEncodeError traceback, and a task document with one failed with `invalid task
    document: UnicodeEncodeError: ...`. A surrogateescape byte (`\\udcff`, byte 0xff) is no
    half pair: no error."""
    cmdline = "echo \ud910"
    if suffix == ".json":
        tree = plain(job(process("web", cmdline)))
        path = tmp_path / "job.json"
        path.write_text(json.dumps(tree))
    else:
        path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo \\ud910')]"))
    assert error_of(path).endswith(
        "job.task.processes[0].cmdline = 'echo \\ud910' holds \\ud910, half of a UTF-16 surrogate pair: "
        "no character, so no process, file or log can hold it")
    byte = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo \\udcff')]"), "byte.aurora")
    assert plain(load_job(byte))["task"]["processes"][0]["cmdline"] == "echo \udcff"


def test_a_json_config_s_escape_of_a_surrogate_escape_byte_is_refused_too(tmp_path):
    """In a .json file `"echo \\udcff"` is JSON's escape (the file is read as UTF-8), not a
    byte surrogateescape stands for: it ran as byte 0xff. In an .aurora file Python's
    `'\\udcff'` is still that byte (as an argument's is)."""
    path = tmp_path / "job.json"
    path.write_text(json.dumps(plain(job(process("web", "echo \udcff")))))
    assert error_of(path).endswith(
        "job.task.processes[0].cmdline = 'echo \\udcff' holds \\udcff, half of a UTF-16 surrogate pair: "
        "no character, so no process, file or log can hold it")


@pytest.mark.parametrize("cmdline", ["echo hi", "echo {{mesos.instance}}"])
def test_an_integer_of_more_digits_than_python_writes_is_refused_naming_the_field(tmp_path, cmdline):
    """`max_failures=10**5000` made `stoker inspect` and `stoker run` end in a traceback:
    `ValueError: Exceeds the limit (4300 digits) for integer string conversion`, from the
    template check's `str()` (a job with a template) or the job's description. Refused
    naming the field, as its text ('1' * 5000) is; one of 4000 digits is still a number."""
    for value, task_extra in (("1", ", max_failures=10**5000"), ("-10**5000", "")):
        processes = f"[Process(name='web', cmdline='{cmdline}', max_failures={value})]"
        path = write_config(tmp_path, job_text(processes, task_extra=task_extra))
        field = "job.task.max_failures" if task_extra else "job.task.processes[0].max_failures"
        assert error_of(path).endswith(f"{field} is an integer of more than 4300 digits: more than any "
                                       "count or size a task can use, and more than Python writes as text")
    many = write_config(tmp_path, job_text(task_extra=", max_failures=10**4000"), "many.aurora")
    assert plain(load_job(many))["task"]["max_failures"] == 10**4000


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_of_exactly_as_many_digits_as_python_writes_is_a_number(tmp_path, sign):
    """10**4299 has 4300 digits, which `str()` writes (it refuses more than 4300): the count
    from its bits (4301, with a sign that is not a digit) refused it as "more than 4300"."""
    config = write_config(tmp_path, job_text(task_extra=f", max_failures={sign}10**4299"))
    if sign:  # a number, so judged as one
        assert error_of(config).endswith(" must be at least 0 (0 = never)")
    else:
        assert plain(load_job(config))["task"]["max_failures"] == 10**4299
    config = write_config(tmp_path, job_text(task_extra=f", max_failures={sign}10**4300"), "more.aurora")
    assert error_of(config).endswith("job.task.max_failures is an integer of more than 4300 digits: more than any "
                                     "count or size a task can use, and more than Python writes as text")
