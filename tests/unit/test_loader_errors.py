"""The errors a config raises while it runs (syntax, exceptions, schema, recursion, includes,
missing files, bad jobs lists), each one line naming the file and line."""
from __future__ import annotations

import json

import pytest

from config.document import decode
from config.errors import show
from config.loader import load_job
from tests.support.configs import error_of, job_text, write_config

# ---- errors while running the file ----


def test_syntax_error_names_file_and_line(tmp_path):
    path = write_config(tmp_path, "x = 1\njobs = [\n  Job(\n", "syntax.aurora")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert message.endswith("syntax.aurora:3: syntax error: '(' was never closed")


def test_a_nul_character_names_its_line_and_column(tmp_path):
    """Python's compile names no line for it: the message named the file alone."""
    path = write_config(tmp_path, "x = 1\ny = 'a\0b'\n", "nul.aurora")
    assert error_of(path) == (f"{path}:2: syntax error: a NUL character at column 7 (a config is text: "
                              "no source code holds one)")


def test_code_nested_too_deeply_to_compile_is_not_called_a_recursion_of_its_code(tmp_path):
    """Python's compiler recursed too deeply (`1+1+...` of 200,000 terms): the message said
    the config's code called itself without end, though none of it had run."""
    path = write_config(tmp_path, "x = 1\ny = " + "+".join(["1"] * 200_000) + "\n", "long.aurora")
    assert error_of(path) == (f"'{path}': syntax error: it is nested too deeply for Python to compile "
                              "(an expression of thousands of parts or levels?)")
    top = write_config(tmp_path, "x = 1\ninclude('long.aurora')\n", "top.aurora")
    assert error_of(top) == (f"'{path}': syntax error: it is nested too deeply for Python to compile "
                             f"(an expression of thousands of parts or levels?) (included from {top}:2)")


def test_exception_while_running_names_file_line_and_exception(tmp_path):
    path = write_config(tmp_path, "x = 1\ny = {}['nope']\n", "raises.aurora")
    assert error_of(path) == f"{path}:2: KeyError: 'nope'"


# Each row: config code, then the message after `FILE:LINE: ` (the failing code is on line 2).
SCHEMA_ERRORS = {
    "an unknown field names the struct and the closest field": (
        "p = Process(name='a', cmdlin='x')", "Process has no field 'cmdlin'; did you mean 'cmdline'?"),
    "an unknown field with nothing close lists the fields": (
        "r = Resources(cpu=1, bananas=3)",
        "Resources has no field 'bananas'; the known names are cpu, disk, gpu, ram"),
    "an unknown field of a Job says Job": (
        "j = Job(nmae='x')", "Job has no field 'nmae'; did you mean 'name'?"),
    "an unknown field in a dict given for a struct": (
        "t = Task(processes=[{'name': 'a', 'cmdlin': 'x'}])",
        "Process has no field 'cmdlin'; did you mean 'cmdline'?"),
    "a struct where a list belongs, on one line": (
        "t = Task(processes=Process(name='a', cmdline='x'))",
        "Task.processes must be a list of Process, not a Process"),
    "a list item that is no struct": (
        "t = Task(processes=['x'])", "Task.processes must be a list of Process; 'x' is not a Process"),
    "None where a struct belongs": (
        "t = Task(resources=None)", "Task.resources must be a Resources, not None"),
    "another struct where a struct belongs (pystachio cannot even render this one)": (
        "t = Task(resources=Process(name='a', cmdline='x', max_failures='x'))",
        "Task.resources must be a Resources, not a Process"),
    "a value outside an enum": (
        "l = Logger(destination='filez')",
        "Logger.destination must be one of file, console, both, none, not 'filez'"),
    "a map given a number": (
        "a = Announcer(portmap=3)", "Announcer.portmap must be a map from String to String, not 3"),
    "a struct called with a positional non-mapping": (
        "p = Process('web')", "Process(...) takes field = value arguments (or a dict), not 'web'"),
}


