"""Hypothesis strategies for task documents (TaskInfo.data): valid, odd and broken ones.

Owns `documents()`, which draws one `Case`: the bytes of a task document, the port numbers
a TaskInfo's `ports` resource would offer, and the kind of fault it carries. It starts from a
generated valid job (processes, order constraints, health, lifecycle, templates, ports) and
applies at most one fault: wrong types, missing fields, huge strings, deep nesting, bad
templates, bad ports, unknown keys, odd-but-valid values, or junk bytes. Pure: no I/O.
"""
from __future__ import annotations

import json
from typing import Any

import attrs
from hypothesis import strategies as st

KINDS = ("valid", "odd_values", "wrong_type", "missing_field", "unknown_key", "huge_string",
         "deep_nesting", "bad_template", "bad_ports", "junk_bytes")

PORT_NAMES = ("http", "health", "admin", "a.b", "x-y", "p_1")
GOOD_REFS = ("{{thermos.task_id}}", "{{thermos.user}}", "{{mesos.instance}}", "{{mesos.hostname}}",
             "{{role}}", "{{environment}}", "{{cluster}}", "{{name}}", "{{&thermos.task_id}}")
BAD_TEMPLATES = (
    "{{", "}}", "{{}}", "{{ }}", "{{thermos.ports[}}", "{{thermos.ports[]}}", "{{thermos.ports}}",
    "{{thermos.ports.http}}", "{{thermos.ports[http]", "{{thermos.ports[http]}}}}", "{{{{x}}}}",
    "{{nope.never}}", "{{mesos.instance.x}}", "{{thermos}}", "{{thermos.ports[a b]}}",
    "{{thermos.ports[http][0]}}", "{{x[}}", "{{.}}", "{{..}}", "{{[0]}}", "{{a..b}}", "{{1abc}}",
    "<<thermos.ports[>>", "<<nope.never>>", "{{task.processes[0].cmdline}}", "{{processes[99].name}}",
    "{{name}}{{{{name}}}}", "{{&}}", "{{#x}}{{/x}}", "{{^x}}", "{{thermos.ports[{{x}}]}}",
    "{{thermos.ports[\u00e9]}}", "{{thermos.ports[../x]}}", "\x00{{x}}", "{{" * 50,
)
JUNK_TEXTS = (b"", b"null", b"[]", b"0", b"\"job\"", b"{", b"}", b"{}", b"{\"job\": null}",
              b"{\"job\": []}", b"{\"job\": {}}", b"NaN", b"\xef\xbb\xbf{}", b"{\"job\": {\"task\": 1}}",
              b"{\"job\": {}, \"job\": 1}", b"1" * 5000, b"{\"instance\": " + b"9" * 5000 + b"}",
              b"\xff" * 16, b"{\"job\": \"\\ud800\"}", "{\"job\": \"\u2028\"}".encode())
INT_FIELDS = ("max_failures", "max_concurrency", "max_task_failures", "instance",
              "max_consecutive_failures", "min_consecutive_successes", "backups", "log_size")
FLOAT_FIELDS = ("min_duration", "finalization_wait", "initial_interval_secs", "interval_secs",
                "timeout_secs", "graceful_shutdown_wait_secs", "shutdown_wait_secs")


@attrs.frozen(repr=False)
class Case:
    data: bytes
    offered_ports: tuple[int, ...]
    kind: str

    def __repr__(self) -> str:  # short, also in Hypothesis' falsifying examples
        return f"Case({self.describe()})"

    def describe(self) -> str:
        head = self.data[:300]
        more = f" ... ({len(self.data)} bytes)" if len(self.data) > 300 else ""
        return f"{self.kind}: {head!r}{more} offered ports {list(self.offered_ports)}"


# ---- a valid job ----

safe_names = st.from_regex(r"\A[a-z0-9_][a-z0-9_.-]{0,11}\Z")
identifiers = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,9}\Z")
port_names = st.sampled_from(PORT_NAMES)
port_numbers = st.integers(1024, 65535)


@st.composite
def cmdlines(draw) -> str:
    pieces = draw(st.lists(st.one_of(
        st.sampled_from(["echo hi", "sleep 1", "exit 3", "cat <<EOF\nx\nEOF", "a << b >> c", "true"]),
        st.text(max_size=12),
        port_names.map("{{{{thermos.ports[{}]}}}}".format),
        port_names.map("<<thermos.ports[{}]>>".format),
        st.sampled_from(GOOD_REFS),
    ), min_size=1, max_size=4))
    return " ".join(pieces)


