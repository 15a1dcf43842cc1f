"""`config.loader`'s rules, each stated whole: the words of every problem `check_job` finds
in a job's plain values (at each boundary, before and once its templates are bound), the
unbound references `check_bound` lists, the config file's size cap, a JSON document after
blank lines, and what picking a job by its key says when the key is wrong or given first."""
from __future__ import annotations

import pytest

from config.errors import ConfigError
from config.loader import (
    MAX_BACKUPS,
    MAX_CONFIG_CHARS,
    check_bound,
    check_job,
    load_job,
    load_jobs,
    select_job,
)
from config.spec import MAX_ARGUMENT_BYTES, MAX_SECONDS
from tests.support.configs import error_of, job, job_text, process, write_config

RESOURCES = {"cpu": 1.0, "ram": 1, "disk": 1}
NAME_RULE = ("is not a safe process name: names are used as directory names, so they must match "
             "^[A-Za-z0-9_][A-Za-z0-9_.-]*$, at most 128 characters (no '/', no leading '.'), also once its "
             "templates are bound")


def problems(*processes: dict, bound: bool = False, **task: object) -> list[str]:
    """check_job's problems for a job of these processes (each with a cmdline unless given)."""
    procs = [{"cmdline": "x", **p} for p in processes]
    return check_job({"task": {"processes": procs, "resources": RESOURCES, **task}}, bound=bound)


def test_a_task_needs_a_process_and_each_process_a_safe_name():
    assert problems() == ["job.task.processes is empty; a task needs at least one process"]
    assert problems({}) == [f"job.task.processes[0].name = '' {NAME_RULE}"]
    assert problems({"name": "p-{{n}}"}) == []  # a template counts as one safe character until bound
    assert problems({"name": "{{n}}"}) == []
    assert problems({"name": "p-{{n}}"}, bound=True) == [f"job.task.processes[0].name = 'p-{{{{n}}}}' {NAME_RULE}"]


def test_counts_below_zero_say_what_zero_means():
    assert problems({"name": "p", "max_failures": -1}, max_failures=-1, max_concurrency=-1) == [
        "job.task.processes[0].max_failures = -1 must be at least 0 (0 = unlimited)",
        "job.task.max_failures = -1 must be at least 0 (0 = never)",
        "job.task.max_concurrency = -1 must be at least 0 (0 = unlimited)"]


@pytest.mark.parametrize(("backups", "min_duration", "said"), [
    (MAX_BACKUPS, MAX_SECONDS, []),
    (MAX_BACKUPS + 1, MAX_SECONDS + 1, [
        f"job.task.processes[0].min_duration = {float(MAX_SECONDS + 1)} must be at most {MAX_SECONDS} (365 days)",
        f"job.task.processes[0].logger.rotate.backups = {MAX_BACKUPS + 1} must be at most {MAX_BACKUPS}"]),
])
def test_the_largest_backups_and_duration_are_allowed_and_one_more_is_not(backups, min_duration, said):
    logger = {"mode": "rotate", "rotate": {"log_size": 1, "backups": backups}}
    assert problems({"name": "p", "min_duration": min_duration, "logger": logger}) == said


