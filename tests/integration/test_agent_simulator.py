"""The agent simulator's own fidelity (docs/mesos.md §5): it validates calls, authenticates,
recovers, replaces and cuts streams, applies the update rules and destroys executors like
the agent does, so that the driver tests against it mean something."""
from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest
import requests

from executor.mesos.recordio import RecordIODecoder
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.mesos_driving import TOKEN

# ---- the simulator's own fidelity (docs/mesos.md §5) ----


def _call(kind: str, **extra) -> dict:
    return {"type": kind, "framework_id": {"value": "7c1c2a4e-5b7d-4f0e-9a51-3e2f9d6c1b20-0000"},
            "executor_id": {"value": "stoker-executor-1"}, **extra}


def _status(**over) -> dict:
    status = {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
              "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
    status.update(over)
    return {k: v for k, v in status.items() if v is not None}


JSON = {"Content-Type": "application/json"}


@contextlib.contextmanager
def subscribed_by_hand(sim: AgentSimulator) -> Iterator[str]:
    """A SUBSCRIBE this test sent, its stream open until the end: the executor API's URL."""
    url = f"http://{sim.endpoint}/api/v1/executor"
    stream = requests.post(url, data=json.dumps(_call("SUBSCRIBE", subscribe={})).encode(),
                           headers=JSON, stream=True, timeout=(5, 5))
    try:
        sim.wait_subscribed()
        yield url
    finally:
        stream.close()


@pytest.mark.parametrize("method, headers, body, status", [
    ("GET", JSON, _call("HEARTBEAT"), 405),
    ("POST", {}, _call("HEARTBEAT"), 400),
    ("POST", {"Content-Type": "application/json; charset=utf-8"}, _call("HEARTBEAT"), 415),
    ("POST", JSON, b"{nope", 400),
    ("POST", JSON, {"type": "HEARTBEAT"}, 400),
    ("POST", JSON, _call("BOGUS"), 400),
    ("POST", JSON, _call("SUBSCRIBE"), 400),
    ("POST", {**JSON, "Accept": "application/x-protobuf"}, _call("SUBSCRIBE", subscribe={}), 406),
    ("POST", JSON, _call("HEARTBEAT"), 202),
    ("POST", JSON, {**_call("MESSAGE", message={"data": "aGk="}),
                    "framework_id": {"value": "other"}}, 400),
    ("POST", JSON, _call("MESSAGE", message={"data": "aGk="}), 403),
    ("POST", JSON, _call("UPDATE", update={"status": _status(uuid=None)}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(uuid="aGk=")}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(source=None)}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(state="TASK_STAGING")}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(
        executor_id={"value": "someone-else"})}), 400),
])
def test_simulator_validates_like_the_agent(sim, method, headers, body, status):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.request(method, f"http://{sim.endpoint}/api/v1/executor", data=data,
                              headers=headers, timeout=5)
    assert answer.status_code == status, answer.text
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    assert sim.requests[-1].status == status


@pytest.mark.timeout(20)
def test_refused_calls_are_the_subscribe_and_update_calls_answered_neither_200_nor_202(sim):
    with subscribed_by_hand(sim) as url:
        assert sim.refused_calls() == []
        bad = _call("UPDATE", update={"status": _status(state="TASK_STAGING")})
        for body in (bad, _call("HEARTBEAT"), _call("MESSAGE", message={"data": "%"})):
            requests.post(url, data=json.dumps(body), headers=JSON, timeout=5)
        assert [(r.call_type, r.status) for r in sim.requests] == [
            ("SUBSCRIBE", 200), ("UPDATE", 400), ("HEARTBEAT", 202), ("MESSAGE", 400)]
        assert [(r.call_type, r.status) for r in sim.refused_calls()] == [("UPDATE", 400)]
        sim.unanswered_updates = 1  # taken, never answered: not judged but waited for
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(url, data=json.dumps(_call("UPDATE", update={"status": _status()})),
                          headers=JSON, timeout=(5, 0.2))
        with pytest.raises(TimeoutError, match="an answer to each SUBSCRIBE and UPDATE call"):
            sim.refused_calls(timeout_secs=0.1)


