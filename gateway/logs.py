"""Structured logs: one JSON object a line, with ``call_id`` when a call is in context."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "call_id", …}``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None) or call_id_var.get()
        if call_id:
            entry["call_id"] = call_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send logs to stderr (JSON lines by default)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("tortoise", "aiosqlite", "asyncpg", "hypercorn.access", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
