"""`stoker executor`'s settings: what the Mesos agent's environment and Thermos' executor
flags give it (docs/mesos.md §14). The machinery (`setting`, precedence) is
`config/sourced.py`'s, the parsers and secrets `config/settings.py`'s, shared with `stoker run`'s settings; this
module is loaded only by the commands that start or describe an executor.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs

from config.announcer import DEFAULT_SERVERSET_PATH, parse_ensemble, parse_serverset_path
from config.settings import (
    AGENT_VARIABLES,
    CGROUP_HELP,
    LOG_FORMATS,
    LOG_LEVELS,
    TOKEN_VARIABLE,
    disk_check_interval,
    disk_limit,
    logger_defaults,
    parse_cgroups,
    parse_duration,
    parse_log_format,
    parse_log_level,
    parse_secs,
    parse_switch,
    runner_logger_destination,
    runner_logger_mode,
    runner_rotate_log_backups,
    runner_rotate_log_size_mb,
    thermos_spelling,
)
from config.sourced import Sourced, setting
from config.words import quoted

if TYPE_CHECKING:  # zookeeper's: built only to announce; spec's: only for a task
    from config.spec import LoggerDefaults
    from config.zookeeper import AnnouncerSettings, ZkAuth


def parse_checkpoint(text: str | bool) -> bool:
    """Only "1" means on (MESOS_CHECKPOINT is always set, to "1" or "0")."""
    return text is True or text == "1"


def parse_zk_auth_file(path: str | ZkAuth) -> ZkAuth:
    """`--announcer-zookeeper-auth-config`: read and checked at start-up, as in Aurora."""
    from config.zookeeper import ZkAuth, parse_zk_auth

    if isinstance(path, ZkAuth):
        return path
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{quoted(path)} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    auth = parse_zk_auth(text, path)
    if any(c.scheme == "sasl" for c in auth.auth) and not _sasl_installed():
        raise ValueError(f"{quoted(path)}: a sasl login needs the pure-sasl package, which this "
                         "installation lacks (pip install pure-sasl), or a digest one instead")
    return auth


def _sasl_installed() -> bool:
    """Whether ZooKeeper's client can log in with SASL here (it needs pure-sasl: without
    it, its connection thread died at the first connection, a traceback, and the task failed
    only at its first announcement's bound)."""
    import importlib.util

    return importlib.util.find_spec("puresasl") is not None


def parse_path(text: str) -> str:
    """Any non-empty path (the filesystem-image flags)."""
    if not isinstance(text, str) or not text or "\0" in text:
        raise ValueError(f"{quoted(text)} is not a path")
    return text


def parse_user(text: str) -> str:
    """A user name (whether it exists is checked as a task launches, as Thermos does)."""
    if not isinstance(text, str) or not text or "\0" in text or text != text.strip():
        raise ValueError(f"{quoted(text)} is not a user name")
    return text




