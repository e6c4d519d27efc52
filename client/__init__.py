"""Python client of tabletlog: ``AsyncClient`` (asyncio) and ``Client`` (blocking, thread-safe).

Quick start::

    from client import Client

    with Client("127.0.0.1:7101") as c:
        c.create_log("events", tablets=3)
        with c.producer("events") as p:
            p.send(b"hello", key=b"user-1").result()
        for record in c.consume("events", tablet=0, start="earliest", stop_at_end=True):
            print(record.offset, record.value)

With asyncio, ``await producer.send(...)`` queues a record and returns a :class:`Delivery` at
once (awaiting it gives ``(tablet, offset)`` once acknowledged)::

    async with AsyncClient("127.0.0.1:7101") as c, c.producer("events") as p:
        deliveries = [await p.send(b"event %d" % i) for i in range(100_000)]
        await p.flush()
        first = deliveries[0].result()
"""

from client.accumulator import Delivery
from client.async_client import AsyncClient
from client.consumer import Consumer
from client.errors import ClientError
from client.models import (
    ClusterInfo,
    LogDescription,
    NodeInfo,
    Record,
    RecordMetadata,
    Status,
    TabletInfo,
)
from client.producer import Producer
from client.sync import Client, SyncConsumer, SyncProducer

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ClusterInfo",
    "Consumer",
    "Delivery",
    "LogDescription",
    "NodeInfo",
    "Producer",
    "Record",
    "RecordMetadata",
    "Status",
    "SyncConsumer",
    "SyncProducer",
    "TabletInfo",
]
