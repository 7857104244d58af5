"""`kpi kafka`: the local broker starts once, keeps its data, and stops by its own pid."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.local.broker import BrokerError, LocalBroker, create_topics, port_open
from stream.settings import TopicSpec
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_broker_is_idempotent_keeps_topics_and_stops_cleanly(tmp_path: Path) -> None:
    broker = LocalBroker(port=free_port(), controller_port=free_port(), state_dir=tmp_path)
    try:
        broker.up()
        first_pid = broker.status().pid
        broker.up()  # already running: nothing new is started
        assert broker.status().pid == first_pid

        spec = TopicSpec("kept.events", 2)
        assert create_topics(broker.bootstrap, [spec]) == ["kept.events"]
        assert create_topics(broker.bootstrap, [spec]) == []  # idempotent
        with pytest.raises(BrokerError, match=r"kept\.events exists with 2 partitions"):
            create_topics(broker.bootstrap, [TopicSpec("kept.events", 4)])
        assert "kept.events" in broker.status().topics

        assert broker.down()
        assert not port_open("127.0.0.1", broker.port)
        assert not broker.status().running
        assert not broker.down()  # nothing of ours left to stop

        broker.up()  # same state directory: the data survived
        assert "kept.events" in broker.status().topics
    finally:
        broker.down()


def test_a_taken_port_is_reported_not_fought_over(tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalBroker(port=port, controller_port=free_port(), state_dir=tmp_path)
        with pytest.raises(BrokerError, match=f"port {port} is taken"):
            broker.up()
