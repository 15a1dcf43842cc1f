"""The watchdog's shell script and its environment, with the standard library only, so that
the early start (`executor/cli/launch.py`) can start a watchdog before the rest of Stoker is
loaded. What the script does, and how the supervisor keeps it, is `watchdog.py`'s to say;
the early start's spawn of it (`spawn_watchdog`, by `posix_spawn` as `earlyfork` starts the
runs) and its `retire` line, which ends it once the supervisor's own has taken over, are here.

Arguments: the task marker, the task's cgroup directory and how to kill it (`kill`,
`freeze`, `freezer`; both empty without one), a cgroup to move itself to first, and the
number of the descriptor its list of held processes arrives on (empty: none). Its stdin is
a pipe only the supervisor writes: at EOF it kills the task; the one line `retire` ends it
without killing anything (a watchdog started early, once the supervisor's own has taken
over); a line `cgroup HOW DIR` names the task's cgroup and how to kill it in place of
arguments 2 and 3: HOW empty before the supervisor makes it (so that a supervisor killed
as it makes it leaves none: nothing entered it yet, so it is only removed, if empty, never
killed), both empty when it was not made (a directory someone else made first). The list (`PID:START` words, lines read only at EOF, through `/proc/self/fd`: dash
redirects single-digit descriptors only) names processes it kills too, each only while
`/proc/PID/stat` still shows that start time and no zombie, and it may signal it. It moves
to `/` first: `posix_spawn` has no working directory of its own, and the watchdog holds no
sandbox's (a mount kept busy, a directory kept from being removed).

The script is written readable, with its comments and indentation, and shipped without
either (`WATCHDOG_SCRIPT`, `shipped`): the shell keeps its text for its whole life, in its
environment and in `eval`'s copy: 3.9 KB instead of 7.0, the watchdog's USS under dash at
N=100 132 → 124 KiB, PSS 212 → 201 (medians of 8 interleaved pairs, lower in 8 of 8). bash
reads both into the same program (tests/integration/test_watchdog_shells.py).
"""
from __future__ import annotations

import os

from executor.procs.earlyfork import POPEN_DEFAULTS

CGROUP_SECS = 10  # the script's bound for the task's cgroup to empty and go (its `until`)


def shipped(source: str) -> str:
    """`source` as the watchdog gets it: each line without its indentation and its comment
    (from a ` #` on: a word starting with `#`, which no line of the script has in quotes),
    and no line left empty."""
    return "\n".join(filter(None, [(" " + line).split(" #", 1)[0].strip() for line in source.splitlines()])) + "\n"


