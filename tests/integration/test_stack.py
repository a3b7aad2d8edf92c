"""The stack's broker is a real Kafka that a plain aiokafka client can use."""

import asyncio
import subprocess
import sys
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def test_plain_aiokafka_client_produces_and_consumes(kafka):
    topic = f"plain-{uuid.uuid4().hex[:8]}"

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        cluster = await admin.describe_cluster()
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
        await producer.start()
        await producer.send_and_wait(topic, b"hello", key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        return cluster, record

    cluster, record = asyncio.run(scenario())
    assert (record.key, record.value) == (b"k", b"hello")
    assert len(cluster["brokers"]) == 1


def test_stack_status_reports_a_ready_broker(kafka):
    port = kafka.bootstrap_servers.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", "stack", "status", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready, 1 broker(s)" in result.stdout
    assert f"127.0.0.1:{port}" in result.stdout
    assert "logs:" in result.stdout
    assert "data:" in result.stdout
