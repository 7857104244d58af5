"""The topics the worker reads and writes. Values stay raw bytes: decoding is ours (orjson)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.settings import Settings


@dataclass(frozen=True)
class Topics:
    helpdesk: faust.TopicT
    orders: faust.TopicT
    indicators: faust.TopicT
    customers: faust.TopicT
    dlq: faust.TopicT
    partials: faust.TopicT
    kpi: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str, partitions: int) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    return Topics(
        helpdesk=app.topic(
            settings.helpdesk_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        ),
        orders=raw(settings.orders_topic, settings.partitions),
        indicators=raw(settings.indicators_topic, 1),
        customers=raw(settings.customers_topic, settings.partitions),
        dlq=raw(settings.dlq_topic, 1),
        partials=raw(settings.partials_topic, 1),
        kpi=raw(settings.kpi_topic, 1),
    )