@attrs.frozen(kw_only=True)
class ExecutorSettings(Sourced):
    """What `stoker executor` runs with; all from the agent's environment."""

    agent_endpoint: str = setting(env=("MESOS_AGENT_ENDPOINT",),
                                  help="the agent's ip:port, for its executor API")
    framework_id: str = setting(env=("MESOS_FRAMEWORK_ID",), help="the framework's ID")
    executor_id: str = setting(env=("MESOS_EXECUTOR_ID",), help="this executor's ID")
    agent_id: str | None = setting(env=("MESOS_SLAVE_ID",), default=None, help="the agent's ID")
    sandbox: str = setting(env=("MESOS_SANDBOX", "MESOS_DIRECTORY"), factory=os.getcwd,
                           help="the task sandbox (default: the current directory)")
    checkpoint: bool = setting(env=("MESOS_CHECKPOINT",), parse=parse_checkpoint, default=False,
                               help='"1" when the framework checkpoints, so the executor recovers')
    recovery_timeout_secs: float = setting(
        env=("MESOS_RECOVERY_TIMEOUT",), parse=parse_duration, default=900.0,
        help="how long to keep reconnecting to a restarted agent (default 15mins)")
    subscription_backoff_max_secs: float = setting(
        env=("MESOS_SUBSCRIPTION_BACKOFF_MAX",), parse=parse_duration, default=2.0,
        help="the longest random wait between resubscriptions (default 2secs)")
    shutdown_grace_secs: float = setting(
        env=("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",), parse=parse_duration, default=5.0,
        help="time from SHUTDOWN until the agent destroys the container (default 5secs)")
    auth_token: str | None = setting(env=(TOKEN_VARIABLE,), default=None, repr=False,
                                     help="the executor's bearer token for the agent")
    hostname: str | None = setting(env=("STOKER_HOSTNAME",), flag="--hostname", default=None,
                                   help="the host name for {{mesos.hostname}} (default: the agent's)")
    log_format: str = setting(env=("STOKER_LOG_FORMAT",), flag="--log-format", default="text",
                              parse=parse_log_format, choices=LOG_FORMATS,
                              help="log lines as text or json (default text)")
    log_level: str = setting(env=("STOKER_LOG_LEVEL",), flag="--log-level", default="INFO",
                             parse=parse_log_level, help=f"{', '.join(LOG_LEVELS)} (default INFO)")
    # ZooKeeper ServerSet announcements, with Aurora's executor flags (README "Service discovery").
    announcer_ensemble: str | None = setting(
        flag="--announcer-ensemble", parse=parse_ensemble, default=None, metavar="HOST:PORT[,...]",
        help="announce every task whose job has `announce = Announcer(...)` in this ZooKeeper "
             "ensemble (default: none, no announcing)")
    announcer_serverset_path: str = setting(
        flag="--announcer-serverset-path", parse=parse_serverset_path, default=DEFAULT_SERVERSET_PATH,
        metavar="PATH", help="the ServerSets' root: PATH/ROLE/ENVIRONMENT/JOB (default /aurora)")
    announcer_allow_custom_serverset_path: bool = setting(
        flag="--announcer-allow-custom-serverset-path", parse=parse_switch, default=False,
        action="store_true", help="honour Announcer.zk_path (without it, a job that sets it fails)")
    announcer_hostname: str | None = setting(
        flag="--announcer-hostname", default=None, metavar="HOST",
        help="the host name to announce (default: the agent's host name)")
    announcer_zookeeper_auth_config: ZkAuth | None = setting(
        flag="--announcer-zookeeper-auth-config", parse=parse_zk_auth_file, default=None, metavar="FILE",
        help="JSON file in Aurora's format: credentials for the ZooKeeper session and the ACL of "
             "the announced nodes")

    @property
    def announcer(self) -> AnnouncerSettings | None:
        """Where tasks announce; None: no ensemble, no announcing."""
        if self.announcer_ensemble is None:
            return None
        from config.zookeeper import AnnouncerSettings

        return AnnouncerSettings(
            ensemble=self.announcer_ensemble, serverset_path=self.announcer_serverset_path,
            allow_custom_serverset_path=self.announcer_allow_custom_serverset_path,
            hostname=self.announcer_hostname, auth=self.announcer_zookeeper_auth_config)
    cgroups: str = setting(env=("STOKER_CGROUPS",), flag="--cgroups", parse=parse_cgroups,
                           default="auto", metavar="auto|off|DIR", help=CGROUP_HELP)
    pass_agent_env: bool = setting(
        env=("STOKER_PASS_AGENT_ENV",), flag="--pass-agent-env", parse=parse_switch, default=False,
        action="store_true",
        help=f"hand {', '.join(AGENT_VARIABLES)} to the task's processes (default: not; "
             f"the token is never handed on)")
    preserve_env: bool = setting(
        env=("STOKER_PRESERVE_ENV",), flag="--preserve-env", aliases=("--preserve_env",), parse=parse_switch,
        default=False, action="store_true",
        help="start the task's processes with the executor's whole environment (less the token), "
             "as Thermos' --preserve_env (default: PATH, MESOS_SANDBOX and MESOS_DIRECTORY only, "
             "plus HOME, USER and LOGNAME)")
    nosetuid: bool = setting(
        env=("STOKER_NOSETUID",), flag="--nosetuid", parse=parse_switch, default=False, action="store_true",
        help="run an Aurora task's processes as the executor's own user even when it is root, "
             "as Thermos' --nosetuid (default: as the job's role, when root)")
    disk_limit: bool = disk_limit(default=True)
    disk_check_interval_secs: float = disk_check_interval()

    # Thermos' other executor flags (docs/aurora.md §12, §13).
    runner_logger_destination: str | None = runner_logger_destination("STOKER_RUNNER_LOGGER_DESTINATION")
    runner_logger_mode: str | None = runner_logger_mode("STOKER_RUNNER_LOGGER_MODE")
    runner_rotate_log_size_mb: int | None = runner_rotate_log_size_mb("STOKER_RUNNER_ROTATE_LOG_SIZE_MB")
    runner_rotate_log_backups: int | None = runner_rotate_log_backups("STOKER_RUNNER_ROTATE_LOG_BACKUPS")
    execute_as_user: str | None = setting(
        env=("STOKER_EXECUTE_AS_USER",), flag="--execute-as-user", aliases=thermos_spelling("--execute-as-user"),
        parse=parse_user, default=None, metavar="USER",
        help="run every task (its processes, its sandbox) as USER instead of the job's role, as "
             "Thermos' flag (--nosetuid wins over it; a Docker task runs as its image's user)")
    nosetuid_health_checks: bool = setting(
        env=("STOKER_NOSETUID_HEALTH_CHECKS",), flag="--nosetuid-health-checks",
        aliases=thermos_spelling("--nosetuid-health-checks"), parse=parse_switch, default=False, action="store_true",
        help="run shell health checks as the executor's own user (with its HOME, and never the "
             "sandbox's .thermos_profile), not as the user the processes run as, as Thermos' flag")
    stop_timeout_secs: float = setting(
        env=("STOKER_STOP_TIMEOUT",), flag="--stop-timeout-in-secs", aliases=("--stop_timeout_in_secs",),
        parse=parse_secs, default=120.0, metavar="SECS",
        help="the outer bound on every stop of a task, as Thermos' --stop_timeout_in_secs: SECS after "
             "a kill began, whatever still runs (final processes included) is SIGKILLed and the "
             "task ends; the job's own lifecycle waits and finalization_wait usually end it sooner "
             "(default 120)")
    launch_timeout_secs: float = setting(
        env=("STOKER_LAUNCH_TIMEOUT",), flag="--launch-timeout", parse=parse_secs, default=10.0,
        metavar="DURATION",
        help="exit, as Thermos does, when no task was launched this long after the start "
             "(default 10secs; 0: wait for ever)")
    mesos_containerizer_path: str = setting(
        flag="--mesos-containerizer-path", aliases=thermos_spelling("--mesos-containerizer-path"), parse=parse_path,
        default="/usr/libexec/mesos/mesos-containerizer", metavar="PATH",
        help="the mesos-containerizer that starts a filesystem-image task's processes and shell health "
             "checks inside its image, as Thermos' flag (default /usr/libexec/mesos/mesos-containerizer)")
    no_create_user: bool = setting(
        flag="--no-create-user", aliases=thermos_spelling("--no-create-user"), parse=parse_switch, default=False,
        action="store_true",
        help="do not create the task's user and group inside a filesystem image, as Thermos' flag")
    sandbox_mount_point: str = setting(
        flag="--sandbox-mount-point", aliases=thermos_spelling("--sandbox-mount-point"), parse=parse_path,
        default="/mnt/mesos/sandbox", metavar="PATH",
        help="where a filesystem-image task's sandbox is mounted inside its image, as Thermos' flag "
             "(default /mnt/mesos/sandbox)")

    @property
    def logger_defaults(self) -> LoggerDefaults:
        """The --runner-logger-* flags, for the processes whose job leaves `logger` unset."""
        return logger_defaults(self)
