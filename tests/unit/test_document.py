"""The task document: its format, round trips, and that junk only ever raises TaskDocumentError."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.document import MAX_DOCUMENT_BYTES, TaskDocument, decode, encode
from config.errors import ConfigError, TaskDocumentError
from config.loader import load_job
from tests.support.configs import EXAMPLES, job, plain, process

VALID_JOB = plain(job(process("web", "serve {{thermos.ports[http]}}")))


def doc(**fields) -> bytes:
    return json.dumps({"job": VALID_JOB, **fields}).encode()


def test_encode_format():
    j = job(process("web"))
    assert json.loads(encode(j)) == {"job": plain(j), "instance": 0}
    assert json.loads(encode(j, 2, {"http": 31000})) == {"job": plain(j), "instance": 2,
                                                          "assigned_ports": {"http": 31000}}
    encode(j).decode("utf-8")  # UTF-8 bytes


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_round_trip_of_every_example(path):
    loaded = load_job(path)
    decoded = decode(encode(loaded, 4, {"http": 31000, "health": 31001}))
    assert plain(decoded.job) == plain(loaded)
    assert decoded.job.get() == loaded.get()
    assert (decoded.instance, decoded.assigned_ports) == (4, {"http": 31000, "health": 31001})


def test_decode_defaults_and_accepts_text():
    decoded = decode(doc().decode())
    assert decoded == TaskDocument(job=decoded.job, instance=0, assigned_ports={})
    assert plain(decoded.job) == VALID_JOB


def test_decode_accepts_a_minimal_job_and_fills_defaults():
    minimal = {"task": {"processes": [{"name": "w", "cmdline": "x"}],
                        "resources": {"cpu": 0.5, "ram": 1, "disk": 1}},
               "cluster": "c", "role": "r", "environment": "e"}
    decoded = plain(decode(json.dumps({"job": minimal})).job)
    assert decoded["name"] == "w" and decoded["health_check_config"]["interval_secs"] == 10.0


def test_decode_rewrites_angle_refs():
    angled = json.loads(doc())
    angled["job"]["task"]["processes"][0]["cmdline"] = "serve <<thermos.ports[http]>>"
    cmdline = plain(decode(json.dumps(angled)).job)["task"]["processes"][0]["cmdline"]
    assert cmdline == "serve {{thermos.ports[http]}}"


def with_job(**changes) -> bytes:
    return json.dumps({"job": {**VALID_JOB, **changes}}).encode()


@pytest.mark.parametrize("data,expected", [
    (b"\xff\xfe{}", "it is not UTF-8"),
    (b"{not json", "it is not JSON"),
    (b"", "it is not JSON"),
    (b"[1, 2]", "it must be a JSON object, not an array"),
    (b'"job"', "it must be a JSON object, not a string"),
    (b"42", "it must be a JSON object, not a number"),
    (b"{}", 'it has no "job"'),
    (b'{"job": []}', '"job" must be a JSON object, not an array'),
    (b'{"job": {}, "extra": 1}', "unknown keys 'extra' (expected: job, instance, assigned_ports)"),
    (doc(instance=-1), '"instance" must be a non-negative integer, not -1'),
    (doc(instance="1"), '"instance" must be a non-negative integer, not "1"'),
    (doc(instance=True), '"instance" must be a non-negative integer, not true'),
    (doc(instance=1.5), '"instance" must be a non-negative integer, not 1.5'),
    (doc(assigned_ports=[]), '"assigned_ports" must be a map of port name to number, not an array'),
    (doc(assigned_ports={"http": 0}), '"assigned_ports" numbers must be integers in 1..65535: http=0'),
    (doc(assigned_ports={"http": 65536}), "http=65536"),
    (doc(assigned_ports={"http": -1}), '"assigned_ports" numbers must be integers in 1..65535: http=-1'),
    (doc(assigned_ports={"http": "80"}), 'http="80"'),
    (doc(assigned_ports={"http": True}), "http=true"),
    (with_job(max_task_failures="x"), "job.max_task_failures = 'x' is not an integer"),
    (with_job(max_task_failures="1e5"), "job.max_task_failures = '1e5' is not an integer"),
    (with_job(task={"processes": 7}), "job.task.processes must be a list, not 7"),
    (with_job(health_check_config={"health_checker": {"grpc": {}}}), "unknown health checker kind 'grpc'"),
    (with_job(health_check_config={"interval_secs": 0}), "job.health_check_config.interval_secs = 0.0 must be greater than 0"),
    (with_job(role=None), "job.role is required but missing"),
    (with_job(bogus=1), "job: unknown field 'bogus'"),
    (with_job(task={"processes": [{"name": "../x", "cmdline": "x"}]}), "is not a safe process name"),
    # Found by the fuzz harness (tests/fuzz/fuzz_task_document.py): it was "invalid task
    # document: UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud910' ...".
    (with_job(task={"processes": [{"name": "p", "cmdline": "echo \ud910"}]}),
     "job.task.processes[0].cmdline = 'echo \\ud910' holds \\ud910, half of a UTF-16 surrogate pair"),
])
def test_malformed_documents_say_what_is_wrong(data, expected):
    with pytest.raises(TaskDocumentError) as info:
        decode(data)
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid task document: ")
    assert isinstance(info.value, ConfigError)


def test_a_task_of_2000_bad_processes_lists_20_problems_and_counts_the_rest():
    """Each was listed: a 770 KB document of 20,000 gave a 4.8 MB message, the TASK_FAILED's
    (2,000 here: the whole list would be some 480 KB)."""
    processes = [{"name": f"bad/{i}", "cmdline": "x"} for i in range(2_000)]
    with pytest.raises(TaskDocumentError) as info:
        decode(with_job(task={**VALID_JOB["task"], "processes": processes}))
    message = str(info.value)
    assert message.startswith("invalid task document: task document: job c/r/e/web: 2000 problems: "
                              "job.task.processes[0].name = 'bad/0' is not a safe process name")
    assert message.endswith("; and 1980 more") and "processes[19].name" in message
    assert "processes[20].name" not in message and len(message) < 8192
    assert len(info.value.problems) == 2_000  # each still there for a caller that lists them


@pytest.mark.parametrize("data, start", [
    (json.dumps({"job": VALID_JOB, **{f"k{i}": 1 for i in range(100_000)}, "x" * 1_000_000: 1}).encode(),
     "invalid task document: unknown keys 'k0', 'k1', 'k10', 'k100', 'k1000', 'k10000', "),
    (doc(assigned_ports={**{f"p{i}": -1 for i in range(100_000)}, "x" * 1_000_000: 0}),
     'invalid task document: "assigned_ports" numbers must be integers in 1..65535: p0=-1, p1=-1, '),
])
def test_a_document_of_100000_unknown_keys_or_bad_ports_names_20_of_them(data, start):
    """Each was listed, whole: a 1.3 MB document failed with a 1 MB message (the TASK_FAILED's)."""
    with pytest.raises(TaskDocumentError) as info:
        decode(data)
    message = str(info.value)
    assert message.startswith(start) and "(100001 in all)" in message and len(message) < 4096


def test_oversized_document_is_rejected_before_parsing():
    junk = b"{" * (MAX_DOCUMENT_BYTES + 1)
    started = time.monotonic()
    with pytest.raises(TaskDocumentError, match="over the 4194304 byte limit"):
        decode(junk)
    with pytest.raises(TaskDocumentError, match="over the 4194304 byte limit"):
        decode("x" * (10 * 1024 * 1024))
    assert time.monotonic() - started < 10.0  # a guard: the size is checked before any parsing


def test_ten_megabytes_of_junk():
    with pytest.raises(TaskDocumentError):
        decode(bytes(range(256)) * 40960)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_documents(depth):
    nested = "[" * depth + "]" * depth
    with pytest.raises(TaskDocumentError):
        decode(nested)
    inside_job = '{"job": {"task": ' + "[" * depth + "]" * depth + "}}"
    with pytest.raises(TaskDocumentError):
        decode(inside_job)


@pytest.mark.parametrize("data", [None, 42, ["job"], {"job": {}}])
def test_non_bytes_input(data):
    with pytest.raises(TaskDocumentError, match="must be bytes or text"):
        decode(data)


def test_unpaired_surrogate_text():
    with pytest.raises(TaskDocumentError, match="not UTF-8"):
        decode('{"job": "\ud800"}')


@pytest.mark.parametrize("escape", ["\\udcff", "\\ud800"])
def test_a_json_escape_of_a_surrogate_is_refused_naming_the_field(escape):
    """`"echo \\udcff"` (a JSON escape: the document's bytes are strict UTF-8) ran as byte
    0xff, as Python's surrogateescape writes it: half a UTF-16 pair is no character."""
    tree = {"job": plain(job(process("web", "echo X")))}
    data = json.dumps(tree).replace("echo X", f"echo {escape}")
    with pytest.raises(TaskDocumentError, match=r"job\.task\.processes\[0\]\.cmdline = 'echo \\ud[c8]\w\w' holds"):
        decode(data.encode())


# ---- only TaskDocumentError ever escapes ----

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(sorted(VALID_JOB) + ["bogus"])
TASK_KEYS = st.sampled_from(sorted(VALID_JOB["task"]) + ["bogus"])


def decodes_or_rejects(data) -> None:
    try:
        result = decode(data)
    except TaskDocumentError:
        return
    assert isinstance(result, TaskDocument)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes(data):
    decodes_or_rejects(data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_random_json_values_as_the_document_or_the_job(value):
    decodes_or_rejects(json.dumps(value))
    decodes_or_rejects(json.dumps({"job": value}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(KEYS, JSON, TASK_KEYS, JSON, st.integers(min_value=-2, max_value=70000))
def test_valid_documents_with_one_field_broken(key, value, task_key, task_value, port):
    broken = json.loads(json.dumps(VALID_JOB))
    broken[key] = value
    broken.setdefault("task", {})
    if isinstance(broken["task"], dict):
        broken["task"][task_key] = task_value
    decodes_or_rejects(json.dumps({"job": broken, "assigned_ports": {"http": port}}))


@pytest.mark.parametrize(("number", "field"), [
    ("1" + "0" * 5000, "job.max_task_failures"), ("-" + "9" * 4301, "job.max_task_failures"), ("7" * 4400, "instance")])
def test_an_integer_of_more_digits_than_python_reads_is_named_as_the_config_names_it(number, field):
    """`"max_task_failures": 1000...` (5000 digits): json's ValueError said the document "is
    not JSON (Exceeds the limit (4300 digits) for integer string conversion ... use
    sys.set_int_max_str_digits()", naming no field, where a config's `10**5000` is refused
    naming it (`stoker inspect CONFIG` and `--task-info` of its document disagreed)."""
    marker = "123454321"
    data = (with_job(max_task_failures=int(marker)) if field.startswith("job") else doc(instance=int(marker)))
    with pytest.raises(TaskDocumentError) as caught:
        decode(data.replace(marker.encode(), number.encode()))
    assert str(caught.value) == (f"invalid task document: {field} is an integer of more than 4300 digits: more "
                                 "than any count or size a task can use, and more than Python writes as text")
    assert decode(data.replace(marker.encode(), b"1" + b"0" * 4299)).job is not None  # 4300 digits: a number