# Written readable, shipped without comments nor indentation (`shipped`): only the shipped
# form is kept (the readable text is a constant of the module's code, dropped once it ran)
WATCHDOG_SCRIPT = shipped(r"""
cd /
trap '' INT TERM HUP
[ -n "$4" ] && echo $$ > "$4/cgroup.procs" 2>/dev/null
cg=$2 how=$3
while IFS= read -r _line; do
  case $_line in retire) exit 0 ;; "cgroup "*) _l=${_line#cgroup }; how=${_l%% *} cg=${_l#* } ;; esac
done
if [ -n "$cg" ] && [ -z "$how" ]; then  # named before it was made, then no word: none entered it
  rmdir "$cg" 2>/dev/null; cg=
fi
entry="STOKER_TASK_MARKER=$1" held=
[ -n "$5" ] && while read -r _line; do held="$held $_line"; done < /proc/self/fd/$5
alive() {  # the held processes still alive as themselves: pid and start time, not zombies (Z with
  live=     # one thread: Z with more is a process whose first thread exited, alive), and that
  # it may signal (not a setuid program's that took another user's id)
  for h in $held; do
    kill -0 ${h%:*} 2>/dev/null || continue
    { read -r st < /proc/${h%:*}/stat; } 2>/dev/null || continue
    set -- ${st##*) }
    { [ "$1" != Z ] || [ "${18}" -gt 1 ] 2>/dev/null; } && [ "${20}" = "${h#*:}" ] && live="$live ${h%:*}"
  done
}
emptied() {  # true once no process is left in the cgroup: v2 says `populated 0` in
  # cgroup.events; v1 lists no pid, nor do those below it (read with builtins: no fork per look)
  if [ -f "$cg/cgroup.events" ]; then
    while read -r _k _v; do [ "$_k" = populated ] && return "$_v"; done < "$cg/cgroup.events"
    return 1
  fi
  ! held_in "$cg"
}
# The cgroup $1 or one below it lists a process (builtins: no fork per look)
held_in() { ! walk _held "$1"; }
_held() { ! { read -r _p < "$_here/cgroup.procs"; } 2>/dev/null; }
# $_pids: the processes of the cgroup $1 and of those a member made below it (both freezers
# freeze them all; cgroup.kill kills them all)
procs() { _pids=; walk _list "$1"; }
_list() { { while read -r _p; do _pids="$_pids $_p"; done < "$_here/cgroup.procs"; } 2>/dev/null; return 0; }
# v1: thawed, each that froze itself (the task's, and one a member froze: it stays frozen as
# its parent thaws); the others thaw with the task's
_thaw() {
  _s=1; { read -r _s < "$_here/freezer.self_freezing"; } 2>/dev/null
  [ "$_s" = 0 ] || { echo THAWED > "$_here/freezer.state"; } 2>/dev/null; return 0
}
walk() {  # run $1 (a function) on the cgroup $2 and on each below it ($_here), each before
  # those below it, until $1 fails (walk fails then). By directory descriptors: $_here is
  # /proc/self/fd/8, open on the cgroup visited, and each step opens one name from there
  # (fd 9, moved to 8): one lookup a step at any depth, in every shell, past PATH_MAX (4,096
  # bytes) too. (cd -P NAME re-resolves the whole path under bash: 2,100 levels took it
  # minutes; by full paths those past PATH_MAX were never reached.) No recursion (dash stops
  # at 1,000 nested calls): the cgroups still to visit are words "DEPTH NAME" on a stack.
  # Names starting with `.` too (`*` leaves them out: a member there was never killed).
  # Never above $2, nor into what is mounted below it (another mnt_id: -xdev, and a bind
  # mount of the same cgroup hierarchy too); a climb that fails ends the walk, failed.
  _act=$1 _at=0 _rc=0 _here=/proc/self/fd/8
  command exec 8< "$2" 2>/dev/null || return 0
  _mounted_below "${2%/}" && { _mnt 8; _top=$_m; }
  set --
  while :; do
    "$_act" || { _rc=1; break; }
    for _d in "$_here"/*/ "$_here"/.[!.]*/ "$_here"/..?*/; do [ -d "$_d" ] && _d=${_d%/} && set -- "$((_at + 1)) ${_d##*/}" "$@"; done
    _next=
    while [ $# -gt 0 ]; do
      _to=${1%% *} _n=${1#* }; shift
      while [ "$_at" -ge "$_to" ]; do _step .. || { _rc=1; break 2; }; _at=$((_at - 1)); done
      _step "$_n" && { _at=$_to _next=1; break; }
    done
    [ -n "$_next" ] || break
  done
  exec 8<&- 9<&-
  return $_rc
}
_step() {  # fd 8 moved to its cgroup's $1 (.. or a name below it, on the same mount)
  command exec 9< "$_here/$1" 2>/dev/null || return 1
  [ "$1" = .. ] || [ -z "$_mounts" ] || { _mnt 9; [ "$_m" = "$_top" ]; } || { exec 9<&-; _mounted=1; return 1; }
  exec 8<&9 9<&-
}
_mounted_below() {  # $_mounts: 1 when /proc/self/mountinfo shows a mount below $1, or cannot say
  # (its escaped characters in $1, unreadable): only then is each step's mount told (dash,
  # 1,000 levels: one fdinfo read a step made the watchdog's run 40 % longer)
  case $1 in *[\\\ \	]*) _mounts=1; return 0 ;; esac
  _mounts=; { while read -r _ _ _ _ _p _; do case $_p in "$1"/*) _mounts=1 ;; esac; done < /proc/self/mountinfo; } 2>/dev/null || _mounts=1
  [ -n "$_mounts" ]
}
_mnt() { _m=; { while read -r _k _v; do [ "$_k" = mnt_id: ] && _m=$_v && break; done < /proc/self/fdinfo/$1; } 2>/dev/null; }
rmcg() {  # the cgroup $1, and those a member made below it, bottom up: each once empty (find
  # -delete: by directory descriptors, as walk). None when the walk met a mount below it
  # ($_mounted): -xdev stops at another st_dev only, and a bind mount of the same hierarchy
  # has the task's (was: its empty cgroups, outside the task's, were removed); the mount
  # point's rmdir would fail all the same
  _mounted=; walk : "$1"; [ -z "$_mounted" ] || return 1
  find "$1" -xdev -depth -type d -delete 2>/dev/null
  [ ! -d "$1" ]
}
now() { read -r _up _ < /proc/uptime; _now=${_up%.*}${_up#*.}; }  # hundredths of a second
now; until=$((_now + CGROUP_HUNDREDTHS)) left=0 again=  # the cgroup's members may take seconds to go (below)
while [ -n "$cg" ] && [ -d "$cg" ]; do
  case $how in
    kill) echo 1 > "$cg/cgroup.kill"  # each process through its first thread: one whose first
          # thread exited while others run (`pthread_exit` in `main`) lives on. From the second
          # pass on (what the first killed is gone by then), each member is SIGKILLed by its pid
          [ -z "$again" ] || { procs "$cg"; kill -KILL $_pids; }; again=1 ;;
    freeze) echo 1 > "$cg/cgroup.freeze"; procs "$cg"; kill -KILL $_pids 2>/dev/null
            echo 0 > "$cg/cgroup.freeze" ;;
    freezer) echo FROZEN > "$cg/freezer.state"; n=0
             while [ "$(cat "$cg/freezer.state")" != FROZEN ] && [ "$n" -lt 50 ]; do
               sleep 0.01; n=$((n + 1))
             done
             procs "$cg"; kill -KILL $_pids 2>/dev/null
             walk _thaw "$cg" ;;
  esac 2>/dev/null
  # A SIGKILLed member leaves the cgroup once it has exited: a large memory takes a while to
  # free (0.5 s for 8 GB), a request a FUSE server holds unanswered keeps it in D state
  # until answered. So: removed once empty, looked at 10 ms, then 100 ms apart, for 10 s.
  if emptied; then rmcg "$cg" || left=1; break; fi
  now; [ "$_now" -ge "$until" ] && { left=1; break; }
  if [ $((until - _now)) -gt $((CGROUP_HUNDREDTHS - 10)) ]; then sleep 0.01; else sleep 0.1; fi
done
pass=0 empty=
while [ "$pass" -lt 40 ]; do  # an empty pass is made once more before the end: a process read
  # mid-exec (from the switch to its new image until its arguments are placed) shows no environment
  pids=
  for f in $(grep -lzxF -e "$entry" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}
    pids="$pids ${p%/environ}"
  done
  alive
  if [ -n "$live" ]; then  # stopped, then checked again: a pid reused meanwhile goes on
    was=$live
    kill -STOP $was 2>/dev/null
    alive
    for p in $was; do
      case "$live " in *" $p "*) ;; *) kill -CONT $p 2>/dev/null ;; esac
    done
    pids="$pids$live"
  fi
  if [ -z "$pids" ]; then [ -n "$empty" ] && exit $left; empty=1; continue; fi
  empty=
  kill -STOP $pids 2>/dev/null
  new=$pids depth=0
  while [ -n "$new" ] && [ "$depth" -lt 64 ]; do
    new=$(for p in $new; do cat /proc/$p/task/*/children; done 2>/dev/null)
    [ -n "$new" ] && kill -STOP $new 2>/dev/null
    pids="$pids $new" depth=$((depth + 1))
  done
  kill -KILL $pids 2>/dev/null
  pass=$((pass + 1))
  [ "$pass" -gt 2 ] && sleep 0.05
done
exit 1
""".replace("CGROUP_HUNDREDTHS", str(CGROUP_SECS * 100)))


