"""A task's use against its reservation (`executor/task/usagefigures.py`): the percent math,
Thermos' names in JSON, what a record that is missing or damaged gives (never a 0), and the
text `stoker status` and the observer's page show, including its reasons. Pure."""
from __future__ import annotations

import pytest

from executor.host.clock import iso_time
from executor.task.usagefigures import (
    DiskSample,
    Live,
    UsageRecord,
    duration,
    figure_rows,
    figures,
    figures_json,
    percent,
    size_text,
    usage_record,
)

MB = 1024 * 1024
NOW = 10_000.0
THERMOS = {"cpu_used", "cpu_reserved", "cpu_percent", "ram_used", "ram_reserved", "ram_percent",
           "disk_used", "disk_reserved", "disk_percent"}
LIVE = Live(0.25, 32 * MB, basis="since the previous look")


def record(**kw) -> UsageRecord:
    fields = {"cpu": 0.5, "ram_bytes": 128 * MB, "disk_bytes": 64 * MB, "check_secs": 60.0}
    fields.update(kw)
    return UsageRecord(**fields)


def test_percent_is_used_over_reserved_to_a_tenth_and_unknown_without_either():
    assert percent(1, 3) == 33.3
    assert percent(48 * MB, 64 * MB) == 75.0
    assert percent(3.0, 2.0) == 150.0  # over its reservation: said, not capped
    assert percent(None, 2.0) is None and percent(1, None) is None and percent(1, 0) is None


def test_json_has_thermos_names_with_their_values_and_the_samples_age():
    sample = DiskSample(16 * MB, wall=NOW - 30.0, secs=0.012, files=7)
    doc = figures_json(figures(record(sample=sample), "", LIVE), NOW)
    assert THERMOS <= set(doc)
    assert (doc["cpu_used"], doc["cpu_reserved"], doc["cpu_percent"]) == (0.25, 0.5, 50.0)
    assert (doc["ram_used"], doc["ram_reserved"], doc["ram_percent"]) == (32 * MB, 128 * MB, 25.0)
    assert (doc["disk_used"], doc["disk_reserved"], doc["disk_percent"]) == (16 * MB, 64 * MB, 25.0)
    assert doc["disk_sampled"] == NOW - 30.0 and doc["disk_sample_age_secs"] == 30.0
    assert doc["disk_sample_secs"] == 0.012 and doc["disk_note"] is None
    assert doc["cpu_basis"] == "since the previous look"


def test_without_a_sample_disk_is_null_never_zero_and_the_reason_says_why():
    cases = {
        "disk-limit check is off": record(check_secs=None),
        "reserves no disk": record(check_secs=None, disk_bytes=None),
        "the first is under way": record(),
        "cannot be read: EACCES": record(error="the sandbox cannot be read: EACCES"),
    }
    for words, rec in cases.items():
        f = figures(rec, "", LIVE)
        doc = figures_json(f, NOW)
        assert doc["disk_used"] is None and doc["disk_percent"] is None, words
        assert words in doc["disk_note"]
        disk = figure_rows(f, NOW)[2]
        assert disk[1] == "-" and disk[3] == "-" and words in disk[4]


def test_a_sample_kept_after_a_failed_one_is_shown_with_the_failure():
    rec = record(sample=DiskSample(MB, NOW - 90.0, 2.5), error="internal error: boom")
    disk = figure_rows(figures(rec, "", LIVE), NOW)[2]
    assert disk[1] == "1.0 MiB" and disk[4] == ("sampled 1m30s ago, took 2.5s; the last sample "
                                                "failed: internal error: boom")


def test_no_record_and_no_live_trees_leave_every_used_figure_unknown():
    f = figures(None, "no usage record: why", Live(None, None, note="the task ended (KILLED)"))
    doc = figures_json(f, NOW)
    assert all(doc[k] is None for k in THERMOS)
    assert doc["disk_note"] == "no usage record: why" and doc["cpu_note"] == "the task ended (KILLED)"
    rows = figure_rows(f, NOW)
    assert [r[1] for r in rows] == ["-", "-", "-"] and rows[0][4] == "the task ended (KILLED)"


