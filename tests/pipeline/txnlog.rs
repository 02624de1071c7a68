//! A topic read as `read_committed` defines it, from the log's own transaction markers.
//!
//! A `read_committed` consumer skips an aborted transaction's records only when the broker's
//! fetch response lists that transaction as aborted. tansu (0.6, every storage engine) always
//! sends an empty list: librdkafka then hands over aborted records as if committed. tansu does
//! write the markers, so this reader applies them itself: it fetches the raw record batches
//! (Kafka protocol, `read_uncommitted`), holds each producer's transactional records until
//! that producer's next control record, then keeps them on COMMIT and drops them on ABORT.
//! Batches compressed with lz4 (the daemon's default) are decompressed by `kafka-protocol`.
//! Records of a transaction still open at the end of the log are not returned, as
//! `read_committed` would not return them either.

use crate::harness::Record;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const FETCH_VERSION: i16 = 11;

/// A topic's data records sorted by the transaction markers that follow them.
#[derive(Default)]
pub struct TxnLog {
    /// Non-transactional records and those of committed transactions, in log order per
    /// partition.
    pub committed: Vec<Record>,
    /// Records of aborted transactions.
    pub aborted: usize,
    /// Records of transactions with no marker yet.
    pub open: usize,
}

/// Every data record of `topic`'s `partitions`, markers applied.
pub fn read_committed(addr: &str, topic: &str, partitions: i32) -> TxnLog {
    let mut conn = TcpStream::connect(addr).expect("connect to the broker");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut log = TxnLog::default();
    for p in 0..partitions {
        read_partition(&mut conn, topic, p, &mut log);
    }
    log
}

fn read_partition(conn: &mut TcpStream, topic: &str, partition: i32, log: &mut TxnLog) {
    let committed = &mut log.committed;
    let mut open: HashMap<i64, Vec<Record>> = HashMap::new();
    let mut next = 0i64;
    let mut empty = 0;
    for correlation in 1.. {
        let (mut bytes, high_watermark) = fetch(conn, correlation, topic, partition, next);
        if bytes.is_empty() {
            // tansu answers empty when its storage takes longer than the fetch wait (a busy
            // machine), so one empty answer is not the end: the end is the high watermark
            // reached and still nothing after a few more tries.
            empty += 1;
            assert!(empty < 40, "{topic}/{partition}: no records at {next}");
            if next >= high_watermark && empty >= 3 {
                break;
            }
            continue;
        }
        empty = 0;
        let before = next;
        while bytes.has_remaining() {
            let set = match RecordBatchDecoder::decode(&mut bytes) {
                Ok(set) => set,
                // A batch cut by the size limit: fetched again from `next`.
                Err(_) if next > before => break,
                Err(e) => panic!("{topic}/{partition}: undecodable batch at {next}: {e}"),
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.control {
                    // Control record key: version (i16), type (i16: 0 abort, 1 commit).
                    let kind = r
                        .key
                        .as_ref()
                        .filter(|k| k.len() >= 4)
                        .map(|k| i16::from_be_bytes([k[2], k[3]]));
                    let held = open.remove(&r.producer_id).unwrap_or_default();
                    match kind {
                        Some(1) => committed.extend(held),
                        Some(0) => log.aborted += held.len(),
                        other => panic!("unknown control record {other:?} in {topic}/{partition}"),
                    }
                } else {
                    let rec = to_record(partition, &r);
                    if r.transactional {
                        open.entry(r.producer_id).or_default().push(rec);
                    } else {
                        committed.push(rec);
                    }
                }
            }
        }
        assert!(
            next > before,
            "no progress reading {topic}/{partition} at {next}"
        );
    }
    log.open += open.values().map(Vec::len).sum::<usize>();
}

fn to_record(partition: i32, r: &kafka_protocol::records::Record) -> Record {
    Record {
        partition,
        offset: r.offset,
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| {
                let v = v.as_ref().map(|v| v.to_vec()).unwrap_or_default();
                (k.to_string(), String::from_utf8_lossy(&v).into_owned())
            })
            .collect(),
        timestamp_ms: Some(r.timestamp),
    }
}

/// One fetch of `partition` from `offset`: the partition's record bytes (empty when none came)
/// and its high watermark.
fn fetch(
    conn: &mut TcpStream,
    correlation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (Bytes, i64) {
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        // tansu answers nothing at all when max_wait is 0.
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("streamscore-test-txnlog")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, FetchRequest::header_version(FETCH_VERSION))
        .unwrap();
    request.encode(&mut body, FETCH_VERSION).unwrap();
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.put(body);
    conn.write_all(&frame).expect("send fetch");

    let mut size = [0u8; 4];
    conn.read_exact(&mut size).expect("fetch response size");
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    conn.read_exact(&mut buf).expect("fetch response");
    let mut buf = Bytes::from(buf);
    let rh = ResponseHeader::decode(&mut buf, FetchResponse::header_version(FETCH_VERSION))
        .expect("response header");
    assert_eq!(rh.correlation_id, correlation);
    let response = FetchResponse::decode(&mut buf, FETCH_VERSION).expect("fetch response");
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition);
    let Some(data) = data else {
        return (Bytes::new(), i64::MAX);
    };
    assert_eq!(data.error_code, 0, "fetch {topic}/{partition}: error");
    (data.records.unwrap_or_default(), data.high_watermark)
}

#[cfg(test)]
mod tests {
    use crate::harness::{rt, Broker};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use rdkafka::ClientConfig;
    use std::time::Duration;

    #[test]
    fn the_marker_reader_drops_aborted_transactions_that_tansu_shows() {
        let broker = Broker::start();
        rt().block_on(broker.create_topic("t", 1));
        let p: ThreadedProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("transactional.id", "txnlog-test")
            .create()
            .unwrap();
        let t = Duration::from_secs(30);
        p.init_transactions(t).unwrap();
        let send = |tag: &str, n: usize| {
            for i in 0..n {
                let key = format!("{tag}{i}");
                p.send(BaseRecord::to("t").key(&key).payload("v")).unwrap();
            }
            p.flush(t).unwrap();
        };
        p.begin_transaction().unwrap();
        send("aborted", 7);
        p.abort_transaction(t).unwrap();
        p.begin_transaction().unwrap();
        send("committed", 5);
        p.commit_transaction(t).unwrap();
        let plain = broker.read_all("t", 1, 12, Duration::from_secs(1), Duration::from_secs(20));
        let marked = super::read_committed(&broker.addr, "t", 1);
        assert_eq!((marked.aborted, marked.open), (7, 0));
        let keys: Vec<String> = marked
            .committed
            .iter()
            .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
            .collect();
        assert_eq!(
            keys,
            (0..5).map(|i| format!("committed{i}")).collect::<Vec<_>>()
        );
        // The broker defect this reader exists for; when tansu fixes it, this fails and the
        // reader can go.
        assert_eq!(
            plain.len(),
            12,
            "librdkafka read_committed on tansu shows aborted records"
        );
    }
}
