"""`stoker executor` on a Mesos cluster with libprocess SSL on, and on the agent's unix socket:
the real executor under the agent simulator in its TLS and unix-socket modes (docs/mesos.md §1).
The token goes over TLS or the socket, never into the log (`agent_for`'s check)."""
from __future__ import annotations

import socket

import pytest

from tests.support.agent_sim import AgentSimulator
from tests.support.agent_tls import agent_context, cert, client_env
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, HELLO, TOKEN, document, launch
from tests.support.stoker_proc import live, task_pids
from tests.support.waiting import wait_for


def _agent(tmp_path, **kwargs):
    with sandboxed_agent(tmp_path, auth_token=TOKEN, **kwargs) as sim:
        yield sim
    assert TOKEN not in sim.executor_log(), "the auth token leaked into the executor log"


@pytest.fixture
def tls_agent(tmp_path):
    yield from _agent(tmp_path, tls=agent_context())


@pytest.fixture
def strict_agent(tmp_path):
    """An agent that requires a client certificate signed by the test CA."""
    yield from _agent(tmp_path, tls=agent_context(require_client_cert=True))


def _run_and_kill(agent: AgentSimulator, tmp_path, env: dict[str, str]) -> str:
    """LAUNCH, RUNNING, KILL, KILLED, exit 0; the executor's log."""
    launch(agent, document(tmp_path, HELLO), env_overrides=env)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = wait_for(lambda: task_pids(agent.sandbox))
    agent.kill("task-1", grace_secs=1.0)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.wait_exit(10) == 0
    assert not live(pids)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert {r.header("Authorization") for r in agent.requests} == {f"Bearer {TOKEN}"}
    return agent.executor_log()


def test_over_tls_unverified_a_task_runs_and_is_killed(tls_agent, tmp_path):
    log = _run_and_kill(tls_agent, tmp_path, client_env())
    assert 'agent_via="https (server certificate not verified)"' in log
    assert f"url=https://{tls_agent.endpoint}/api/v1/executor" in log
    assert tls_agent.tls_failures == []


def _reverse_localhost() -> bool:
    try:
        return socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0] == "localhost"
    except OSError:
        return False


@pytest.mark.parametrize("switches, via", [
    ({"hostname_validation_scheme": "openssl", "verify_ipadd": "true"}, "hostname check openssl with IP address"),
    ({"verify_ipadd": "1"}, "hostname check legacy with IP address"),  # the IP SAN
    pytest.param({}, "hostname check legacy)",  # 127.0.0.1's reverse name, `localhost`: the DNS SAN
                 marks=pytest.mark.skipif(not _reverse_localhost(), reason="127.0.0.1 is not localhost here")),
])
def test_verified_against_the_ca_and_given_the_client_certificate_the_strict_agent_requires(
        strict_agent, tmp_path, switches, via):
    env = client_env("client", verify_server_cert="true", ca_file=cert("ca"), **switches)
    log = _run_and_kill(strict_agent, tmp_path, env)
    assert f'agent_via="https (verified against {cert("ca")}, {via}' in log


def _refused(agent: AgentSimulator, env: dict[str, str]) -> str:
    """The executor never subscribes: exit 3 once MESOS_RECOVERY_TIMEOUT is over; its log."""
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox, env_overrides=env,
                          recovery_timeout="1secs", backoff_max="100ms")
    assert agent.wait_exit(15) == 3
    assert agent.subscribes == [] and agent.requests == []
    log = agent.executor_log()
    assert "mesos_giving_up" in log and "executor_exit status=3" in log
    return log


def test_an_agent_certificate_from_another_ca_is_refused_with_the_reason(tls_agent):
    log = _refused(tls_agent, client_env(None, verify_server_cert="1", ca_file=cert("other-ca")))
    assert (f"SUBSCRIBE failed: TlsFailed: TLS handshake with {tls_agent.endpoint} failed: "
            "certificate verify failed: unable to get local issuer certificate") in log
    assert any("UNKNOWN_CA" in failure for failure in tls_agent.tls_failures), tls_agent.tls_failures


def test_no_client_certificate_for_an_agent_that_requires_one_is_refused(strict_agent):
    log = _refused(strict_agent, client_env(None))
    assert (f"TLS handshake with {strict_agent.endpoint} failed: sslv3 alert handshake failure (the agent "
            "shares no cipher with LIBPROCESS_SSL_CIPHERS, or requires a client certificate and "
            "LIBPROCESS_SSL_CERT_FILE is not set)") in log
    assert any("CERTIFICATE" in failure for failure in strict_agent.tls_failures), strict_agent.tls_failures