@pytest.mark.parametrize("code, message", SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_schema_errors_name_the_struct_and_field_in_one_line(tmp_path, code, message):
    path = write_config(tmp_path, f"x = 1\n{code}\n" + job_text())
    assert error_of(path) == f"{path}:2: {message}"


def test_an_error_inside_a_function_names_the_failing_line_without_fake_frames(tmp_path):
    path = write_config(tmp_path, """
        def web(n):
            return Process(name='web', cmdlin=n)
        procs = [web(str(i)) for i in range(3)]
    """)
    assert error_of(path) == f"{path}:2: Process has no field 'cmdlin'; did you mean 'cmdline'?"


def test_an_error_in_a_comprehension_names_its_line(tmp_path):
    path = write_config(tmp_path, "names = ['a', 'b']\nprocs = [Process(name=n, cmdline=1 / 0) for n in names]\n")
    assert error_of(path) == f"{path}:2: ZeroDivisionError: division by zero"


def test_runaway_recursion_is_one_short_line(tmp_path):
    path = write_config(tmp_path, "x = 1\ndef f(): return f()\nf()\n")
    message = error_of(path)
    assert message == (f"{path}:2: RecursionError: the config code recursed too deeply (a function "
                       "that calls itself without end?)")


def test_a_function_from_an_included_file_fails_at_its_own_line(tmp_path):
    write_config(tmp_path, "def make():\n    return Process(nmae='x')\n", "lib.aurora")
    path = write_config(tmp_path, "include('lib.aurora')\np = make()\n", "top.aurora")
    assert error_of(path) == f"{tmp_path}/lib.aurora:2: Process has no field 'nmae'; did you mean 'name'?"


@pytest.mark.parametrize("resources, message", [
    ("", "job.task.resources is not set; a task needs resources = Resources(cpu = 1.0, ram = 128*MB, "
         "disk = 128*MB) (Aurora requires them)"),
    (", resources=Resources(cpu=-1, ram=1*MB, disk=1*MB)", "job.task.resources.cpu = -1.0 must be more than 0"),
    (", resources=Resources(cpu=1, ram=0, disk=1*MB)", "job.task.resources.ram = 0 must be more than 0"),
    (", resources=Resources(cpu=1, ram=1*MB, disk=-5)", "job.task.resources.disk = -5 must be more than 0"),
    (", resources=Resources(cpu=1, ram=1*MB - 1, disk=1*MB)",
     "job.task.resources.ram = 1048575 is less than 1 MiB (1048576 bytes): Aurora's client sends ram "
     "and disk in whole MiB and refuses a task with 0"),
    (", resources=Resources(cpu=1, ram=1, disk=1*MB)",  # one byte: more than 0, still under a MiB
     "job.task.resources.ram = 1 is less than 1 MiB (1048576 bytes): Aurora's client sends ram "
     "and disk in whole MiB and refuses a task with 0"),
    (", resources=Resources(cpu=1, ram=1*MB, disk=512*KB)",
     "job.task.resources.disk = 524288 is less than 1 MiB (1048576 bytes): Aurora's client sends ram "
     "and disk in whole MiB and refuses a task with 0"),
    (", resources=Resources(cpu=1, ram=1*MB, disk=1*MB, gpu=-1)",
     "job.task.resources.gpu = -1 must be at least 0 (a count of GPUs)"),
    # 400 digits of text, an integer as pystachio reads it: the task ran, and its usage file,
    # which Stoker wrote, read back as damaged (its figures, and the metrics, are floats)
    (", resources=Resources(cpu=1, ram='1'*400, disk=1*MB)",
     f"job.task.resources.ram = {show(int('1' * 400))} "
     "is more than 8 EiB (9,223,372,036,854,775,807 bytes, the most a 64-bit size holds): no host has it"),
    (", resources=Resources(cpu=1, ram=1*MB, disk=2**63)",
     "job.task.resources.disk = 9223372036854775808 is more than 8 EiB (9,223,372,036,854,775,807 bytes, "
     "the most a 64-bit size holds): no host has it"),
])
def test_a_task_needs_positive_resources_as_in_aurora(tmp_path, resources, message):
    path = write_config(tmp_path, "jobs = [Job(task=Task(processes=[Process(name='web', cmdline='x')]"
                                  f"{resources}), cluster='c', role='r', environment='e')]\n")
    assert error_of(path) == f"'{path}': job c/r/e/web: {message}"


def test_a_task_of_exactly_1_mib_of_ram_and_disk_is_accepted_as_in_aurora(tmp_path):
    """Aurora's client divides by MB and refuses 0 MiB: 1 MiB is its least ram and disk."""
    path = write_config(tmp_path, "jobs = [Job(task=Task(processes=[Process(name='web', cmdline='x')], "
                                  "resources=Resources(cpu=0.01, ram=1*MB, disk=1*MB)), cluster='c', "
                                  "role='r', environment='e')]\n")
    assert load_job(path).task().resources().ram().get() == 1024 * 1024


def test_a_task_of_8_eib_of_ram_and_disk_is_accepted(tmp_path):
    path = write_config(tmp_path, "jobs = [Job(task=Task(processes=[Process(name='web', cmdline='x')], "
                                  "resources=Resources(cpu=0.01, ram=2**63 - 1, disk=2**63 - 1)), cluster='c', "
                                  "role='r', environment='e')]\n")
    assert load_job(path).task().resources().disk().get() == 2**63 - 1


def test_an_executor_s_task_under_1_mib_is_not_refused_for_it_as_thermos_does_not():
    """The whole-MiB rule is the client's: a task document a framework sends keeps its bytes."""
    doc = {"job": {"task": {"processes": [{"name": "w", "cmdline": "x"}],
                            "resources": {"cpu": 0.1, "ram": 1024, "disk": 1024}},
                   "cluster": "c", "role": "r", "environment": "e"}}
    assert decode(json.dumps(doc)).job.task().resources().disk().get() == 1024


def test_an_executor_s_task_with_a_negative_gpu_is_not_refused_as_thermos_does_not():
    """A scheduler that allows GPUs sends Aurora's client's -1 on; Thermos never reads it."""
    doc = {"job": {"task": {"processes": [{"name": "w", "cmdline": "x"}],
                            "resources": {"cpu": 0.1, "ram": 1024, "disk": 1024, "gpu": -1}},
                   "cluster": "c", "role": "r", "environment": "e"}}
    assert decode(json.dumps(doc)).job.task().resources().gpu().get() == -1


def test_arguments_in_aurora_order_get_a_hint(tmp_path):
    path = write_config(tmp_path, job_text())
    message = error_of("c/r/e/web", str(path))
    assert message == ("'c/r/e/web': cannot read the config file: No such file or directory; the config "
                       f"file comes first, then the job key: did you mean {path} c/r/e/web?")


def test_the_hint_for_arguments_in_aurora_order_is_a_command_bash_reads_back(tmp_path):
    """Was: the paths as they are, `did you mean /…/my job's.aurora c/r/e/web?`: pasted, three
    words and an unclosed quote."""
    path = tmp_path / "my job's.aurora"
    path.write_text(job_text())
    assert error_of("c/r/e/web", str(path)).endswith(
        f"did you mean '{tmp_path}/my job'\"'\"'s.aurora' c/r/e/web?")


def test_runaway_recursion_and_exit_become_config_errors(tmp_path):
    recursion = write_config(tmp_path, "def f():\n    return f()\nf()\n", "recursion.aurora")
    assert "recursion.aurora:2: RecursionError" in error_of(recursion)
    exits = write_config(tmp_path, "import sys\nsys.exit(3)\n", "exits.aurora")
    assert "exits.aurora:2: SystemExit: 3" in error_of(exits)


@pytest.mark.parametrize("code, what", [
    ("raise GeneratorExit", "GeneratorExit"),
    ("raise BaseException('odd')", "BaseException: odd"),
    ("raise SystemExit", "SystemExit"),
])
def test_anything_but_a_ctrl_c_the_config_raises_is_a_config_error(tmp_path, code, what):
    path = write_config(tmp_path, f"x = 1\n{code}\n")
    assert error_of(path) == f"{path}:2: {what}"


def test_a_keyboard_interrupt_stays_a_ctrl_c(tmp_path):
    # A Ctrl-C while the config runs (`stoker inspect` runs it in its own process) exits 130.
    path = write_config(tmp_path, "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_job(path)


def test_error_in_included_file_names_it_and_the_include_line(tmp_path):
    write_config(tmp_path, "y = 2\nz = undefined_name\n", "sub/bad.aurora")
    path = write_config(tmp_path, "# top\ninclude('sub/bad.aurora')\n", "top.aurora")
    message = error_of(path)
    assert message == (f"{tmp_path}/sub/bad.aurora:2: NameError: name 'undefined_name' is not "
                       f"defined (included from {path}:2)")


def test_a_file_that_includes_itself_names_each_include_line_once(tmp_path):
    path = write_config(tmp_path, "include('top.aurora')\n", "top.aurora")
    assert error_of(path) == (f"{path}:1: RecursionError: the config code recursed too deeply (a "
                              f"function that calls itself without end?) (included from {path}:1)")
    other = write_config(tmp_path, "x = 1\ninclude('a.aurora')\n", "b.aurora")
    first = write_config(tmp_path, "include('b.aurora')\n", "a.aurora")
    assert error_of(first).endswith(f"(included from {other}:2) (included from {first}:1)")


def test_include_of_a_missing_file(tmp_path):
    path = write_config(tmp_path, "x = 1\ninclude('nope.aurora')\n", "top.aurora")
    message = error_of(path)
    assert f"{path}:2: include('nope.aurora') cannot read {tmp_path}/nope.aurora" in message


def test_a_config_or_include_that_never_ends_is_read_no_further_than_64_mib(tmp_path, monkeypatch):
    """`stoker run /dev/zero` or `include('/dev/zero')` was read until memory ran out (the
    machine's, without a ulimit -v). The limit is lowered here, so the test reads little."""
    from config import loader

    monkeypatch.setattr(loader, "MAX_CONFIG_CHARS", 4096)
    why = "it is longer than 4096 characters: is it a config file?"
    assert error_of("/dev/zero") == f"'/dev/zero': cannot read the config file: {why}"
    path = write_config(tmp_path, "x = 1\ninclude('/dev/zero')\n", "top.aurora")
    assert error_of(path) == f"{path}:2: include('/dev/zero') cannot read /dev/zero: {why}"
    write_config(tmp_path, "x" * 4096, "whole.aurora")
    assert "NameError" in error_of(tmp_path / "whole.aurora")  # read whole at the limit: run


def test_missing_config_file(tmp_path):
    assert "cannot read the config file" in error_of(tmp_path / "absent.aurora")


@pytest.mark.parametrize("text,expected", [
    ("x = 1\n", "defines no `jobs`"),
    ("jobs = Job()\n", "`jobs` must be a list of Job objects, not MesosJob"),
    ("jobs = [Process(name='a', cmdline='b')]\n", "jobs[0] is a Process, not a Job"),
    ("jobs = [1]\n", "jobs[0] is an int, not a Job"),
    ("jobs = []\n", "`jobs` is empty"),
])
def test_jobs_list_problems(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    message = error_of(path)
    assert expected in message and str(path) in message
