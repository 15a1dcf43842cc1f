"""The config loader's front for JSON configs (config/jsonconfig.py `json_jobs`, config/loader.py's BOM),
validation (`prepare_job`) and template binding (config/bind.py: `{{thermos.ports[http]}}`,
`{{mesos.instance}}`, `<<ref>>`, nested and self-referring templates).

`.aurora` configs are Python, run by the loader: their text is code, not a format to fuzz.

Contract: `_json_jobs` returns the jobs or raises ConfigError with a message; a job that
loads is validated and bound with a port for every name it uses, each step returning its
value or raising ConfigError (BindError among them); time stays bounded (the template
limits, config/templates.py).
"""
from __future__ import annotations

from pathlib import Path

from tests.fuzz.harness import expect, main

INSTRUMENT = ("config",)
PATH = Path("job.json")


def load() -> None:
    global ConfigError, BOM, _json_jobs, prepare_job, bind, port_names
    from config.bind import bind
    from config.errors import ConfigError
    from config.jsonconfig import json_jobs as _json_jobs
    from config.loader import BOM, prepare_job
    from config.portmap import port_names


def seeds() -> list[bytes]:
    import json

    from tests.fuzz.task_seeds import documents

    return [json.dumps(json.loads(doc)["job"]).encode() for doc in documents()]


def target(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the loader reads the file as UTF-8 first (its message: test_loader.py)
    jobs = expect(ConfigError, _json_jobs, PATH, text.removeprefix(BOM), f"'{PATH}'")
    for job in jobs or ():
        prepared = expect(ConfigError, prepare_job, job, str(PATH))
        if prepared is None:
            continue
        names = expect(ConfigError, port_names, prepared) or []
        ports = {name: 31000 + i for i, name in enumerate(names[:1000])}
        expect(ConfigError, bind, prepared, instance=1, ports=ports, task_id="t-1",
               hostname="host", user="user")


main(__name__)
