"""Structured logs: one JSON object per line on stderr, for any log shipper."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, ours and our libraries', as JSON lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines and Kafka client chatter drown the service's own story.
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
