"""`make mutation`'s rows from the thirteenth round on (tools/mutation_rows.py has the first
twelve rounds' and the notes on what a row's tests may be; its MODULES lists these after them).
A new round's rows go at the end, under a comment that names the round.
"""
from __future__ import annotations

from mutation_module import ROOT, Module, all_but

LATER_ROWS = (
    # The thirteenth round: the code written since that no round had seen (docs/testing.md §4)
    Module("termtext", "a task's output escaped for a terminal", ("executor/procs/terminaltext.py",),
           ("tests/unit/test_terminaltext.py",)),
    Module("logline", "a log line's words and where it goes", ("config/logline.py",),
           # (not its test of the caller's line: mutmut's trampoline is one frame more between them)
           (*all_but("tests/unit/test_log_lines.py", "test_a_line_names_the_code_that_logged_it_not_log_event"),
            "tests/integration/test_console.py",
            "tests/integration/test_journal_stream.py")),
    Module("termmodes", "the terminal's modes kept and put back", ("executor/host/terminalmodes.py",),
           ("tests/integration/test_terminal_modes.py",
            "tests/e2e/test_terminal.py::test_a_terminal_a_task_left_raw_is_put_back_as_the_run_ends"),
           children=True),
    Module("stoproom", "the stop's room, kept and handed to a thread", ("executor/procs/earlyfork.py", "executor/logs.py"),
           ("tests/integration/test_stop_room.py", "tests/integration/test_thread_refusals.py"),
           functions=("executor.procs.earlyfork.x_keep_stop_room__mutmut_*", "executor.procs.earlyfork.x__room_calls__mutmut_*",
                      "executor.procs.earlyfork.x_let_go_stop_room__mutmut_*", "executor.logs.x_start_thread__mutmut_*",
                      "executor.logs.x__reserve_room__mutmut_*"),
           children=True),
    Module("codebundle", "the code bundles' finder and loaders", ("executor/codebundle.py",),
           ("tests/integration/test_codebundle.py", "tests/integration/test_codebundle_damage.py",
            "tests/integration/test_codebundle_paths.py", "tests/integration/test_codebundle_run.py"), children=True),
    Module("runstart", "stoker run's sandbox and start", ("executor/local/runstart.py",),
           ("tests/integration/test_sandbox_above.py", "tests/integration/test_planning.py",
            "tests/integration/test_odd_names.py", "tests/integration/test_local_run.py",
            "tests/unit/test_runstart.py")),
    # The fifteenth round: this session's new rules (docs/testing.md §4)
    Module("registryprune", "the registry's pruning", ("executor/host/registry.py",),
           ("tests/integration/test_registry_letgo.py", "tests/integration/test_registry_pruning.py",
            "tests/integration/test_registry.py"),
           functions=("executor.host.registry.x_prune_some__mutmut_*",
                      "executor.host.registry.x_prune__mutmut_*",
                      "executor.host.registry.x__older_than__mutmut_*", "executor.host.registry.x__named_alive__mutmut_*")),
    Module("registrynames", "registry entries' second names in a shared root",
           ("executor/host/entry.py", "executor/host/registry.py", "executor/host/replacefile.py"),
           ("tests/unit/test_host_entry.py", "tests/integration/test_shared_root.py",
            "tests/integration/test_registry.py"),
           functions=("executor.host.entry.x_entry_name__mutmut_*", "executor.host.entry.x_name_tag__mutmut_*",
                      "executor.host.entry.xǁRegistryEntryǁtagged_name__mutmut_*",
                      "executor.host.entry.xǁRegistryEntryǁnamed__mutmut_*",
                      "executor.host.entry.xǁRegistryEntryǁsame_supervisor__mutmut_*",
                      "executor.host.registry.x__free_name__mutmut_*", "executor.host.registry.x__beside__mutmut_*",
                      "executor.host.registry.xǁRegistryǁ_put__mutmut_*",
                      "executor.host.registry.x__parsed__mutmut_*",
                      "executor.host.replacefile.x_create_file__mutmut_*")),
    Module("stall", "a shell check paused with its supervisor", ("executor/procs/commands.py",),
           (*all_but("tests/faults/test_audit_health_stop.py",  # (not the HTTP check's)
                      "test_an_http_check_in_flight_while_the_supervisor_is_stopped_passes"),
            *(name for name in all_but("tests/integration/test_supervisor.py") if "::test_run_command" in name)),
           functions=("executor.procs.commands.x__follow__mutmut_*", "executor.procs.commands.x__resumed__mutmut_*"),
           children=True, subreaper=True),  # (a Supervisor's reaper: its shell checks' orphans)
    # The seventeenth round: this session's new rules (docs/testing.md §4)
    Module("claimsprune", "the port claims files of earlier boots", ("executor/host/lock.py",),
           ("tests/integration/test_claims_prune.py", "tests/integration/test_registry.py",
            "tests/integration/test_shared_root.py"),
           functions=tuple(f"executor.host.lock.x_{f}__mutmut_*" for f in (
               "claims_made", "_earlier_boot_removed", "recorded_host", "host_line"))),
    Module("checkdeadline", "the TCP and HTTP checks' deadline", ("healthcheck/loopback.py",),
           ("tests/unit/test_check_deadline.py", "tests/integration/test_health_checkers.py"),
           functions=("healthcheck.loopback.xǁDeadlineǁ*__mutmut_*",)),
    Module("closeraises", "a supervisor's close that raises", ("executor/procs/supervisor.py", "executor/procs/exitby.py"),
           ("tests/integration/test_close_raises.py", "tests/integration/test_close_kill.py",
            "tests/integration/test_close_deadline.py"),
           # (`close` and its steps' runner only, `_step` then, `exitby.close_step` since: with the
           # steps, 132 mutants at about 5 a minute on a shared machine)
           functions=("executor.procs.supervisor.xǁSupervisorǁclose__mutmut_*", "executor.procs.exitby.x_close_step__mutmut_*"),
           subreaper=True),  # (a Supervisor's reaper)
    # (not the token's other tests: their child is `stoker executor` whole, whose imports before
    # the hiding one test counts, mutmut's trampoline among them)
    Module("hideearly", "the token hidden first", ("executor/procs/hardening.py",),
           ("tests/faults/test_token.py::test_hide_early_keeps_the_token_for_the_settings_erases_it_and_records_what_it_did",
            "tests/faults/test_token.py::test_the_early_hiding_knows_every_secret_the_settings_know"),
           functions=("executor.procs.hardening.x_hide_early__mutmut_*",), children=True),
    # The eighteenth round: what round 17 left (docs/testing.md §4)
    # (not the two close tests of 2 and 5 s: with them the row ran at about 5 mutants a minute)
    Module("closesteps", "a supervisor's close, step by step", ("executor/procs/supervisor.py", "executor/procs/exitby.py"),
           ("tests/integration/test_close_raises.py", "tests/integration/test_close_deadline.py",
            "tests/integration/test_close_steps.py",
            *all_but("tests/integration/test_close_kill.py",
                      "test_the_close_kills_a_process_forked_before_its_sigkill_while_another_cannot_die",
                      "test_a_run_that_dies_after_its_close_kills_no_child_started_since")),
           # (the steps were the Supervisor's `_close_task`, `_close_threads`, `_close_fds`; but the
           # last, they are exitby.py's since)
           functions=("executor.procs.supervisor.xǁSupervisorǁ_close_fds__mutmut_*",
                      *(f"executor.procs.exitby.x_{f}__mutmut_*" for f in ("close_task", "_kill_and_let_go", "_hand_over"))),
           subreaper=True),  # (a Supervisor's reaper)
    Module("takein", "take_in's move-then-list walk", ("executor/procs/cgrouplife.py",),
           ("tests/integration/test_cgroup_take_in.py",),
           functions=("executor.procs.cgrouplife.x_take_in__mutmut_*", "executor.procs.cgrouplife.xǁ_Walkǁ*__mutmut_*"),
           children=True),
    Module("controlowner", "the control socket's chmod and .stoker's owner",
           ("executor/host/control.py", "executor/host/sandbox.py"),
           ("tests/integration/test_control_bind_planted.py", "tests/integration/test_control_owner_only.py"),
           functions=("executor.host.control.x__owner_only__mutmut_*", "executor.host.control.x__a_socket__mutmut_*",
                      "executor.host.sandbox.x_open_stoker_dir__mutmut_*", "executor.host.sandbox.x__foreign__mutmut_*"),
           children=True),
    # not its tests of the caller's `__future__` features: mutmut's trampoline is the caller then
    Module("compiletext", "a config's text compiled", ("config/compiletext.py",),
           all_but("tests/unit/test_compiletext.py", "test_a_text_compiles_to_the_code_compile_makes",
                    "test_each_example_compiles_to_the_code_compile_makes", "test_without_the_c_function_it_is_compile_itself",
                    "test_the_callers_future_features_are_inherited_as_compile_inherits_them")),
    # The nineteenth round: the agent's routes (agenttls: what decides, not a context or a
    # handshake), the code file's shared values (and the steps since taken out of
    # `tls_settings`, `_parse` and `_write`)
    Module("agenttls", "libprocess' SSL variables and the legacy check", ("executor/mesos/agenttls.py",),
           ("tests/unit/test_agent_route.py", "tests/unit/test_agent_tls_rules.py"),
           functions=tuple(f"executor.mesos.agenttls.x{f}__mutmut_*" for f in (
               "ǁTlsSettingsǁname", "ǁTlsSettingsǁdescribe", "__boolean", "__text", "_tls_settings", "__or",
               "__refuse_empty", "__refuse_mismatched", "_legacy_check", "__same_ip", "__words", "__guess"))),
    Module("agentroute", "the agent's route", ("executor/mesos/agentroute.py",),
           ("tests/unit/test_agent_route.py", "tests/unit/test_agent_ssl_names.py")),
    Module("nodocdumps", "the code file's shared values", ("executor/nodoccode.py",),
           ("tests/unit/test_nodocs_compile.py", "tests/unit/test_nodocs_stream.py"),
           functions=(*(f"executor.nodoccode.x_{f}__mutmut_*" for f in (
               "_parse", "_leaf", "_value", "_occurrences", "_write", "dumps", "_alike")),
               "executor.nodoccode.xǁ_Cursorǁ*__mutmut_*")),
    # The twentieth round: the last stop's new code (the CA directory's entries and the slow
    # lookup's warning, stoker inspect's bounded load, stoker tail's listings, the spool out of
    # logs.py and attrs' steps out of codecache.py, which no row had mutated, the observer's 403)
    Module("agentcadir", "the CA directory's entries and the slow reverse lookup", ("executor/mesos/agenttls.py",),
           ("tests/integration/test_agent_tls_files.py", "tests/integration/test_agent_ca_dir.py",
            *(f"tests/integration/test_agent_tls_transport.py::{name}" for name in (
                "test_a_slow_reverse_dns_lookup_is_one_warning_naming_the_address_and_its_time",
                "test_a_slow_lookup_that_finds_no_name_is_made_again_but_warned_of_once"))),
           functions=tuple(f"executor.mesos.agenttls.x{f}__mutmut_*" for f in (
               "__may_block", "__regular", "_ca_dir_unsafe", "ǁReverseNamesǁ_look_up"))),
    Module("loadbounded", "stoker inspect's load bounded", ("executor/cli/apart.py",),
           ("tests/e2e/test_inspect_apart.py::test_a_config_that_never_finishes_is_stopped_with_the_line_it_was_running",
            "tests/unit/test_inspect_bound.py"),
           functions=("executor.cli.apart.x_load_bounded__mutmut_*",), children=True),
    Module("tailmissing", "stoker tail's kept attempts and processes", ("executor/cli/tail.py", "executor/local/attempts.py"),
           ("tests/integration/test_tail.py",),
           functions=("executor.cli.tail.x__no_log__mutmut_*", "executor.cli.tail.x__others__mutmut_*",
                      "executor.local.attempts.x_kept_numbers__mutmut_*")),
    Module("spool", "stoker run's spool", ("executor/spool.py",),
           ("tests/integration/test_console.py", "tests/integration/test_own_log_full_disk.py",
            "tests/integration/test_run_logs.py", "tests/faults/test_audit_ioerrors_logs.py",
            "tests/integration/test_spool_rules.py")),
    # (five tests of test_codecache.py, each a child that installs the cache, with attrsmethods'
    # children and the steps served in this process: every mutant runs them all; with the
    # whole of test_codecache.py, 18 s a mutant)
    Module("attrssteps", "attrs' steps the code cache serves", ("executor/attrssteps.py",),
           (*(f"tests/integration/test_codecache.py::{name}" for name in (
               "test_a_second_process_serves_every_class_from_the_file_and_they_behave_as_compiled",
               "test_a_traceback_through_a_served_init_names_its_file_and_line",
               "test_the_fields_of_every_class_read_as_attrs_own_from_one_shared_class",
               "test_served_methods_keep_the_globals_they_read_and_no_columns_nor_docstrings",
               "test_attrs_step_without_locals_defines_in_the_globals_it_was_given")),
           "tests/integration/test_attrsmethods.py", "tests/unit/test_attrssteps_serve.py"),
           children=True),
    Module("observerhost", "the observer's refusal of another name", ("executor/observe/routes.py",),
           ("tests/unit/test_observe_routes.py",), functions=("executor.observe.routes.x_route__mutmut_*",)),
    # The twenty-first round: the last stop's new code (the shutdown's cause, whether a health
    # check still runs, tail -f of a removed sandbox, an unanswered control request, observe's
    # stdout, a missing port named once, planahead.collect; agentroute again: ssl_mismatches)
    Module("shutdowncause", "the executor's shutdown and its cause", ("executor/mesos/executor.py", "executor/mesos/process.py"),
           ("tests/unit/test_exitby.py", "tests/unit/test_thermos_flags.py", "tests/unit/test_agent_ssl_names.py",
            "tests/unit/test_shutdown_cause.py"),
           functions=("executor.mesos.executor.xǁStokerExecutorǁshutdown__mutmut_*",
                      "executor.mesos.process.x__wait_for_task__mutmut_*", "executor.mesos.process.x__route__mutmut_*")),
    # (not ps.format_rows: its HEALTH cell is health_shown's; its other lines, unchanged, are the
    # integration tests' of stoker ps)
    Module("healthruns", "whether a health check still runs", ("executor/task/inspectionjson.py", "executor/cli/views.py"),
           ("tests/unit/test_ps_health.py", "tests/unit/test_announce_records.py", "tests/integration/test_checkpoint.py",
            "tests/unit/test_health_shown.py"),
           functions=(*(f"executor.task.inspectionjson.x_{f}__mutmut_*" for f in (
               "check_runs", "health_current", "failed_by_health_check", "health_shown")),
               "executor.cli.views.x__health_lines__mutmut_*")),
    Module("tailremoved", "stoker tail -f of a removed sandbox, and the path it names", ("executor/cli/tail.py",),
           ("tests/integration/test_tail.py", "tests/integration/test_tail_follow_cli.py",
            "tests/integration/test_shared_root.py", "tests/integration/test_status_cli.py"),
           functions=("executor.cli.tail.x_run__mutmut_*", "executor.cli.tail.x__no_log__mutmut_*",
                      *(f"executor.cli.tail.xǁFollowerǁ{f}__mutmut_*" for f in ("follow", "_path", "_removed")))),
    Module("controlanswer", "kill and restart of a supervisor that never answers",
           ("executor/cli/control.py", "executor/host/controlclient.py"),
           ("tests/integration/test_control_unanswered.py", "tests/integration/test_control_paused.py",
            *(f"tests/integration/test_{name}.py" for name in (
                "control_planted", "control_refusals", "another_boot", "held_file", "host_session_starting",
                "shared_root", "status_cli", "control_entry")),
            # (not its two tests whose child is `stoker kill`: mutmut's trampoline there finds no settings)
            *all_but("tests/integration/test_status_trust.py",
                     "test_kill_and_restart_of_a_sandbox_whose_lock_file_names_a_stranger_reach_no_one",
                     "test_kill_of_a_supervisor_whose_lock_file_s_st_dev_is_not_the_one_proc_locks_names")),
           functions=("executor.cli.control.x__first_answer__mutmut_*", "executor.cli.control.x__say_paused__mutmut_*",
                      "executor.cli.control.x__replies__mutmut_*", "executor.host.controlclient.x_ask__mutmut_*")),
    Module("observeunwritten", "observe's address line stdout cannot take", ("executor/cli/observe.py",),
           # (not `run`: its one new branch hands Unwritten on; the rest, unchanged, is observe's e2e tests')
           ("tests/e2e/test_unwritable_output.py::test_observe_whose_address_line_cannot_be_written_says_so_not_that_it_cannot_listen",
            "tests/integration/test_observe_unwritten.py"),
           functions=("executor.cli.observe.xǁUnwrittenǁ*__mutmut_*", "executor.cli.observe.x__when_listening__mutmut_*"),
           children=True),
    Module("missingport", "a missing port named once", ("config/aurora/launch.py",),
           ("tests/unit/test_aurora_launch.py",), functions=("config.aurora.launch.x__unbound_message__mutmut_*",)),
    Module("plancollect", "the planning child's answer collected", ("executor/local/planahead.py",),
           ("tests/integration/test_planning_interrupted.py", "tests/integration/test_plan_collect.py",
            *(f"tests/integration/test_planning.py::{name}" for name in (
                "test_a_config_error_comes_back_as_the_same_error",
                "test_a_bug_in_planning_and_a_killed_child_are_errors_that_say_so"))),
           functions=("executor.local.planahead.x_collect__mutmut_*",), children=True),
    # The twenty-second round: this session's new code (a sparse log's holes in the observer,
    # the registry's files read as no task, a type with its article, an older entry's deleted sandbox)
    Module("logholes", "the observer's log range over a sparse log's holes",
           ("executor/observe/logread.py", "executor/observe/logrange.py", "executor/observe/logpage.py"),
           ("tests/integration/test_observe_sparse_log.py", "tests/integration/test_observe_log_chunk.py",
            "tests/unit/test_observe_logrange.py",
            "tests/unit/test_observe_pages.py", "tests/integration/test_observe_reused_sandbox.py",
            "tests/integration/test_observe_server.py"),
           functions=(*(f"executor.observe.logread.x_{f}__mutmut_*" for f in (
               "chunk", "_read", "shown", "_one_run", "hole_before")),
               "executor.observe.logrange.x_first_shown__mutmut_*", "executor.observe.logpage.x__pager__mutmut_*")),
    Module("notread", "the registry's files read as no task, and a type with its article",
           ("executor/host/registrylookup.py", "executor/observe/metrics.py", "config/words.py"),
           ("tests/integration/test_registry_junk.py", "tests/unit/test_metrics_families.py",
            "tests/unit/test_loader_errors.py", "tests/unit/test_records.py"),
           functions=("executor.host.registrylookup.x_not_read_line__mutmut_*",
                      "executor.observe.metrics.x_observer_families__mutmut_*", "config.words.x_a_kind__mutmut_*")),
    Module("unreadgone", "an unread checkpoint's deleted sandbox", ("executor/task/inspection.py",),
           ("tests/integration/test_sandbox_gone_rows.py", "tests/integration/test_unread_checkpoint.py",
            "tests/integration/test_status_attempts.py",
            "tests/integration/test_registry.py"),
           # (children: test_unread_checkpoint.py's test as nobody reads it in a forked child)
           functions=("executor.task.inspection.x__unread__mutmut_*",), children=True),
    # The twenty-third round: code no row had covered, chosen by risk (the Aurora payload's
    # reading, the checkpoint's reading, the Mesos updates' sender, the operator's requests)
    Module("aurorawire", "the Aurora payload's Thrift read", ("config/aurora/wire.py",),
           ("tests/unit/test_aurora_wire.py", "tests/unit/test_aurora_idl.py",
            "tests/unit/test_aurora_wire_fields.py")),
    Module("checkpointread", "the checkpoint's reading", ("executor/task/checkpoint.py", "executor/procs/saferead.py"),
           # (not the tests whose child is `stoker status` or reads with no descriptor left:
           # mutmut's trampoline there finds no settings)
           ("tests/integration/test_checkpoint.py", "tests/integration/test_pinned_writes.py",
            *all_but("tests/integration/test_checkpoint_compaction.py",
                     "test_a_first_compaction_with_no_descriptor_left_fails_and_is_done_later"),
            *all_but("tests/faults/test_audit_checkpoint.py",
                     "test_stoker_status_skips_a_record_with_an_out_of_range_number_and_warns",
                     "test_every_out_of_range_record_at_once"),
            "tests/integration/test_view_resume_property.py", "tests/integration/test_observe_racy_views.py",
            "tests/integration/test_checkpoint_reading.py"),
           functions=(*(f"executor.task.checkpoint.x_{f}__mutmut_*" for f in (
               "_failed", "_open_dir", "open_checkpoint", "open_checkpoint_in", "records_at", "iter_records",
               "read_records")),
               *(f"executor.procs.saferead.x_{f}__mutmut_*" for f in ("iter_lines", "_carried", "_hole_ahead")))),
    # (not test_mesos_driver.py: its driver runs in a child, echo_executor.py)
    Module("sender", "the Mesos updates' and messages' sender", ("executor/mesos/sender.py",),
           # (test_mesos_session.py: the new tests' session events)
           ("tests/integration/test_mesos_driver_callbacks.py", "tests/unit/test_mesos_sender.py",
            "tests/unit/test_mesos_session.py")),
    Module("operatorrequests", "the operator's kill and restart requests", ("executor/task/operator.py",),
           (*sorted(str(t.relative_to(ROOT)) for t in (ROOT / "tests/unit").glob("test_owner_*.py")),
            "tests/unit/test_operator_requests.py")),
    # The twenty-fourth round: this session's new rules (docs/testing.md §4)
    Module("noroom", "a check, a start and a failed task with no descriptor left",
           ("healthcheck/base.py", "executor/procs/earlyfork.py", "executor/mesos/reporter.py"),
           ("tests/faults/test_audit_limits_fds.py", "tests/integration/test_health_checkers.py",
            "tests/unit/test_start_errors.py",
            "tests/integration/test_mesos_driver_callbacks.py::"
            "test_the_reporter_sends_each_update_and_knows_once_a_terminal_one_went"),
           functions=("healthcheck.base.x__no_thread_is_a_failure__mutmut_*", "executor.procs.earlyfork.x_unnamed__mutmut_*",
                      "executor.procs.earlyfork.x_failed_in__mutmut_*",
                      "executor.mesos.reporter.xǁMesosReporterǁon_update__mutmut_*"),
           children=True),
    Module("earlygiveup", "an early start given up, and what comes next said",
           ("executor/local/runstart.py",), ("tests/unit/test_runstart.py",),
           functions=("executor.local.runstart.xǁRunStartǁgive_up_early__mutmut_*",
                      "executor.local.runstart.xǁRunStartǁclose__mutmut_*")),
    Module("markerscan", "a scan for markers that misses no process mid-exec",
           ("executor/procs/proctree.py", "executor/procs/pidsignal.py"),
           ("tests/integration/test_proc_environ_exec.py", "tests/integration/test_leftover_procs.py",
            "tests/integration/test_lost_cgroups.py"),
           functions=("executor.procs.proctree.x_scan_markers__mutmut_*",
                      "executor.procs.pidsignal.x_settled_environ__mutmut_*")),
    # (the checkpoint's writer, round 23's reading's other half; not the tests that read with
    # no descriptor left or whose child is `stoker status`: as `checkpointread`)
    Module("checkpointwrite", "the checkpoint's writer", ("executor/task/checkpoint.py",),
           ("tests/integration/test_checkpoint.py", "tests/integration/test_pinned_writes.py",
            *all_but("tests/integration/test_checkpoint_compaction.py",
                     "test_a_first_compaction_with_no_descriptor_left_fails_and_is_done_later"),
            *all_but("tests/faults/test_audit_checkpoint.py",
                     "test_stoker_status_skips_a_record_with_an_out_of_range_number_and_warns",
                     "test_every_out_of_range_record_at_once"),
            *all_but("tests/faults/test_audit_limits.py"), "tests/integration/test_checkpoint_writer.py"),
           functions=(*(f"executor.task.checkpoint.x_{f}__mutmut_*" for f in (
               "_dup", "open_append", "sync_error", "wrote_line", "open_writer", "_with_wall", "json_line")),
               "executor.task.checkpoint.xǁCheckpointWriterǁ*")),
    # The twenty-fifth round: two modules no row had held (docs/testing.md §4)
    Module("loader", "a config's load and its checks", ("config/loader.py",),
           ("tests/unit/test_loader.py", "tests/unit/test_loader_validation.py", "tests/unit/test_loader_errors.py",
            "tests/unit/test_config_text.py", "tests/unit/test_plan.py", "tests/unit/test_bound_job.py",
            "tests/unit/test_template_bounds.py", "tests/unit/test_document.py", "tests/unit/test_templates.py",
            "tests/unit/test_aurora_launch.py", "tests/unit/test_thermos_flags.py", "tests/unit/test_compiletext.py",
            "tests/unit/test_inspect.py", "tests/unit/test_loader_rules.py",
            *all_but("tests/unit/test_config_warnings.py",  # (their child loads a config under mutmut's trampoline)
                     "test_alone_the_config_s_own_warning_is_shown_never_raised_and_the_filters_put_back",
                     "test_a_child_forked_beside_another_thread_is_alone_and_shows_the_config_s_warning",
                     "test_a_thread_just_started_by_start_new_thread_is_counted"))),
    Module("httpcheck", "the HTTP health check", ("healthcheck/http_check.py",),
           ("tests/integration/test_health_checkers.py", "tests/unit/test_checker_factories.py",
            "tests/integration/test_http_check_answers.py",
            *all_but("tests/integration/test_loopback_connect.py",  # (with no descriptor left mutmut's own lookup fails)
                     "test_a_socket_stoker_cannot_open_is_said_so_not_called_an_unreachable_loopback"))),
    Module("plan", "a job's plan for `stoker run`: its ports, notes and warnings", ("config/plan.py",),
           ("tests/unit/test_plan.py", "tests/unit/test_config_text.py", "tests/integration/test_plancache.py",
            "tests/integration/test_loopback_ports.py")),
    Module("diskusage", "a sandbox's disk usage, walked", ("executor/task/diskusage.py",),
           ("tests/integration/test_disk_usage.py",)),
    Module("aurorabinary", "Aurora's TBinaryProtocol bytes sniffed and bounded", ("config/aurora/binary.py",),
           ("tests/unit/test_aurora_wire_limits.py", "tests/unit/test_aurora_wire.py", "tests/unit/test_aurora_idl.py",
            "tests/unit/test_aurora_wire_words.py")),
    Module("purity", "whether a config's text alone decides its plan (the plan cache's judgement)", ("config/purity.py",),
           ("tests/unit/test_purity.py", "tests/unit/test_config_text.py", "tests/unit/test_plan.py",
            "tests/integration/test_plancache.py")),
    # The twenty-sixth round: modules no row had held (docs/testing.md §4)
    Module("document", "the task document in TaskInfo.data", ("config/document.py",),
           ("tests/unit/test_document.py", "tests/unit/test_document_words.py", "tests/unit/test_inspect.py",
            "tests/unit/test_loader.py", "tests/unit/test_mesos_updates.py", "tests/unit/test_aurora_launch.py")),
    Module("helpers", "Thermos' task helpers (order, SequentialTask, Tasks, Units, Options)",
           ("config/schema/helpers.py",),
           ("tests/unit/test_schema.py", "tests/unit/test_schema_shared.py", "tests/unit/test_loader.py",
            "tests/unit/test_thermos_helpers.py")),
    Module("zookeeper", "where and how a task announces in ZooKeeper", ("config/zookeeper.py",),
           ("tests/unit/test_announcer_config.py", "tests/unit/test_serverset.py")),
    Module("turnaway", "the observer's 503 for a connection that finds no descriptor left",
           ("executor/observe/deadline.py",),
           ("tests/integration/test_observe_turn_away.py", "tests/integration/test_observe_no_descriptor.py"),
           # (the deadline's and the room-making's own: their tests take their time, 190 mutants
           # at about 2 a minute; the next round's)
           functions=tuple(f"executor.observe.deadline.{name}__mutmut_*" for name in (
               "xǁRoomMakingServerǁ_turn_away", "xǁRoomMakingServerǁaccept", "xǁRoomMakingServerǁclose",
               "x__discard", "x__spare"))),
    Module("definition", "why a task's definition is shown or not (the observer's read of task.json)",
           ("executor/task/definition.py",),
           ("tests/integration/test_definition_reads.py", "tests/integration/test_observe_server.py",
            "tests/integration/test_pinned_writes.py", "tests/integration/test_observe_ended_views.py"),
           functions=tuple(f"executor.task.definition.x_{name}__mutmut_*" for name in (
               "read_definition", "_unwritten", "_of_another", "_read", "_deeper_than", "_read_capped"))),
    # The twenty-seventh round: modules no row had held (docs/testing.md §4)
    Module("typedtree", "plain trees into schema structs, each wrong field named", ("config/typed_tree.py",),
           ("tests/unit/test_schema.py", "tests/unit/test_template_bounds.py", "tests/unit/test_document.py",
            "tests/unit/test_document_words.py", "tests/unit/test_loader.py", "tests/unit/test_loader_errors.py",
            "tests/unit/test_typed_tree_words.py")),
    Module("explain", "what went wrong while a config ran, in one line", ("config/explain.py",),
           ("tests/unit/test_loader_errors.py", "tests/unit/test_config_text.py", "tests/unit/test_loader.py",
            "tests/unit/test_loader_rules.py", "tests/unit/test_config_error_words.py")),
    Module("lifecycle", "a graceful kill's HTTP lifecycle", ("executor/task/lifecycle.py",),
           ("tests/integration/test_lifecycle.py",
            *all_but("tests/integration/test_loopback_connect.py",  # (those two run it in a child)
                     "test_a_socket_stoker_cannot_open_is_said_so_not_called_an_unreachable_loopback",
                     "test_a_socket_denied_for_ipv6_alone_still_says_127_0_0_1_refused"))),
    # The twenty-eighth round: modules no row had held (docs/testing.md §4)
    Module("orderproblems", "the order graph's problems, each in one sentence", ("config/orderproblems.py",),
           ("tests/unit/test_order.py", "tests/unit/test_loader_validation.py", "tests/unit/test_planner_rules.py")),
    Module("events", "the task's events and states, an exit status described", ("executor/events.py",),
           ("tests/unit/test_records.py", "tests/unit/test_owner_machine.py", "tests/unit/test_process_rules.py",
            "tests/unit/test_service_rules.py", "tests/unit/test_task_status.py", "tests/unit/test_planner.py",
            "tests/unit/test_planner_rules.py", "tests/unit/test_owner_table.py", "tests/unit/test_mesos_updates.py",
            "tests/unit/test_oomkill.py", "tests/unit/test_restart.py", "tests/unit/test_runfacts.py",
            "tests/unit/test_exit_status.py")),
    Module("rotation", "a rotated log's files: the one held, the one after it", ("executor/procs/rotation.py",),
           ("tests/integration/test_run_logs.py", "tests/integration/test_observe_log_chunk.py",
            "tests/integration/test_observe_follow_steps.py", "tests/integration/test_rotation_files.py")),
    Module("cpulook", "the observer's model: a CPU look, a log range as JSON", ("executor/observe/model.py",),
           ("tests/integration/test_usage_looks.py", "tests/unit/test_observe_pages.py",
            "tests/integration/test_observe_log_chunk.py", "tests/unit/test_task_usage.py",
            "tests/unit/test_observe_model.py")),
    Module("tailparts", "`stoker tail`'s lines of a rotated log", ("executor/cli/tailparts.py",),
           ("tests/integration/test_tail.py", "tests/integration/test_tail_parts.py")),
    Module("observehtml", "the observer's pages' frame, escaping, tables and links", ("executor/observe/html.py",),
           ("tests/unit/test_observe_pages.py", "tests/unit/test_observe_state_colours.py",
            "tests/unit/test_ps_health.py", "tests/unit/test_restart_view.py",
            "tests/integration/test_observe_log_chunk.py", "tests/integration/test_observe_sparse_log.py",
            "tests/integration/test_observe_usage.py", "tests/unit/test_observe_html.py")),
    Module("operatorpath", "the sandbox an operator's path names, no other user's symlink followed",
           ("executor/host/operatorpath.py",),
           ("tests/integration/test_control_planted.py::test_root_s_kill_does_not_follow_a_user_s_symlink_to_another_user_s_sandbox",
            "tests/integration/test_control_planted.py::test_the_operator_s_path_resolves_as_the_kernel_resolves_it",
            "tests/integration/test_operator_path.py")),
    Module("configerrors", "the configuration errors: a value shown, problems listed", ("config/errors.py",),
           ("tests/unit/test_loader_errors.py", "tests/unit/test_loader_validation.py", "tests/unit/test_bind.py",
            "tests/unit/test_plan.py", "tests/unit/test_thermos_flags.py", "tests/unit/test_announcer_config.py",
            "tests/unit/test_aurora_launch.py", "tests/unit/test_document_words.py", "tests/unit/test_config_errors.py")),
)
