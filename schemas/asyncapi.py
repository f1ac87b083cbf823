"""An AsyncAPI 3.0 document of nbembed's events, generated from the models.

One channel per Kafka topic, one message per CloudEvents type (binary mode:
the ``ce_*`` headers as message headers, the pydantic model as payload).
"""

from __future__ import annotations

from typing import Any

from schemas.envelope import SPEC_VERSION
from schemas.events import ALL_EVENTS, NOTIFICATIONS, dlq_topic

CE_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
    "properties": {
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "ce_id": {"type": "string"},
        "ce_source": {"type": "string", "format": "uri-reference"},
        "ce_type": {"type": "string"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string"},
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def document(version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI document as a dict (dump it as JSON or YAML)."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event in ALL_EVENTS:
        name = event.__name__
        schema = event.model_json_schema()  # payloads are flat: no $refs to resolve
        messages[name] = {
            "name": event.event_type,
            "title": name,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {
                **CE_HEADERS,
                "properties": {
                    **CE_HEADERS["properties"],
                    "ce_type": {"type": "string", "const": event.event_type},
                },
            },
            "payload": schema,
            "bindings": {"kafka": {"key": {"type": "string", "description": "ordering key"}}},
        }
        channel = channels.setdefault(
            event.topic.replace(".", "-"),
            {
                "address": event.topic,
                "messages": {},
                "description": f"Kafka topic {event.topic}; "
                + (
                    "read by every gateway replica, never dead-lettered."
                    if event in NOTIFICATIONS
                    else f"failed messages go to {dlq_topic(event.topic)}."
                ),
            },
        )
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "nbembed events",
            "version": version,
            "description": "CloudEvents 1.0 in Kafka binary mode between nbembed's services.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages},
    }