@pytest.mark.parametrize("env, words", [
    (client_env(None, verify_server_cert="1", ca_file="/nonexistent/ca.pem"),
     "LIBPROCESS_SSL_CA_FILE='/nonexistent/ca.pem': no such file or directory"),
    ({**client_env(None), "LIBPROCESS_SSL_CERT_FILE": cert("client")},
     "LIBPROCESS_SSL_CERT_FILE is set but LIBPROCESS_SSL_KEY_FILE is not"),
    (client_env("client", key_file=cert("agent").replace("agent.pem", "agent.key")),
     "LIBPROCESS_SSL_CERT_FILE="),  # a key that is not the certificate's
    (client_env(None, hostname_validation_scheme="strict"),
     "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME='strict' is not legacy or openssl"),
])
def test_a_setting_libprocess_would_refuse_is_exit_2_naming_it(tls_agent, env, words):
    tls_agent.launch_executor(EXECUTOR, cwd=tls_agent.sandbox, env_overrides=env)
    assert tls_agent.wait_exit(10) == 2
    assert words in tls_agent.executor_log() and tls_agent.requests == []


def test_on_the_agent_s_unix_socket_a_task_runs_and_is_killed(tmp_path):
    for agent in _agent(tmp_path, unix_socket=True):
        # the socket wins over TLS (never TLS on it) and over MESOS_AGENT_ENDPOINT
        log = _run_and_kill(agent, tmp_path, {"LIBPROCESS_SSL_ENABLED": "true"})
        assert {r.path for r in agent.requests} == {"/slave(1)/api/v1/executor"}  # the agent's only path
        assert f'agent_via="unix socket {agent.socket_path}"' in log


def test_a_socket_path_too_long_even_relative_to_the_sandbox_is_exit_2(tmp_path):
    for agent in _agent(tmp_path):
        path = "/" + "s" * 120 + "/agent.sock"
        agent.launch_executor(EXECUTOR, cwd=agent.sandbox, env_overrides={"MESOS_DOMAIN_SOCKET": path})
        assert agent.wait_exit(10) == 2
        assert f"MESOS_DOMAIN_SOCKET='{path}' is 132 bytes long" in agent.executor_log()


@pytest.mark.parametrize("mode", ["tls", "unix"])
def test_the_agent_restarting_over_tls_or_its_socket_loses_no_update_and_sends_none_twice(tmp_path, mode):
    """Crashes and restarts (the socket file removed and made again), acks held: each
    resubscription carries the updates, none is POSTed twice once acked; SHUTDOWN ends it."""
    kwargs = {"tls": agent_context()} if mode == "tls" else {"unix_socket": True}
    for agent in _agent(tmp_path, **kwargs):
        agent.ack_mode = "hold"
        launch(agent, document(tmp_path, HELLO), env_overrides=client_env() if mode == "tls" else {},
               backoff_max="200ms", recovery_timeout="10secs", shutdown_grace="3secs")
        agent.wait_for_state("task-1", "TASK_RUNNING", 10)
        for restart in range(2):
            agent.crash()
            agent.restart(recovering_secs=0.1, reregistration_window_secs=2.0)
            agent.wait_subscribed(timeout_secs=5, count=restart + 2)
        body = agent.subscribes[-1]["subscribe"]
        assert [u["status"]["state"] for u in body.get("unacknowledged_updates", [])] == [
            "TASK_STARTING", "TASK_RUNNING"]
        agent.ack_mode = "immediate"
        agent.release_acks()
        agent.close_stream(graceful=True)
        assert agent.wait_subscribed(timeout_secs=5, count=4)["subscribe"] == {}  # acked: carried no more
        acked = {c.json["update"]["status"]["uuid"] for c in agent.calls("UPDATE")}
        seen = len(agent.calls("UPDATE"))
        pids = task_pids(agent.sandbox)
        agent.shutdown()
        agent.wait_for_state("task-1", "TASK_KILLED", 10)
        assert agent.wait_exit(10) == 0 and not live(pids) and not agent.reregistration_failed
        # (before its ACK an update may go twice: a crash can cut the 202 of one the agent got)
        later = [c.json["update"]["status"]["uuid"] for c in agent.calls("UPDATE")[seen:]]
        assert not acked & set(later), "an acknowledged update was POSTed again"
