"""The Faust application: configuration only. Topics, tables and agents are declared
in their own modules and attached by `build_worker`."""

from __future__ import annotations

import faust

from stream.durable_flush import FlushSafeApp
from stream.export.web_security import server_ssl_context, web_application_options
from stream.kafka_security import faust_credentials
from stream.settings import Settings


def make_app(settings: Settings) -> faust.App:
    # FlushSafeApp: offsets are committed only once the changelog records of the
    # committed events are all with the client (stream/durable_flush.py).
    app = FlushSafeApp(
        settings.app_id,
        broker=settings.broker_url,
        # TLS and SASL of every client Faust builds (consumer, producer, topic creation).
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        # Optional basic auth and HTTPS for /metrics and the API (web_security.py).
        web_application_options=web_application_options(settings),
        web_ssl_context=server_ssl_context(settings),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Lets Faust create its changelog topics; input topics are created beforehand
        # (`kpi kafka up`, or the operator) with the partitions the tables expect.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after this long (Faust's default: 60 s, the
        # whole of which a kill -9 costs). The consumer heartbeats from its own thread,
        # so a busy agent does not miss heartbeats.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        # Offsets are committed after the state changes of the batch are sent, so a
        # crash re-delivers events; dedupe by event_id makes re-delivery harmless.
        processing_guarantee="at_least_once",
        web_in_thread=False,
        producer_max_request_size=max(settings.max_message_bytes * 2, 1_048_576),
        # Every event writes its ticket to a changelog: batching those writes for 50 ms
        # turns thousands of small produce requests into a few large ones (aiokafka's
        # request encoding and batch set-up are per request; measured: 10 ms -> 50 ms,
        # 1,500-1,560 -> 1,760-1,890 events/s; 100 ms no better). Offsets are committed
        # only after a flush, so this delays nothing durable; KPI messages reach their
        # topic up to 50 ms later, /metrics not at all (it reads the worker's memory).
        producer_linger_ms=50,
        producer_max_batch_size=256 * 1024,
        # Faust's own recovery drops records of the input partitions fetched while it
        # seeks them (stream/recovery.py); this one resumes them in a safe order.
        TableManager="stream.recovery:OrderedTableManager",
    )
    # Read by the consumer thread when it builds the aiokafka consumer (recovery.py).
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app