def test_simulator_auth_and_recovery_answers(tmp_path):
    with AgentSimulator(auth_token=TOKEN, sandbox=tmp_path) as sim:
        url = f"http://{sim.endpoint}/api/v1/executor"
        data = json.dumps(_call("HEARTBEAT")).encode()
        missing = requests.post(url, data=data, headers=JSON, timeout=5)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mesos-agent-executor"'
        wrong = requests.post(url, data=data, headers={**JSON, "Authorization": "Bearer x"},
                              timeout=5)
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
        good = {**JSON, "Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url, data=data, headers=good, timeout=5).status_code == 202
        sim.crash()
        sim.restart(recovering_secs=30)
        assert requests.post(url, data=data, headers=good, timeout=5).status_code == 503


def test_simulator_replaces_a_stream_gracefully_and_tells_crash_from_close(sim):
    url = f"http://{sim.endpoint}/api/v1/executor"
    body = json.dumps(_call("SUBSCRIBE", subscribe={})).encode()
    first = requests.post(url, data=body, headers=JSON, stream=True, timeout=(5, 5))
    second = requests.post(url, data=body, headers=JSON, stream=True, timeout=(5, 5))
    try:
        assert first.status_code == second.status_code == 200
        assert second.headers["Content-Type"] == "application/json"
        assert second.headers["Transfer-Encoding"] == "chunked"
        decoder = RecordIODecoder()
        records = [r for chunk in first.iter_content(chunk_size=None)  # ends: clean EOF
                   for r in decoder.feed(chunk)]
        assert [json.loads(r)["type"] for r in records] == ["SUBSCRIBED"]
        sim.crash()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            b"".join(second.iter_content(chunk_size=None))  # read to the cut
    finally:
        first.close()
        second.close()


def test_simulator_answers_nothing_while_it_crashes(sim):
    """A call that comes in while crash() cuts the streams (the executor resubscribes at
    once on the cut) is not answered: a dying agent accepts no SUBSCRIBE. One was answered
    200 there, and a test waiting for the resubscription after the restart went on before it
    (tests/e2e/test_executor_agent_tls.py's restart test [unix]: 3 runs in 40 under load, 2 of
    them failed)."""
    url = f"http://{sim.endpoint}/api/v1/executor"
    body = json.dumps(_call("SUBSCRIBE", subscribe={})).encode()
    first = requests.post(url, data=body, headers=JSON, stream=True, timeout=(5, 5))
    stream, answers = sim._streams[0], []
    cut = stream.close

    def cut_then_resubscribe(graceful: bool) -> None:
        cut(graceful)
        try:
            answers.append(requests.post(url, data=body, headers=JSON, stream=True, timeout=(2, 2)).status_code)
        except requests.exceptions.ConnectionError as exc:
            answers.append(type(exc).__name__)

    try:
        stream.close = cut_then_resubscribe
        sim.crash()
        assert answers == ["ConnectionError"] and len(sim.subscribes) == 1
    finally:
        first.close()


def test_simulator_applies_the_agent_update_rules(sim):
    with subscribed_by_hand(sim) as url:
        sim.launch(make_task_info("t", b"{}"))

        def post(**over) -> tuple[bytes, int]:
            status = _status(**over)
            answer = requests.post(url, data=json.dumps(_call("UPDATE", update={
                "status": status})).encode(), headers=JSON, timeout=5)
            return base64.b64decode(status["uuid"]), answer.status_code

        running, code = post()
        assert code == 202
        again = requests.post(url, data=sim.calls("UPDATE")[-1].body, headers=JSON, timeout=5)
        assert again.status_code == 202
        finished, _ = post(state="TASK_FINISHED")
        late, _ = post(state="TASK_FAILED")
        stranger, _ = post(task_id={"value": "never-launched"})
        wrong_agent, code = post(agent_id={"value": "another-agent"})
        assert code == 202
        assert sim.states("t") == ["TASK_RUNNING", "TASK_FINISHED"]
        assert [raw for _, raw in sim.acks_sent] == [running, running, finished, late]
        assert [r.uuid for r in sim.duplicates] == [running]
        assert [r.uuid for r in sim.dropped_updates] == [late]
        assert [r.uuid for r in sim.unknown_updates] == [stranger]
        assert [r.uuid for r in sim.ignored_updates] == [wrong_agent]


@pytest.mark.timeout(20)
def test_simulator_destroys_an_executor_past_the_shutdown_grace(sim):
    sim.launch_executor(["sleep", "30"], shutdown_grace="200ms")
    sim.shutdown()
    assert sim.wait_exit(5) == -9
    assert sim.destroyed_after_grace


@pytest.mark.timeout(20)
def test_simulator_destroys_an_executor_that_never_subscribes(sim):
    sim.launch_executor(["sleep", "30"], registration_timeout_secs=0.2)
    assert sim.wait_exit(5) == -9
    assert sim.registration_timed_out
