"""The agent's events as the tests send them: the simulator's TaskInfo and the unit tests'
samples, one JSON document each (the seeds of the Mesos harnesses)."""
from __future__ import annotations

import base64
import json

from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import JOB_JSON


def events() -> list[bytes]:
    info = make_task_info("hello-0", JOB_JSON.encode(), ports=(31000, 31001), kill_policy_secs=5.0)
    docs = [
        {"type": "SUBSCRIBED", "subscribed": {
            "executor_info": {"executor_id": {"value": "e"}}, "framework_info": {"name": "f"},
            "agent_info": {"id": {"value": "S0"}, "hostname": "h"}, "container_id": {"value": "c"}}},
        {"type": "LAUNCH", "launch": {"task": info}},
        {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [info, info]}}},
        {"type": "KILL", "kill": {"task_id": {"value": "t"},
                                  "kill_policy": {"grace_period": {"nanoseconds": "5000000000"}}}},
        {"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "t"},
                                                  "uuid": base64.b64encode(b"0123456789abcdef").decode()}},
        {"type": "MESSAGE", "message": {"data": base64.b64encode(b"hello\n").decode()}},
        {"type": "SHUTDOWN"}, {"type": "HEARTBEAT"}, {"type": "ERROR", "error": {"message": "boom"}},
        {"type": "FROM_THE_FUTURE", "future": [1, 2.5, None, True]},
    ]
    return [json.dumps(doc).encode() for doc in docs]
