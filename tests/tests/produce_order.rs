//! `connector_core::produce::produce_all` keeps per-key order when the producer's local queue is
//! full: with a queue of a few messages, thousands of records for one key must still arrive in the
//! order they were handed over (a record waiting for room is never overtaken by a later one).

use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use connector_core::produce::produce_all;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;

#[tokio::test]
async fn a_full_local_queue_never_reorders_a_batch() {
    let stack = Stack::get().await;
    let topic = unique("order");
    stack.create_topic(&topic, 1).await;
    let mut kafka = stack.kafka();
    // Room for a handful of messages only, so nearly every record waits for a delivery.
    kafka
        .producer
        .insert("queue.buffering.max.messages".into(), "4".into());
    kafka.producer.insert("linger.ms".into(), "0".into());
    let producer = kafka.build_producer().expect("producer");

    let n = 3_000usize;
    let values: Vec<String> = (0..n).map(|i| format!("{i:06}")).collect();
    let acked = produce_all(
        &producer,
        values
            .iter()
            .map(|v| FutureRecord::to(&topic).key("one-key").payload(v.as_str())),
    )
    .await
    .expect("every record acknowledged");
    assert_eq!(acked, n);

    let got: Vec<String> = stack
        .consume(&topic, n, Duration::from_secs(60))
        .await
        .iter()
        .map(|m| String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap())
        .collect();
    assert_eq!(
        got, values,
        "records of one key arrive in the order handed over"
    );
}
