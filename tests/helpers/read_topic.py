"""Reads a whole topic from a secured broker with kafka-python (Debian's python3-kafka),
an independent client for tests/secure_test.ts. It takes the same variables as the
scripts (KAFKA_BROKERS, KAFKA_SSL_CA, KAFKA_SSL_CERT, KAFKA_SSL_KEY,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD), so the password
never appears on a command line.

  python3 read_topic.py TOPIC

Prints one JSON line per record: partition, offset, key, ts, headers, value (text).
"""

import json
import os
import sys

from kafka import KafkaConsumer, TopicPartition


def main(topic):
    env = os.environ
    options = {
        "bootstrap_servers": env["KAFKA_BROKERS"].split(","),
        "ssl_cafile": env["KAFKA_SSL_CA"],
        "enable_auto_commit": False,
        "group_id": None,
        "request_timeout_ms": 20000,
    }
    if env.get("KAFKA_SASL_MECHANISM"):
        options.update(
            security_protocol="SASL_SSL",
            sasl_mechanism=env["KAFKA_SASL_MECHANISM"].upper(),
            sasl_plain_username=env["KAFKA_SASL_USERNAME"],
            sasl_plain_password=env["KAFKA_SASL_PASSWORD"],
        )
    else:
        options.update(security_protocol="SSL")
    if env.get("KAFKA_SSL_CERT"):
        options.update(ssl_certfile=env["KAFKA_SSL_CERT"], ssl_keyfile=env["KAFKA_SSL_KEY"])
    consumer = KafkaConsumer(**options)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    left = {tp for tp in partitions if end[tp] > 0}
    while left:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for r in records:
                print(json.dumps({
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key.decode() if r.key is not None else None,
                    "ts": r.timestamp,
                    "headers": {k: v.decode() for k, v in r.headers},
                    "value": r.value.decode() if r.value is not None else None,
                }))
            if consumer.position(tp) >= end[tp]:
                left.discard(tp)
    consumer.close()


if __name__ == "__main__":
    main(sys.argv[1])
