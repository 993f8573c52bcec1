"""Structured logs: one JSON object per line on stderr, secrets scrubbed.

Fields a log call passes as `extra={"fields": {...}}` become top-level keys (request_id, door,
operation, status, ...). Whatever the text, credentials never reach the log: values of
secret-looking keys and Authorization/Basic/Bearer/signature material are replaced."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
REDACTED = "HIDDEN_DUE_TO_SECURITY_REASONS"
# Keys whose values are credentials wherever they appear (compared case-insensitively, without - and _).
SECRET_KEYS = frozenset(
    {
        "secretaccesskey",
        "awssecretaccesskey",
        "sessiontoken",
        "securitytoken",
        "xamzsecuritytoken",
        "password",
        "newpassword",
        "oldpassword",
        "authorizationtoken",
        "authorization",
        "signature",
        "xamzsignature",
        "privatekey",
        "token",
        "secret",
        "samlassertion",
        "webidentitytoken",
    }
)
_SECRET_TEXT = re.compile(
    r"(?i)("
    r"(?:authorization|x-amz-security-token|x-amz-signature|signature|secret[_-]?access[_-]?key|"
    r"session[_-]?token|password|token)"
    r"[\"']?\s*[:=]\s*[\"']?)"
    r"((?:basic|bearer|aws4-hmac-sha256)\s+)?"
    r"[^\s\"',&;]+"
)
QUIET_LOGGERS = ("aiosqlite", "sqlalchemy", "asyncpg", "alembic.runtime.plugins", "botocore", "urllib3")
_BASIC_OR_BEARER = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}")


def is_secret_key(key: str) -> bool:
    return key.replace("-", "").replace("_", "").lower() in SECRET_KEYS


def scrub(text: str) -> str:
    """`text` with credential values replaced, for free-form messages and tracebacks."""
    if not text:
        return text
    text = _SECRET_TEXT.sub(lambda m: m.group(1) + REDACTED, text)
    return _BASIC_OR_BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact(value: Any) -> Any:
    """A copy of `value` (JSON-like) with the values of secret keys replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(str(k)) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(redact(fields))
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, separators=(",", ":"))


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def level_number(level: str) -> int:
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    return 5 if name == "trace" else logging.getLevelName(name.upper())


def logging_config(level: str) -> dict[str, Any]:
    """A logging.config dict: every logger (ours, uvicorn's, alembic's) writes JSON to stderr."""
    number = level_number(level)
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": number},
        "loggers": {
            **{
                name: {"handlers": [], "level": number, "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dockyard")
            },
            # Database libraries log statements with their parameters (access keys, say) at info
            # and debug: never below warning, whatever the level asked for.
            **{
                name: {"handlers": [], "level": max(number, logging.WARNING), "propagate": True}
                for name in QUIET_LOGGERS
            },
        },
    }


def configure(level: str) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level))
