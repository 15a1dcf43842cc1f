"""The modules `make mutation` mutates (tools/mutation.py): one row each (tools/mutation_module.py's
`Module`), with its sources, the tests that state its rules and how they run (in child processes,
as a subreaper). Here the first twelve rounds' rows; those of the thirteenth to the thirty-first
rounds are in tools/mutation_rows_later.py, and from the thirty-second on, a new round's too, in
tools/mutation_rows_recent.py (MODULES lists them after these, in that order).

A row's tests and sources are copied into `.mutation/SLUG/` with tools/mutation.py's COPIED.
"""
from __future__ import annotations

from mutation_module import ROOT, Module, all_but
from mutation_rows_later import LATER_ROWS
from mutation_rows_recent import RECENT_ROWS

AUDIT_MEMORY = "tests/faults/test_audit_memory.py::"  # (the twelfth round's MemoryError rows)
AUDIT_MEMORY_SUPERVISOR = "tests/faults/test_audit_memory_supervisor.py::"  # (its reaper, relay and move)
AUDIT_MEMORY_HEALTH = "tests/faults/test_audit_memory_health.py::"


# A file a module's tests read beyond COPIED goes into COPIED. Tests that run the module in a
# child process count for nothing here, unless the module says `children=True`: mutmut maps a
# test to the functions it calls in its own process only. With it, every test of the module
# runs against every mutant (slower), and its children run the mutated copy; not a child under
# unshare or another user that cannot read it (why the disk walk, diskusage.py, is not here).
MODULES = (
    Module("health", "health policy", ("healthcheck/policy.py",),
           ("tests/unit/test_health_policy.py", "tests/unit/test_health_numbers.py")),
    Module("service", "stoker run service rules", ("executor/local/service.py",),
           ("tests/unit/test_service_rules.py",)),
    Module("templates", "template binding", ("config/templates.py", "config/refs.py", "config/bind.py",
                                             "config/portmap.py"),
           ("tests/unit/test_templates.py", "tests/unit/test_bind.py", "tests/unit/test_bound_job.py",
            "tests/unit/test_template_bounds.py", "tests/unit/test_portmap.py")),
    Module("order", "order graph", ("config/order.py",),
           ("tests/unit/test_order.py", "tests/unit/test_loader.py", "tests/unit/test_loader_errors.py",
            "tests/unit/test_loader_validation.py")),
    Module("planner", "process planner", ("executor/task/planner.py",),
           ("tests/unit/test_planner.py", "tests/unit/test_planner_stopping.py",
            "tests/unit/test_planner_decisions.py", "tests/unit/test_planner_rules.py",
            "tests/unit/test_process_rules.py", "tests/unit/test_restart.py",
            "tests/unit/test_planner_daemons.py")),
    Module("rules", "process rules", ("executor/task/process_rules.py", "executor/task/plans.py"),
           ("tests/unit/test_planner.py", "tests/unit/test_planner_stopping.py",
            "tests/unit/test_planner_decisions.py", "tests/unit/test_planner_rules.py",
            "tests/unit/test_process_rules.py", "tests/unit/test_restart.py")),
    Module("kill", "kill sequence", ("executor/task/kill.py",), ("tests/unit/test_kill.py",)),
    Module("status", "task status machine", ("executor/task/status.py",),
           ("tests/unit/test_task_status.py", "tests/unit/test_announce_records.py")),
    Module("checkpoint", "checkpoint records, replay and task view",
           ("executor/task/records.py", "executor/task/recordfields.py", "executor/task/replay.py",
            "executor/task/taskview.py"),
           ("tests/unit/test_records.py", "tests/unit/test_replay.py",
            "tests/unit/test_announce_records.py", "tests/unit/test_restart_view.py")),
    Module("session", "Mesos session", ("executor/mesos/session.py",),
           ("tests/unit/test_mesos_stream.py", "tests/unit/test_mesos_updates.py",
            "tests/unit/test_mesos_session.py")),
    Module("recordio", "RecordIO", ("executor/mesos/recordio.py",),
           ("tests/unit/test_recordio.py", "tests/unit/test_mesos_stream.py",
            "tests/unit/test_mesos_updates.py", "tests/unit/test_mesos_session.py")),
    Module("wire", "Mesos wire format", ("executor/mesos/wire.py",),
           ("tests/unit/test_mesos_stream.py", "tests/unit/test_mesos_updates.py",
            "tests/unit/test_mesos_session.py")),
    Module("jsonprefix", "JSON prefix reader", ("executor/mesos/jsonprefix.py",),
           ("tests/unit/test_jsonprefix.py", "tests/unit/test_mesos_stream.py",
            "tests/unit/test_mesos_updates.py", "tests/unit/test_mesos_session.py")),
    Module("reconnect", "reconnect policy", ("executor/mesos/reconnect.py",),
           ("tests/unit/test_mesos_reconnect.py",)),
    Module("compaction", "checkpoint compaction", ("executor/task/compaction.py",),
           ("tests/unit/test_compaction.py",)),
    Module("serverset", "ServerSet member planner", ("executor/task/serverset.py",),
           ("tests/unit/test_serverset.py",)),
    Module("membership", "ZooKeeper membership machine", ("executor/task/membership.py",),
           ("tests/unit/test_membership.py",)),
    Module("controlwire", "control socket protocol", ("executor/host/controlwire.py",),
           ("tests/unit/test_controlwire.py",)),
    Module("entry", "registry entry and a task's truth", ("executor/host/entry.py", "executor/host/truth.py"),
           ("tests/unit/test_host_entry.py", "tests/unit/test_restart_view.py",
            # what came since in entry.py: the claims file's name, the taker of a sandbox, the
            # registry's listing order
            "tests/integration/test_claims_prune.py", "tests/integration/test_replaced_rows.py",
            "tests/integration/test_registry.py")),
    Module("runfacts", "runs' pids and exits", ("executor/task/runfacts.py",),
           ("tests/unit/test_runfacts.py",)),
    Module("words", "words and printable text", ("config/words.py",),
           ("tests/unit/test_words.py",)),
    Module("disklimit", "disk-limit policy", ("executor/task/disklimit.py",),
           ("tests/unit/test_disk_policy.py", "tests/unit/test_owner_disk.py")),
    Module("usage", "task usage figures", ("executor/task/usagefigures.py", "executor/observe/taskusage.py"),
           ("tests/unit/test_usage_figures.py", "tests/unit/test_task_usage.py")),
    Module("usagefile", "usage file", ("executor/task/usagefile.py",),
           ("tests/integration/test_usage_file.py",)),
    Module("containerizer", "mesos-containerizer command line", ("executor/mesos/containerizer.py",),
           ("tests/unit/test_containerizer.py",)),
    Module("callbacks", "Mesos callback table", ("executor/mesos/callbacks.py",),
           ("tests/unit/test_mesos_callbacks.py",)),
    Module("imageusers", "image's user database", ("executor/mesos/imageusers.py",),
           ("tests/integration/test_image_hostile.py",)),
    Module("killing", "the owner's kill", ("executor/task/killing.py",),
           ("tests/unit/test_owner_table.py", "tests/unit/test_owner_disk.py", "tests/unit/test_owner_announcing.py",
            "tests/unit/test_owner_kill_lines.py", "tests/unit/test_owner_orderings.py",  # (its `Held`)
            "tests/unit/test_owner_checkpoint.py")),
    Module("executorsettings", "stoker executor's settings", ("config/executorsettings.py",),
           ("tests/unit/test_settings.py", "tests/unit/test_thermos_flags.py", "tests/unit/test_disk_settings.py",
            "tests/unit/test_announcer_config.py")),
    Module("loopback", "loopback connect", ("healthcheck/loopback.py",),
           ("tests/unit/test_loopback_reason.py", "tests/integration/test_health_checkers.py",
            *(f"tests/integration/test_loopback_connect.py::{name}" for name in (  # not its child's tests
                "test_a_task_that_accepts_and_resets_is_not_tried_on_ipv6_nor_called_refused",
                "test_in_this_process_a_socket_it_cannot_open_is_no_socket_with_its_error",
                "test_no_time_left_is_a_timeout_before_any_try")))),
    Module("exposition", "Prometheus text format", ("executor/observe/exposition.py",),
           ("tests/unit/test_exposition.py", "tests/unit/test_metrics_families.py")),
    Module("metrics", "/metrics families", ("executor/observe/metrics.py",),
           ("tests/unit/test_metrics_families.py", "tests/unit/test_metrics_samples.py", "tests/unit/test_exposition.py",
            "tests/integration/test_observe_metrics.py", "tests/integration/test_observe_metrics_leftovers.py",
            "tests/integration/test_observe_metrics_window.py")),
    Module("pidsignal", "one signal to one process", ("executor/procs/pidsignal.py",),
           ("tests/integration/test_pidsignal.py",)),
    Module("readyfd", "s6's --ready-fd", ("executor/host/readyfd.py",),
           ("tests/unit/test_readyfd.py",)),
    Module("sdnotify", "systemd's sd_notify", ("executor/host/sdnotify.py",),
           ("tests/unit/test_sdnotify.py",)),
    Module("leftoverprocs", "a LOST task's leftover processes", ("executor/task/leftoverprocs.py",),
           ("tests/integration/test_leftover_procs.py", "tests/integration/test_observe_metrics_leftovers.py")),
    Module("oomkill", "the OOM killer's claim", ("executor/procs/oomkill.py",),
           ("tests/unit/test_oomkill.py", "tests/integration/test_oom_explained_late.py",
            "tests/integration/test_oom_shield.py"), subreaper=True),
    # The seventh round (docs/testing.md §4): modules whose tests run them in child processes too
    Module("ended", "how a stoker run attempt ended", ("executor/local/ended.py",),
           tuple(f"tests/integration/test_local_run.py::{name}" for name in (
               "test_an_internal_error_stops_the_processes_and_ends_the_run_with_a_line_and_70",
               "test_an_internal_error_as_the_owner_closes_is_logged_with_its_traceback",
               "test_an_operator_kill_before_the_first_attempt_ends_the_run_with_a_line",
               "test_a_failing_service_keeps_the_first_and_the_last_attempts_logs"))),
    Module("codecachewarm", "the code cache's warm step", ("executor/codecachewarm.py",),
           (*(f"tests/integration/test_codecache.py::{name}" for name in (
               "test_warm_keeps_only_the_sources_a_start_uses", "test_warm_refuses_an_unknown_profile")),
            "tests/integration/test_codecache_planning.py::"
            "test_the_planning_child_serves_the_config_language_from_its_own_file"), children=True),
    Module("untrusted", "a path no other user can change", ("executor/host/replacefile.py",),
           ("tests/integration/test_trusted_path.py", "tests/integration/test_sandbox_above.py",
            "tests/integration/test_registry.py"),
           functions=tuple(f"executor.host.replacefile.x_{f}__mutmut_*" for f in (
               "trusted_path", "untrusted_level", "_next_level")), children=True),
    Module("codecachedir", "the code cache's directory", ("executor/nodocs.py",),
           ("tests/integration/test_trusted_path.py",
            "tests/integration/test_codecache_files.py::test_a_directory_others_may_write_is_not_used",
            "tests/integration/test_codecache.py::test_off_or_a_relative_directory_leaves_attrs_alone"),
           functions=("executor.nodocs.x_cache_dir__mutmut_*", "executor.nodocs.x__only_ours__mutmut_*"),
           children=True),
    Module("deferred", "modules loaded at their first read", ("executor/deferred.py",),
           ("tests/unit/test_deferred_annotations.py",
            # not the tests of inspect, locale, tokenize, token, ipaddress and platform deferred:
            # mutmut's trampoline in every mutated module imports them first
            *(f"tests/integration/test_deferred.py::{name}" for name in (
                "test_a_deferred_module_runs_at_its_first_read_once",
                "test_a_deferred_module_whose_load_failed_loads_at_the_next_read",
                "test_a_thread_reading_while_another_loads_waits_for_the_load",
                "test_a_read_of_the_loading_thread_itself_is_an_attribute_error",
                "test_a_deferred_module_reloaded_is_loaded_and_runs_no_more", "test_a_failed_load_leaves_none_of_its_names",
                "test_an_exception_logged_with_no_descriptor_left_keeps_its_traceback",
                "test_dir_of_a_deferred_module_loads_it_and_lists_its_names")),
            *(f"tests/integration/test_deferred_served.py::{name}" for name in (
                "test_an_implementation_sys_does_not_name_is_platform_s_own_answer",
                "test_the_implementation_sys_names_is_platform_s_name_for_it",
                "test_a_served_function_imported_before_its_module_loaded_pickles_as_the_module_s_own_after",
                "test_attrs_loads_without_its_validators_and_a_config_that_reads_them_loads_them",
                "test_a_config_that_uses_attrs_validators_converters_and_filters_at_import_loads_them"))),
           children=True),
    Module("attrsmethods", "attrs classes' shared methods", ("executor/attrsmethods.py",),
           ("tests/integration/test_attrsmethods.py",), children=True),
    Module("launchfirst", "a first run's early start", ("executor/cli/launchfirst.py",),
           ("tests/e2e/test_early_start_first.py", "tests/e2e/test_plan_ahead.py",
            "tests/integration/test_planning_json.py",
            *(f"tests/integration/test_planning.py::{name}" for name in (
                "test_a_plan_made_ahead_is_the_plan_made_late",
                "test_a_run_with_other_settings_than_the_plan_made_ahead_cancels_it",
                "test_the_supervisor_loads_its_own_modules_while_the_child_plans_and_stops_once_it_answered",
                "test_words_that_may_not_start_early_start_nothing_and_load_nothing_while_the_child_plans",
                "test_with_another_thread_running_no_child_is_forked_ahead",
                "test_with_no_descriptor_left_for_its_pipe_no_child_is_forked_ahead"))),
           children=True),
    # The eighth round (docs/testing.md §4): the plan made ahead, its plain form, the schema's
    # shared table of types, a config's JSON form, compiling without docstrings, a lost attempt's cgroup
    Module("planahead", "the plan made ahead's handle", ("executor/local/planahead.py",),
           ("tests/integration/test_planahead.py", *(f"tests/integration/test_planning.py::{name}" for name in (
               "test_a_plan_made_ahead_is_the_plan_made_late",
               "test_a_run_with_other_settings_than_the_plan_made_ahead_cancels_it",
               "test_the_supervisor_loads_its_own_modules_while_the_child_plans_and_stops_once_it_answered",
               "test_the_child_forked_ahead_sends_the_plan_before_it_judges_the_config_closed",
               "test_a_child_forked_ahead_that_fails_to_plan_sends_no_plan_first",
               "test_the_bound_on_the_config_s_code_ends_once_the_child_forked_ahead_sent_the_plan"))),
           children=True),
    Module("planform", "a plan's plain form", ("executor/local/planform.py",),
           ("tests/unit/test_planform.py", "tests/unit/test_plan.py", "tests/integration/test_plancache.py")),
    # (mutmut sees only what runs during a test, not config.schema's own import: the tests
    # that make a schema again are the ones that count)
    Module("schemashared", "the schema's shared table of types", ("config/schema/shared.py",),
           ("tests/unit/test_schema_shared.py",)),
    Module("jsonconfig", "a config's JSON form", ("config/jsonconfig.py",),
           ("tests/unit/test_loader.py", "tests/unit/test_config_text.py", "tests/unit/test_plan.py")),
    Module("nodoccode", "compiling without docstrings", ("executor/nodoccode.py",),
           ("tests/unit/test_nodocs_compile.py", "tests/unit/test_nodocs_stream.py")),
    # The ninth round: the walk by directory descriptors, the lost attempts' cgroups (whole
    # markers, the whole module), the uid guard of the kill by marker and of `stoker status`'s
    # split of leftovers, and `make`'s venv
    Module("lostcgroups", "a lost attempt's cgroup", ("executor/procs/cgrouplost.py",),
           ("tests/integration/test_lost_cgroups.py", "tests/integration/test_lost_cgroups_holding.py",
            "tests/faults/test_marker_trust.py", "tests/integration/test_cgroup_v2.py::test_a_lost_attempt_s_cgroup_is_one_named_so_never_a_path_its_marker_leads_to"),
           children=True),
    Module("cgroupwalk", "a cgroup tree's walk by descriptors", ("executor/procs/cgroupwalk.py",),
           ("tests/unit/test_cgroupwalk.py", "tests/integration/test_lost_cgroups.py")),
    Module("markeruid", "the kill by marker's uid guard", ("executor/procs/proctree.py",
                                                          "executor/task/leftoverprocs.py"),
           ("tests/integration/test_lost_cgroups.py", "tests/faults/test_marker_trust.py"),
           functions=("executor.procs.proctree.x__owned_directly__mutmut_*",
                      "executor.task.leftoverprocs.x_by_user__mutmut_*",
                      "executor.task.leftoverprocs.x__in_its_cgroup__mutmut_*"), children=True),
    # (not its test of two makes at once: its child runs the mutant, which may install into
    # the venv that runs mutmut)
    Module("makevenv", "make's venv", ("tools/make_venv.py",),
           tuple(f"tests/integration/test_make_venv.py::{name}" for name in (
               "test_a_venv_left_without_pip_or_whose_python_is_gone_is_made_again_with_why",
               "test_a_venv_of_a_python_too_old_or_not_the_one_given_is_made_again",
               "test_a_venv_made_is_made_with_pip_the_checkout_and_the_code_cache_then_stamped",
               "test_a_venv_of_another_python_with_same_python_is_made_again_and_said_why",
               "test_a_stamp_older_than_setup_py_is_not_fresh", "test_a_step_that_fails_ends_with_its_status_and_no_stamp",
               "test_a_python_too_old_or_that_does_not_run_makes_no_venv_and_says_which_to_give",
               "test_remove_takes_a_venv_s_link_or_file_but_not_where_the_link_leads",
               "test_a_make_waiting_for_another_says_so_once_and_goes_on_once_it_is_done",
               "test_main_makes_nothing_for_a_stamped_venv_of_its_checkout",
               "test_a_venv_whose_python_answers_the_probe_otherwise_is_made_again",
               "test_a_venv_without_a_python_at_all_is_made_again", "test_a_python_3_11_makes_the_venv",
               "test_its_help_names_it_as_make_runs_it",
               "test_make_silent_reads_the_one_letter_flags_of_makeflags_first_word"))),
    # The tenth round: the executor's exit time, the walk that re-reads the orphans' list, the
    # OOM kill count (the held file)
    Module("exitby", "the executor's exit time", ("executor/procs/exitby.py",),
           ("tests/unit/test_exitby.py", "tests/unit/test_exitby_clock.py"),  # (not the close's steps moved in since: `closesteps`' row)
           functions=("executor.procs.exitby.x_within__mutmut_*", "executor.procs.exitby.x__empty__mutmut_*",
                      "executor.procs.exitby.xǁExitByǁ*__mutmut_*", "executor.procs.exitby.xǁWakingǁ*__mutmut_*")),
    Module("orphanwalk", "a walk that misses no orphan", ("executor/procs/orphanwalk.py",),
           ("tests/integration/test_orphanwalk_unsettled.py",
            *(f"tests/integration/test_containment.py::{name}" for name in (
                "test_a_walk_finds_the_children_of_a_process_that_exits_as_it_is_read",
                "test_a_walk_with_no_root_reads_the_orphans_list_no_second_time"))), subreaper=True),
    # (not its test of a counter alive as Python ends: mutmut's trampoline in the child's
    # `__del__` then reads a config gone already, "Exception ignored" on its stderr)
    Module("oomcount", "the OOM kill count", ("executor/procs/oomcount.py",),
           (*all_but("tests/unit/test_oomkill.py",
                      "test_a_held_counter_alive_as_the_interpreter_ends_closes_its_file_without_a_word"),
            "tests/integration/test_oom_count_held.py", "tests/integration/test_oom_explained_late.py",
            "tests/integration/test_oom_shield.py"), subreaper=True),
    # The eleventh round: what the day's third session changed (docs/testing.md §4)
    Module("parseport", "--port's NAME=NUMBER", ("config/settings.py",), ("tests/unit/test_settings.py",),
           functions=("config.settings.x_parse_port__mutmut_*", "config.settings.x_parse_ports__mutmut_*")),
    Module("portmap", "a task's portmap", ("config/portmap.py",),
           ("tests/unit/test_portmap.py", "tests/unit/test_templates.py", "tests/unit/test_bound_job.py")),
    Module("console", "stoker run's console", ("executor/local/console.py",),
           ("tests/integration/test_console.py", "tests/integration/test_console_stderr.py",
            "tests/integration/test_journal_stream.py")),
    Module("noroom", "what could not be had, in one line", ("executor/logs.py",),
           ("tests/faults/test_audit_memory.py::test_a_thread_or_memory_refused_for_the_address_space_limit_names_that_limit",
            "tests/faults/test_audit_memory.py::test_a_memory_error_with_no_limit_in_force_is_a_bug_s_and_under_one_the_host_s",
            "tests/faults/test_audit_memory.py::test_no_room_says_which_limit_a_thread_or_descriptor_met_and_nothing_of_another_error",
            "tests/faults/test_audit_memory.py::test_the_address_space_is_this_process_s_limit_and_its_vmsize_in_bytes",
            "tests/integration/test_denied_calls.py::test_where_clone3_is_refused_the_error_names_it"),
           functions=tuple(f"executor.logs.x_{f}__mutmut_*" for f in (
               "no_room", "address_space", "_kib", "address_space_full")), children=True),
    Module("readied", "a run readied ahead and never started", ("executor/procs/sandboxfs.py", "executor/local/attempts.py"),
           ("tests/integration/test_readied_runs.py", "tests/integration/test_ready_ahead_killed.py",
            "tests/integration/test_attempt_logs.py"),
           functions=("executor.procs.sandboxfs.x_readied__mutmut_*", "executor.local.attempts.x_archive_logs__mutmut_*",
                      "executor.local.attempts.x__drop_readied*__mutmut_*"),
           children=True),
    Module("portlimit", "the port picker's descriptor limit", ("executor/local/planfiles.py",),
           # (not the test of hundreds of ports: its child's environment is cleared, without the mutant's name)
           ("tests/integration/test_loopback_ports.py::"
            "test_the_soft_descriptor_limit_is_raised_by_the_sockets_held_within_the_hard_one_then_put_back",),
           functions=("executor.local.planfiles.x__widened__mutmut_*", "executor.local.planfiles.x__narrowed__mutmut_*"),
           children=True),
    # (the kill's hold: what came after a kill began waits for the planner's decision on it)
    Module("killhold", "the owner's hold after a kill", ("executor/task/owner.py", "executor/task/killing.py"),
           (*sorted(str(t.relative_to(ROOT)) for t in (ROOT / "tests/unit").glob("test_owner_*.py")),
            # the owner over a real checkpoint: the held list and the watchdog's pid it keeps beside it
            *(f"tests/integration/test_held_file.py::{name}" for name in (
                "test_the_owner_writes_the_list_into_the_stoker_dir_it_opened_not_the_one_at_its_path",
                "test_the_owner_writes_its_watchdogs_pid_for_the_figures_with_nothing_held"))),
           functions=(*(f"executor.task.owner.xǁTaskOwnerǁ{f}__mutmut_*" for f in (
               "step", "close", "_decide", "_dispatch", "_kill")),
               "executor.task.killing.xǁHeldǁ*__mutmut_*")),
    # The twelfth round: what the day's third session changed that no round saw (docs/testing.md §4)
    Module("minimums", "ram and disk of 1 MiB at least", ("config/spec.py",), ("tests/unit/test_loader_errors.py",),
           functions=("config.spec.x_submission_problems__mutmut_*",)),
    Module("endsas", "the KILLING record's end", ("executor/task/records.py", "executor/task/taskview.py",
                                                  "executor/host/truth.py"),
           ("tests/unit/test_records.py", "tests/unit/test_replay.py", "tests/unit/test_host_entry.py",
            "tests/unit/test_task_status.py", "tests/unit/test_observe_pages.py", "tests/unit/test_restart_view.py"),
           functions=("executor.task.records.x__ends_as__mutmut_*", "executor.task.records.xǁTaskRecordǁ*__mutmut_*",
                      "executor.task.taskview.xǁAttemptViewǁended_state__mutmut_*", "executor.host.truth.x_judge__mutmut_*")),
    Module("turnlock", "a turn's lock waited for within a bound", ("executor/host/turnlock.py",),
           ("tests/integration/test_turnlock.py",
            "tests/integration/test_thread_refusals.py::test_no_thread_to_wait_with_gives_up_the_turn_at_once_and_the_descriptor"),
           children=True),
    Module("threadstart", "a thread started only with room for it", ("executor/logs.py",),
           ("tests/faults/test_audit_memory.py::test_a_thread_or_memory_refused_for_the_address_space_limit_names_that_limit",
            "tests/faults/test_audit_memory.py::test_a_memory_error_with_no_limit_in_force_is_a_bug_s_and_under_one_the_host_s",
            "tests/faults/test_audit_memory.py::test_no_room_says_which_limit_a_thread_or_descriptor_met_and_nothing_of_another_error",
            "tests/faults/test_audit_memory.py::test_a_memory_error_under_strict_overcommit_or_with_no_setting_to_read_is_the_host_s",
            "tests/integration/test_denied_calls.py::test_where_clone3_is_refused_the_error_names_it",
            "tests/integration/test_thread_refusals.py"),
           functions=tuple(f"executor.logs.x_{f}__mutmut_*" for f in (
               "start_thread", "thread_stack_bytes", "room_for_thread", "_no_room_for_thread", "no_thread",
               "memory_refused")), children=True),
    # A MemoryError that ends no thread (ulimit -v): one row a module, each against its own tests
    Module("memreaper", "the reaper's retry after a MemoryError", ("executor/procs/reaper.py",),
           (f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_in_the_reaper_s_wait_does_not_end_the_hearing_of_exits",
            f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_after_the_kernel_reaped_a_run_still_posts_its_exit"),
           functions=tuple(f"executor.procs.reaper.xǁReaperǁ{f}__mutmut_*" for f in ("_loop", "_resume", "_dispatch")),
           children=True),
    Module("memrelay", "the signal relay after a MemoryError", ("executor/host/signals.py",),
           (f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_in_the_signal_relay_s_read_does_not_end_the_relay",
            f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_in_a_signal_s_reaction_and_its_line_does_not_end_the_relay",
            # the functions' older rules: each signal once, in order; a failing reaction's line
            *all_but("tests/integration/test_signal_relay.py",
                      "test_the_executor_keeps_its_strays_ignored_once_its_relay_closes")),
           functions=tuple(f"executor.host.signals.xǁSignalRelayǁ{f}__mutmut_*" for f in ("_relay", "_call")),
           children=True),
    Module("memhealth", "the health loop after a MemoryError", ("healthcheck/loop.py",),
           (f"{AUDIT_MEMORY_HEALTH}test_a_memory_error_in_the_health_loop_fails_that_attempt_and_the_loop_goes_on",
            f"{AUDIT_MEMORY_HEALTH}test_a_memory_error_as_the_health_loop_hands_a_result_on_and_logs_it_does_not_end_it",
            "tests/integration/test_health_loop.py"),  # (the functions' older rules: spacing, stop, callback errors)
           functions=tuple(f"healthcheck.loop.xǁHealthLoopǁ{f}__mutmut_*" for f in ("_run", "_deliver")),
           children=True),
    Module("memmove", "the cgroup move cut by a MemoryError", ("executor/procs/cgrouplife.py",),
           (f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_in_the_move_into_the_task_s_cgroup_is_a_failed_move",
            f"{AUDIT_MEMORY_SUPERVISOR}test_a_memory_error_in_the_early_start_s_move_is_a_failed_move_and_its_cgroup_goes",
            "tests/e2e/test_early_cgroup.py"),  # (the functions' older rules: a move refused, the early runs taken in)
           functions=("executor.procs.cgrouplife.xǁ*ǁ_enter__mutmut_*",), children=True),
    Module("memline", "the host-shortage line of a command", ("executor/cli/main.py",),
           (f"{AUDIT_MEMORY}test_a_memory_error_in_the_executor_s_owner_fails_the_task_and_ends_with_one_line",
            "tests/e2e/test_deleted_workdir.py", "tests/e2e/test_closed_stdout.py"),  # (its older paths)
           functions=("executor.cli.main.x__handled__mutmut_*",), children=True),
    *LATER_ROWS,  # the thirteenth round to the thirty-first
    *RECENT_ROWS,  # the thirty-second round on
)