def test_a_command_s_templates_count_for_nothing_until_bound():
    """`{{a}}` may bind to '': a command as written is not measured with them, a bound one is."""
    long = "{{a}}" * (MAX_ARGUMENT_BYTES // 5 + 1)
    assert problems({"name": "p", "cmdline": long}) == []
    said = problems({"name": "p", "cmdline": long}, bound=True)
    assert len(said) == 1 and said[0].startswith("job.task.processes[0].cmdline = '{{a}}{{a}}") and \
        "(process 'p') is 131,075 bytes long" in said[0], said
    shell = {"health_checker": {"shell": {"shell_command": long}}}
    assert check_job({"task": {"processes": [{"name": "p", "cmdline": "x"}], "resources": RESOURCES},
                      "health_check_config": shell}) == []
    said = check_job({"task": {"processes": [{"name": "p", "cmdline": "x"}], "resources": RESOURCES},
                      "health_check_config": shell}, bound=True)
    assert len(said) == 1 and said[0].startswith("job.health_check_config.health_checker.shell.shell_command = '{{a}}")


def test_the_lifecycle_s_port_name_and_both_endpoints_are_checked():
    def lifecycle(bound: bool = False, **http: object) -> list[str]:
        return check_job({"task": {"processes": [{"name": "p", "cmdline": "x"}], "resources": RESOURCES},
                          "lifecycle": {"http": http}}, bound=bound)

    port_rule = ("is not a port name: a name {{thermos.ports[NAME]}} can hold is letters, digits, '_', '-', "
                 "'.' and '/'")
    assert lifecycle(port="a b") == [f"job.lifecycle.http.port = 'a b' {port_rule}"]
    assert lifecycle(port="{{p}}") == []  # judged once bound
    assert lifecycle(port="{{p}}", bound=True) == [f"job.lifecycle.http.port = '{{{{p}}}}' {port_rule}"]
    assert lifecycle(graceful_shutdown_endpoint="/ok", shutdown_endpoint="x") == [
        "job.lifecycle.http.shutdown_endpoint = 'x' must be an absolute path starting with one '/', "
        "such as '/health'"]
    assert lifecycle(shutdown_endpoint="{{e}}") == []  # `bind` checks it once expanded


def test_unbound_references_are_listed_twenty_at_most_each_cut_at_80_characters(tmp_path):
    refs = [f"{{{{r{i:02}}}}}" for i in range(21)]
    long = "{{" + "x" * 100 + "}}"
    j = job(process("p", " ".join([long, *refs])))
    with pytest.raises(ConfigError) as info:
        check_bound(j, "'f'")
    shown = str(info.value).split("unbound variables: ", 1)[1]
    assert shown.startswith("{{" + "x" * 75 + "... {{r00}} ") and shown.endswith(" {{r18}} (bind them in the file, "
                                                                      "or with --bind NAME=VALUE)")
    assert info.value.problems == (long, *refs)  # every one, as found


def test_a_config_file_past_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / "big.aurora"
    path.write_text("#" * (MAX_CONFIG_CHARS + 1))
    with pytest.raises(ConfigError) as info:
        load_jobs(path)
    assert str(info.value) == (f"'{path}': cannot read the config file: it is longer than {MAX_CONFIG_CHARS} "
                               "characters: is it a config file?")


def test_a_json_document_is_read_as_one_even_after_blank_lines(tmp_path):
    document = '\n  {"jobs": [], "service": false}'
    path = tmp_path / "doc.aurora"
    path.write_text(document)
    sources: dict[str, str] = {}
    with pytest.raises(ConfigError, match="`jobs` is empty"):
        select_job(load_jobs(path, sources), None, path)
    assert sources == {str(path): document}


def test_include_takes_a_relative_path_and_says_what_it_got_instead(tmp_path):
    assert error_of(write_config(tmp_path, "include(3)\n")) == f"{tmp_path}/job.aurora:1: include() takes a " \
        "relative path, not 3"


def test_a_list_of_keys_is_cut_after_twenty(tmp_path):
    def defined(count: int) -> str:
        path = write_config(tmp_path, f"jobs = [Job(cluster='c', role='r', environment='e', name='j%d' % i, "
                            f"task=Task(processes=[Process(name='p', cmdline='x')], resources=Resources(cpu=1, "
                            f"ram=1*MB, disk=1*MB))) for i in range({count})]\n", f"n{count}.aurora")
        return error_of(path, "c/r/e/nope")

    assert defined(20).endswith("c/r/e/j19")
    assert defined(21).endswith("c/r/e/j19, ... (21 jobs in all)")


def test_a_key_is_read_as_utf_8_and_one_with_an_instance_says_how_to_run_it(tmp_path):
    path = write_config(tmp_path, job_text(extra=", name='web'"))
    assert error_of(path, "c/r/e/w\udcc3\udca9b") == f"'{path}': no job c/r/e/w\u00e9b; the file defines: c/r/e/web"
    # bytes that are no UTF-8 (`\xff` typed in a C locale) are kept as they came, not a crash
    assert error_of(path, "c/r/e/\udcff") == f"'{path}': no job c/r/e/\udcff; the file defines: c/r/e/web"
    assert error_of(path, "c/r/e/web/0") == ("job key 'c/r/e/web/0' is not cluster/role/environment/name (an "
                                            "instance, Aurora's `/N` after the key, is `stoker run --instance N`)")
    assert error_of(path, "c/r/e/web/x") == "job key 'c/r/e/web/x' is not cluster/role/environment/name"


def test_a_job_key_given_before_the_config_is_said_so_and_only_then(tmp_path):
    path = write_config(tmp_path, job_text(extra=", name='web'"))
    with pytest.raises(ConfigError) as info:
        load_job("c/r/e/web", str(path))
    assert str(info.value).endswith(f"; the config file comes first, then the job key: did you mean {path} c/r/e/web?")
    with pytest.raises(ConfigError) as info:
        load_job("-c/r/e/web", str(path))
    assert str(info.value).endswith(f"did you mean -- {path} -c/r/e/web?")
    for config, key in (("nope.aurora", str(path)), ("c/r/e/web", None)):
        with pytest.raises(ConfigError) as info:
            load_job(config, key)
        assert "comes first" not in str(info.value)
