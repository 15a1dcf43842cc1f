"""A config file's JSON form: `{"jobs": [...]}`, or a single job, each typed as the schema's
`Job` (`config.typed_tree.from_tree`). Loaded by `config/loader.py` only for a file that is
JSON (a `.json` one, or one whose text starts with `{`): a `.aurora` config's planning never
loads it. No I/O, no logging.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from config.schema import Job
from config.templates import normalize_tree
from config.typed_tree import from_tree
from config.words import json_half_pair


def json_jobs(path: Path, text: str, named: str) -> list[Any] | None:
    """The jobs of a JSON config, or None when a non-.json file is not JSON after all.
    `named`: the path as an error names it (`config.words.quoted`); `path:line:`, a
    location, as compilers and Python's own warnings write one."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if path.suffix != ".json":
            return None
        if isinstance(exc, json.JSONDecodeError):
            raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc}") from None
        if isinstance(exc, RecursionError):  # json.loads read too deep
            raise ConfigError(f"{path}: it is nested too deeply to read") from None
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None  # (no line: a number too long)
    listed = isinstance(doc, dict) and "jobs" in doc
    if (half := json_half_pair(doc, "" if listed else "job")) is not None:  # ("jobs[0].task...": a list's)
        raise ConfigError(f"{named}: {half}")
    items = doc.get("jobs") if listed else [doc]
    if not isinstance(items, list):
        raise ConfigError(f"{named}: \"jobs\" must be a list of job objects")
    jobs = []
    for i, item in enumerate(items):
        try:
            jobs.append(from_tree(Job, normalize_tree(item), f"jobs[{i}]"))
        except ConfigError as exc:
            raise ConfigError(f"{named}: {exc}", exc.problems) from None
        except RecursionError:  # json.loads read deeper than the tree can be walked
            raise ConfigError(f"{named}: jobs[{i}] is nested too deeply to read") from None
    return jobs
