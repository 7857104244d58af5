"""The topics the worker reads and writes. Values stay raw bytes: decoding is ours (orjson)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.settings import Settings


@dataclass(frozen=True)
class Topics:
    helpdesk: faust.TopicT
    dlq: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    return Topics(
        helpdesk=app.topic(
            settings.helpdesk_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        ),
        dlq=app.topic(
            settings.dlq_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=1,
        ),
    )
