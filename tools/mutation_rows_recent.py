"""`make mutation`'s rows from the thirty-second round on (tools/mutation_rows_later.py has
the thirteenth to the thirty-first rounds'; MODULES, tools/mutation_rows.py, lists these
after them). A new round's rows go at the end, under a comment that names the round.
"""
from __future__ import annotations

from mutation_module import ROOT, Module

RECENT_ROWS = (
    # The thirty-second round: modules no row had held (docs/testing.md §4)
    Module("quickargs", "a supervising command's plain words read without argparse",
           ("config/quickargs.py", "config/sourced.py"),
           ("tests/unit/test_quickargs.py", "tests/unit/test_settings.py", "tests/unit/test_disk_settings.py",
            "tests/unit/test_sourced.py")),
    Module("auroraidl", "aurora.thrift read into field tables, the task document's fields",
           ("config/aurora/idl.py", "config/aurora/taskdata.py"),
           ("tests/unit/test_aurora_idl.py", "tests/unit/test_aurora_wire.py", "tests/unit/test_aurora_wire_fields.py",
            "tests/unit/test_aurora_wire_limits.py", "tests/unit/test_aurora_launch.py")),
    Module("journal", "the task's journal: records batched, held while writes fail, a line each",
           ("executor/task/journal.py",),
           (*sorted(str(t.relative_to(ROOT)) for t in (ROOT / "tests/unit").glob("test_owner_*.py")),
            "tests/faults/test_audit_ioerrors_sync.py", "tests/integration/test_journal_records.py",
            "tests/faults/test_audit_limits.py::test_checkpoint_records_written_while_the_disk_is_full_are_kept_until_it_is_not")),
    Module("targets", "which task a command's TARGET names", ("executor/cli/targets.py",),
           ("tests/integration/test_status_cli.py", "tests/integration/test_shared_root.py",
            "tests/integration/test_sandbox_gone_rows.py",
            "tests/integration/test_another_boot.py", "tests/integration/test_tail.py",
            "tests/integration/test_tail_follow_cli.py", "tests/integration/test_targets.py"),
           functions=tuple(f"executor.cli.targets.x_{f}__mutmut_*" for f in (
               "error", "resolve", "_look_up", "_held_elsewhere", "elsewhere", "_kind", "_still_runs", "registered"))),
    Module("viewcache", "a long-lived reader's checkpoint views, kept and gone on from", ("executor/task/viewcache.py",),
           ("tests/integration/test_view_resume.py", "tests/integration/test_view_resume_property.py",
            "tests/integration/test_observe_racy_views.py", "tests/integration/test_observe_ended_views.py",
            "tests/integration/test_view_cache_rules.py")),
    Module("leftovers", "what a crashed supervisor left running, ended before a re-run", ("executor/task/leftovers.py",),
           ("tests/integration/test_another_boot.py", "tests/integration/test_lost_attempt_long_header.py",
            "tests/integration/test_held_file.py", "tests/integration/test_lost_cgroups.py",
            "tests/integration/test_lost_attempts.py")),
    # The thirty-third round: modules no row had held (docs/testing.md §4)
    Module("diskwatch", "the disk-limit check's schedule, sampling thread and lines", ("executor/task/diskwatch.py",),
           ("tests/unit/test_disk_policy.py", "tests/unit/test_owner_disk.py", "tests/integration/test_disk_usage.py",
            "tests/integration/test_disk_watch.py")),
    Module("mounttree", "an image's mounts sealed: the tree read, the unsealed found", ("executor/mesos/mounttree.py",),
           ("tests/unit/test_mounttree.py", "tests/integration/test_image_seal.py")),
    Module("usagelooks", "the observer's looks at a task's CPU and memory", ("executor/observe/usage.py",),
           ("tests/integration/test_usage_looks.py", "tests/integration/test_held_usage.py",
            "tests/integration/test_headless_alive.py", "tests/integration/test_usage_sample.py")),
    # The thirty-fourth round: modules no row had held (docs/testing.md §4)
    Module("transport", "the agent's HTTP connections: each outcome classified, the stream read",
           ("executor/mesos/transport.py",),
           ("tests/integration/test_mesos_transport.py", "tests/integration/test_agent_tls_transport.py",
            "tests/integration/test_agent_tls_files.py", "tests/integration/test_mesos_driver.py",
            "tests/integration/test_mesos_driver_callbacks.py", "tests/integration/test_launch_timeout_race.py",
            "tests/integration/test_transport_answers.py", "tests/unit/test_transport_words.py")),
    Module("spawn", "one run forked: its environment, user, log files and fork", ("executor/procs/spawn.py",),
           ("tests/integration/test_spawn_direct.py", "tests/integration/test_log_root.py",
            "tests/integration/test_supervisor.py", "tests/integration/test_supervisor_kills.py",
            "tests/integration/test_close_raises.py", "tests/integration/test_supervisor_logs.py",
            "tests/integration/test_run_logs.py", "tests/integration/test_run_logs_full_disk.py",
            "tests/integration/test_run_stdio.py",
            "tests/integration/test_fork_exec.py"), subreaper=True),
    Module("containment", "the task's processes: leftovers found, signalled, killed at close",
           ("executor/procs/containment.py",),
           ("tests/integration/test_close_steps.py", "tests/integration/test_close_kill.py",
            "tests/integration/test_close_raises.py", "tests/integration/test_hostile_procs.py",
            "tests/integration/test_supervisor_kills.py", "tests/integration/test_supervisor.py",
            "tests/integration/test_leftover_procs.py", "tests/integration/test_containment.py",
            "tests/integration/test_orphanwalk_unsettled.py", "tests/integration/test_cgroup_v2.py",
            "tests/integration/test_orphan_look.py"), subreaper=True),
    # The thirty-fifth round: the agent's driver and the observer's reader (docs/testing.md §4)
    Module("driver", "the executor driver: the agent's stream read, callbacks posted, why it ended",
           ("executor/mesos/driver.py",),
           ("tests/integration/test_mesos_driver_callbacks.py", "tests/unit/test_mesos_callbacks.py",
            "tests/unit/test_exitby.py", "tests/integration/test_driver_in_process.py")),
    Module("plancache", "`stoker run`'s plan cache: a plan kept, served only while all it hangs on is as it was",
           ("executor/local/plancache.py",),
           ("tests/integration/test_plancache.py", "tests/integration/test_plancache_records.py")),
)