WATCHDOG_NAME = "stoker-watchdog"  # its $0 (`ps` shows it); readers of the figures go by its pid (held.json), never by this alone
# The script comes in its environment, and its command line runs it: `ps`, and `systemctl
# status` under systemd (every process of the unit, each with its command line), showed all
# its lines as the watchdog's command line, quoted into one line of 3,700 characters.
WATCHDOG_VARIABLE = "STOKER_WATCHDOG_SCRIPT"
WATCHDOG_COMMAND = f'eval "${WATCHDOG_VARIABLE}"'  # `/bin/sh -c WATCHDOG_COMMAND stoker-watchdog ARGS`
WATCHDOG_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", WATCHDOG_VARIABLE: WATCHDOG_SCRIPT}


def spawn_watchdog(marker: str, *, root_fd: int, home_fd: int) -> tuple[int, int]:
    """The watchdog of `marker`'s task, without a cgroup (the supervisor's own watchdog, told
    the cgroup before it is made, takes over): its pid and the write end of its pipe."""
    read_fd, write_fd = os.pipe()  # both close-on-exec: the child gets read_fd as its stdin
    actions = [(os.POSIX_SPAWN_DUP2, read_fd, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    os.fchdir(root_fd)
    try:
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", WATCHDOG_COMMAND, WATCHDOG_NAME, marker,
                                         "", "", ""], WATCHDOG_ENV, file_actions=actions,
                             setsid=True, setsigdef=POPEN_DEFAULTS)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.fchdir(home_fd)
        os.close(read_fd)
    return pid, write_fd


def retire(write_fd: int) -> None:
    """Tell a watchdog to end without killing anything, and close its pipe."""
    try:
        os.write(write_fd, b"retire\n")
    finally:
        os.close(write_fd)