def test_text_rows_read_as_used_of_reserved():
    f = figures(record(sample=DiskSample(3 * MB // 2, NOW - 5.0, 0.0034)), "", LIVE)
    assert figure_rows(f, NOW) == [
        ("cpu", "0.25", "0.50", "50%", "cores; since the previous look"),
        ("ram", "32.0 MiB", "128.0 MiB", "25%", ""),
        ("disk", "1.5 MiB", "64.0 MiB", "2.3%", "sampled 5.0s ago, took 3 ms"),
    ]


def test_a_record_is_read_only_with_fields_of_their_types():
    good = {"cpu_reserved": 1, "ram_reserved": MB, "disk_reserved": 2 * MB, "disk_check_secs": 60.0,
            "disk_sample": {"used_bytes": 10, "files": 1, "unreadable": 0, "secs": 0.1, "wall": 5.0},
            "disk_error": ""}
    assert usage_record(good) == UsageRecord(1, MB, 2 * MB, 60.0, DiskSample(10, 5.0, 0.1, 1, 0))
    assert usage_record(dict(good, disk_sample=None, cpu_reserved=None)) == UsageRecord(None, MB, 2 * MB, 60.0)
    for bad in ({"ram_reserved": 1.5}, {"cpu_reserved": True}, {"disk_reserved": -1},
                {"cpu_reserved": float("nan")}, {"disk_error": 3}, {"disk_sample": [1]},
                {"ram_reserved": 10**400},  # no float holds it: OverflowError, was
                {"disk_sample": dict(good["disk_sample"], used_bytes="10")}):
        assert usage_record(dict(good, **bad)) is None, bad


GIB = 1024 * MB


def test_sizes_and_durations_read_as_people_read_them():
    assert [size_text(n) for n in (None, 0, 1023, 1024, 1536, 5 * MB, 3 * GIB, 5000 * GIB)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB", "5000.0 GiB"]  # GiB the largest
    assert [duration(s) for s in (0.0034, 0.999, 1.0, 1.5, 125.0)] == ["3 ms", "999 ms", "1.0s", "1.5s", "2m05s"]


def test_json_of_a_record_with_everything_is_each_field_under_its_name():
    sample = DiskSample(16 * MB, wall=NOW - 30.2504, secs=0.012, files=7)
    rec = record(sample=sample, error="the sandbox cannot be read: EACCES", unverified="owned by uid 7")
    doc = figures_json(figures(rec, "", Live(0.12345, MB, basis="since the previous look")), NOW)
    assert doc == {
        "cpu_used": 0.123, "cpu_reserved": 0.5, "cpu_percent": 24.6,
        "ram_used": MB, "ram_reserved": 128 * MB, "ram_percent": 0.8,
        "disk_used": 16 * MB, "disk_reserved": 64 * MB, "disk_percent": 25.0,
        "cpu_basis": "since the previous look", "cpu_note": None,
        "disk_sampled": NOW - 30.2504, "disk_sampled_iso": iso_time(NOW - 30.2504),
        "disk_sample_age_secs": 30.25, "disk_sample_secs": 0.012, "disk_check_secs": 60.0, "disk_note": None,
        "disk_error": "the sandbox cannot be read: EACCES", "unverified": "owned by uid 7"}
    ahead = figures_json(figures(record(sample=DiskSample(1, NOW + 5.0, 0.1)), "", LIVE), NOW)
    assert ahead["disk_sample_age_secs"] == 0.0  # the wall clock stepped back since: no negative age


def test_json_without_a_record_or_a_cpu_figure_is_null_not_empty():
    doc = figures_json(figures(None, "no usage record: why", Live(None, MB, basis="since start", note="n")), NOW)
    assert {k: doc[k] for k in ("cpu_basis", "disk_check_secs", "disk_error", "unverified", "disk_sampled_iso")} \
        == dict.fromkeys(("cpu_basis", "disk_check_secs", "disk_error", "unverified", "disk_sampled_iso"))


@pytest.mark.parametrize("rec, note", [
    (record(check_secs=None, disk_bytes=None),
     "not sampled: the task reserves no disk (Resources.disk), so the disk-limit check is off"),
    (record(check_secs=None), "not sampled: the disk-limit check is off for this task (--disk-limit on turns it on)"),
    (record(), "no sample yet: the first is under way"),
    (record(error="boom"), "no sample yet: boom"),
])
def test_the_disk_note_says_why_there_is_no_figure_in_these_words(rec, note):
    assert figures(rec, "", LIVE).disk_note == note


def test_text_rows_say_cores_and_what_is_unverified():
    f = figures(record(unverified="owned by uid 7"), "", Live(0.25, MB))
    rows = figure_rows(f, NOW)
    assert rows[0][4] == "cores"
    assert rows[2][4] == "no sample yet: the first is under way; unverified: owned by uid 7"


def test_a_sample_is_read_only_with_each_of_its_fields_whole_and_there():
    whole = {"used_bytes": 10, "files": 1, "unreadable": 2, "secs": 0.1, "wall": 5.0}
    doc = {"disk_reserved": MB, "disk_sample": whole, "disk_error": "x" * 2000}
    assert usage_record(doc) == UsageRecord(None, None, MB, None, DiskSample(10, 5.0, 0.1, 1, 2), error="x" * 1000)
    assert usage_record({"disk_reserved": 1.5}) is None
    for key in whole:
        assert usage_record({"disk_sample": {k: v for k, v in whole.items() if k != key}}) is None, key
    for key in ("used_bytes", "files", "unreadable"):
        assert usage_record({"disk_sample": dict(whole, **{key: 1.5})}) is None, key