@st.composite
def loggers(draw) -> dict:
    logger = {"destination": draw(st.sampled_from(["file", "console", "both", "none"])),
              "mode": draw(st.sampled_from(["standard", "rotate"]))}
    if draw(st.booleans()):
        logger["rotate"] = {"log_size": draw(st.integers(1, 10**9)), "backups": draw(st.integers(1, 10))}
    return logger


@st.composite
def processes(draw, name: str) -> dict:
    proc: dict[str, Any] = {"name": name, "cmdline": draw(cmdlines())}
    optional = {
        "max_failures": st.integers(0, 5), "daemon": st.booleans(), "ephemeral": st.booleans(),
        "min_duration": st.floats(0, 10), "final": st.booleans(), "logger": loggers(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            proc[key] = draw(strategy)
    return proc


@st.composite
def health_configs(draw) -> dict:
    checker = draw(st.one_of(
        st.builds(lambda e, r, c: {"http": {"endpoint": e, "expected_response": r,
                                            "expected_response_code": c}},
                  st.sampled_from(["/health", "/", "/a?b=c"]), st.sampled_from(["ok", "", "OK "]),
                  st.sampled_from([0, 200, 204])),
        cmdlines().map(lambda c: {"shell": {"shell_command": c}}),
        st.just({"tcp": {}}),
    ))
    return {
        "initial_interval_secs": draw(st.floats(0, 100)),
        "interval_secs": draw(st.floats(0.01, 100)),
        "timeout_secs": draw(st.floats(0.01, 10)),
        "max_consecutive_failures": draw(st.integers(0, 5)),
        "min_consecutive_successes": draw(st.integers(0, 5)),
        "health_checker": checker,
    }


@st.composite
def valid_documents(draw) -> dict:
    names = draw(st.lists(safe_names, min_size=1, max_size=4, unique=True))
    procs = [draw(processes(n)) for n in names]
    task: dict[str, Any] = {"processes": procs,
                            "resources": {"cpu": 0.1, "ram": 1024, "disk": 1024}}
    if draw(st.booleans()):
        task["name"] = draw(safe_names)
    if len(names) > 1 and draw(st.booleans()):
        task["constraints"] = [{"order": draw(st.permutations(names))[:draw(st.integers(2, len(names)))]}]
    for key, strategy in (("max_failures", st.integers(0, 3)), ("max_concurrency", st.integers(0, 4)),
                          ("finalization_wait", st.floats(0, 60))):
        if draw(st.booleans()):
            task[key] = draw(strategy)
    job: dict[str, Any] = {"task": task, "role": draw(identifiers), "environment": draw(identifiers),
                           "cluster": draw(identifiers)}
    if draw(st.booleans()):
        job["name"] = draw(identifiers)
    if draw(st.booleans()):
        job["service"] = draw(st.booleans())
    if draw(st.booleans()):
        job["max_task_failures"] = draw(st.integers(-1, 5))
    if draw(st.booleans()):
        job["health_check_config"] = draw(health_configs())
    lifecycle = draw(st.sampled_from(["default", "none", "other port"]))
    if lifecycle == "none":
        job["lifecycle"] = {}
    elif lifecycle == "other port":
        job["lifecycle"] = {"http": {"port": draw(port_names), "graceful_shutdown_wait_secs": 0.5,
                                     "shutdown_wait_secs": 0.5}}
    doc: dict[str, Any] = {"job": job}
    if draw(st.booleans()):
        doc["instance"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):
        doc["assigned_ports"] = draw(st.dictionaries(port_names, port_numbers, max_size=4))
    return doc


# ---- faults ----

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node below the root, as key paths (dict keys and list indices)."""
    found = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        found.append(prefix + (key,))
        found.extend(_paths(value, prefix + (key,)))
    return found


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: Any, path: tuple, value: Any) -> None:
    _get(tree, path[:-1])[path[-1]] = value


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


def _leaves_of(doc: dict, want: type) -> list[tuple]:
    return [p for p in _paths(doc) if isinstance(_get(doc, p), want) and not isinstance(_get(doc, p), bool)]


@st.composite
def _fault(draw, doc: dict, kind: str) -> bytes:
    paths = _paths(doc)
    if kind == "wrong_type":
        path = draw(st.sampled_from(paths))
        old = _get(doc, path)
        _set(doc, path, draw(json_values.filter(lambda v: type(v) is not type(old))))
    elif kind == "missing_field":
        dict_paths = [p for p in paths if isinstance(_get(doc, p[:-1]), dict)]
        path = draw(st.sampled_from(dict_paths))
        del _get(doc, path[:-1])[path[-1]]
    elif kind == "unknown_key":
        containers = [()] + [p for p in paths if isinstance(_get(doc, p), dict)]
        where = _get(doc, draw(st.sampled_from(containers)))
        where[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif kind == "huge_string":
        strings = _leaves_of(doc, str) or [("job", "role")]
        size = draw(st.sampled_from([10**4, 10**5, 10**6, 3 * 10**6, 5 * 10**6]))
        char = draw(st.sampled_from(["a", "{", "\u00e9", "\U0001f600", " ", "\\", "<"]))
        _set(doc, draw(st.sampled_from(strings)), char * (size // len(char.encode())))
    elif kind == "deep_nesting":
        path = draw(st.sampled_from(paths))
        _set(doc, path, "__FAULTS_DEEP__")
        depth = draw(st.sampled_from([10, 100, 1000, 10**4, 10**5]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"job":', "}")]))
        nested = (opener * depth + "0" + closer * depth).encode()
        return _dump(doc).replace(b'"__FAULTS_DEEP__"', nested, 1)
    elif kind == "bad_template":
        strings = _leaves_of(doc, str) or [("job", "role")]
        bad = draw(st.sampled_from(BAD_TEMPLATES))
        path = draw(st.sampled_from(strings))
        old = _get(doc, path)
        _set(doc, path, draw(st.sampled_from([bad, old + " " + bad, bad + old])))
    elif kind == "bad_ports":
        junk = st.one_of(st.sampled_from([-1, 0, 65536, 10**20, 1.5, "80", None, True, [], {}, "",
                                          float("nan")]), port_numbers)
        names = st.one_of(port_names, st.text(max_size=6))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            doc["assigned_ports"] = draw(st.dictionaries(names, junk, min_size=1, max_size=4))
        elif choice == 1:
            doc["assigned_ports"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        else:
            doc["assigned_ports"] = draw(st.dictionaries(names, port_numbers, max_size=2))
    elif kind == "odd_values":
        for path in paths:
            key = path[-1]
            if key in INT_FIELDS and draw(st.integers(0, 3)) == 0:
                _set(doc, path, draw(st.sampled_from([-1, -(2**63), 2**63, 10**30, 0, True, "7", 7.0])))
            elif key in FLOAT_FIELDS and draw(st.integers(0, 3)) == 0:
                _set(doc, path, draw(st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1.0, float("nan"),
                                                      float("inf"), "1.5", 2**70])))
            elif isinstance(_get(doc, path), str) and draw(st.integers(0, 5)) == 0:
                _set(doc, path, draw(st.sampled_from(["", " ", "\u202e", "\ud800", "\t\n", "%s%n",
                                                      "$(reboot)", "`id`", "\\", "\x00", "null"])))
    return _dump(doc)


@st.composite
def _junk(draw) -> bytes:
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(st.sampled_from(JUNK_TEXTS))
    valid = _dump(draw(valid_documents()))
    if choice == 2:  # truncated
        return valid[:draw(st.integers(0, max(0, len(valid) - 1)))]
    if choice == 3:  # one byte replaced
        at = draw(st.integers(0, len(valid) - 1))
        return valid[:at] + bytes([draw(st.integers(0, 255))]) + valid[at + 1:]
    return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b" \t\n"])) + \
        (valid.decode().encode("utf-16") if draw(st.booleans()) else valid)


@st.composite
def documents(draw, kinds: tuple[str, ...] = KINDS) -> Case:
    """One task document with at most one kind of fault, and the offered ports."""
    kind = draw(st.sampled_from(kinds))
    offered = tuple(draw(st.lists(port_numbers, max_size=6, unique=True)))
    if kind == "junk_bytes":
        return Case(draw(_junk()), offered, kind)
    doc = draw(valid_documents())
    data = _dump(doc) if kind == "valid" else draw(_fault(doc, kind))
    return Case(data, offered, kind)

