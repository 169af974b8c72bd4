#!/usr/bin/env python3
"""Produce write-back commands with Confluent's own Avro serializer (confluent-kafka for Python).

The subjects are the ones `athena-connect schemas register` creates: TopicRecordNameStrategy
(`<topic>-<record full name>`), so several command types share one family topic. The
serializer does not register anything (`auto.register.schemas` off): it looks each schema up
under its subject and fails if the deployment has not registered it.

    pip install 'confluent-kafka[avro,schemaregistry]'
    python3 schemas/clients/confluent_produce.py job.json      # or the job on stdin

job.json:
    {"bootstrap": "127.0.0.1:9092",
     "registry": "http://127.0.0.1:8081/apis/ccompat/v7",
     "schemas_dir": "schemas/commands",
     "records": [{"topic": "athena.cmd.appointments.v1", "key": "195900/1000001",
                  "schema": "UpdateAppointment", "value": {...}}]}

A value is the plain JSON form of the record (as in schemas/examples/: unions unwrapped,
timestamps as epoch milliseconds, dates as days since the epoch); a `bytes` field may be given
as text (sent as its UTF-8 bytes). Prints one line per delivered record; exits 1 on any error.
"""

import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer


def bytes_fields(schema):
    return {f["name"] for f in schema["fields"] if f["type"] == "bytes"}


def main():
    job = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    registry = SchemaRegistryClient({"url": job["registry"]})
    serializers = {}
    producer = Producer({"bootstrap.servers": job["bootstrap"], "enable.idempotence": True})
    keys = StringSerializer("utf_8")
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))
        else:
            print(f"delivered {msg.topic()}/{msg.partition()}@{msg.offset()}")

    for r in job["records"]:
        name = r["schema"]
        if name not in serializers:
            text = open(f"{job['schemas_dir']}/{name}.avsc").read()
            ser = AvroSerializer(
                registry,
                text,
                conf={
                    "auto.register.schemas": False,
                    "subject.name.strategy": topic_record_subject_name_strategy,
                },
            )
            serializers[name] = (ser, bytes_fields(json.loads(text)))
        ser, as_bytes = serializers[name]
        value = dict(r["value"])
        for f in as_bytes:
            if isinstance(value.get(f), str):
                value[f] = value[f].encode("utf-8")
        ctx = SerializationContext(r["topic"], MessageField.VALUE)
        producer.produce(
            r["topic"],
            key=keys(r["key"]),
            value=ser(value, ctx),
            on_delivery=delivered,
        )
        producer.poll(0)
    producer.flush(30)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
