"""One host's view of its tasks: what lets an operator list, inspect and control them.

- `registry`, `entry`: the host registry (`$STOKER_ROOT`), one entry per supervisor;
  `truth`: the truth about a task whose supervisor may be gone (`truth.judge`: LOST).
- `lock`: one supervisor per sandbox (`flock` on `.stoker/supervisor.lock`).
- `control`, `controlwire`: the control socket `.stoker/control.sock` (`stoker kill`,
  `stoker restart`), served by a thread that only parses requests and posts them.
- `session`: a supervisor's hold on its sandbox (lock, entry, socket), shared by the
  front-end and the task owner; `identity`: a process by pid and start time; `sandbox`:
  the names under `.stoker/`; `clock`: dates for people; `replacefile`: a small file
  written whole and renamed into place (the registry's entries, the plan cache's files),
  and whether another user could redirect the path of their directory.

Pure: `entry`, `truth`, `controlwire`. May import: procs, events, logs, config/. Never: task,
local, mesos, cli (the task package imports this one).
"""
