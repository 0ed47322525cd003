"""Logging set-up of every command and of each `serve --workers N` child process (a
spawned child inherits no logging configuration from the command that started it)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from handwork_payments.settings import get_settings

# What every LogRecord has: anything else was passed in `extra` and is kept in JSON logs.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra
    fields (alerts' `alert_kind`, jobs' `action`, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure() -> None:
    """LOG_LEVEL (warnings only by default: `serve`'s banner says the rest) and LOG_FORMAT."""
    settings = get_settings()
    level = getattr(logging, settings.log_level.upper())
    if settings.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
        return
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
