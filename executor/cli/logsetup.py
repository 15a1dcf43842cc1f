"""Log rendering for every `stoker` command, configured once by the CLI: `TextFormatter`
(one line per event, local time, level, logger, `event key=value ...`) or `JsonFormatter`
(one JSON object per line, `--log-format json`). No other package configures logging.

Never pass a secret (the agent's auth token) to a logger: nothing here can scrub it.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "stoker_event", None)
        if event is not None:
            doc["event"] = event
            for key, value in getattr(record, "stoker_fields", {}).items():
                if value is not None:
                    doc[key] = value if isinstance(value, (int, float, bool)) else str(value)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(log_format: str = "text", level: str | int = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # urllib3 logs every connection at DEBUG; keep it out unless asked for.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
