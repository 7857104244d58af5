"""Faust's producer-buffer flush returns while messages are still queued when one takes
more than 0.1 s to hand over; ours waits for all of them (offsets are committed right
after the flush: what it leaves behind is a changelog record a kill -9 loses)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from stream.durable_flush import DurableFlushBuffer


class SlowChannel:
    """A client whose buffer is full: each hand-over takes `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.n)


def flushed_after(buffer_class: type[ProducerBuffer], messages: int) -> tuple[int, int]:
    """(handed over when flush returned, messages put)."""

    async def run() -> tuple[int, int]:
        buffer = buffer_class()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        channel = SlowChannel(delay_s=0.15)
        await buffer.start()
        try:
            for n in range(messages):
                buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))
            await buffer.flush()
            done = len(channel.published)
            while len(channel.published) < messages:  # drained before the stop
                await asyncio.sleep(0.05)
            return done, messages
        finally:
            await buffer.stop()

    return asyncio.run(run())


def test_faust_flush_returns_with_messages_left_behind() -> None:
    # The bug this module works around: if Faust fixes it, this fails and
    # stream/durable_flush.py can go.
    done, put = flushed_after(ProducerBuffer, 5)
    assert done < put


@pytest.mark.parametrize("messages", [1, 5])
def test_the_durable_flush_returns_once_every_message_is_handed_over(messages: int) -> None:
    done, put = flushed_after(DurableFlushBuffer, messages)
    assert done == put
