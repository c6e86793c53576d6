"""The classic Python baseline for `deno task bench`: kafka-python (Debian's
python3-kafka), used the way the usual Kafka-with-Python demos use it.

  produce TOPIC FILE COUNT  one `send` per trade (key, value and the same two
                            headers as ours), then `flush`; acks=all like ours
  consume TOPIC GROUP COUNT a group consumer from the earliest offset, each value
                            through json.loads, until COUNT records

Prints one JSON line on stdout: {"records": N, "seconds": S}. The clock starts at
the first send (the file is read before) or the first record received, and stops
after the flush or at the last record, so start-up is not counted.
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer

BROKERS = "127.0.0.1:9092"


def produce(brokers, topic, path, count):
    records = []
    with open(path, "rb") as lines:
        for line in lines:
            if len(records) >= count:
                break
            key, value = line.rstrip(b"\n").split(b"\t", 1)
            records.append((key, value))
    received_at = str(int(time.time() * 1000)).encode()
    headers = [("received-at", received_at), ("source", b"sim")]
    producer = KafkaProducer(bootstrap_servers=brokers, acks="all")
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return len(records), seconds


def consume(brokers, topic, group, count):
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=brokers,
        group_id=group,
        auto_offset_reset="earliest",
        value_deserializer=json.loads,
        consumer_timeout_ms=30000,
    )
    seen = 0
    started = None
    for _message in consumer:
        if started is None:
            started = time.perf_counter()
        seen += 1
        if seen >= count:
            break
    seconds = time.perf_counter() - started if started is not None else 0.0
    consumer.close()
    return seen, seconds


def main(args):
    brokers = BROKERS
    if args and args[0].startswith("--brokers="):
        brokers = args.pop(0).split("=", 1)[1]
    if len(args) == 4 and args[0] == "produce":
        records, seconds = produce(brokers, args[1], args[2], int(args[3]))
    elif len(args) == 4 and args[0] == "consume":
        records, seconds = consume(brokers, args[1], args[2], int(args[3]))
    else:
        print("usage: kafka_python.py [--brokers=H:P] produce TOPIC FILE COUNT | consume TOPIC GROUP COUNT",
              file=sys.stderr)
        return 2
    print(json.dumps({"records": records, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
