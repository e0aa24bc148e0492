//! A RabbitMQ load client for tools/sidebyside.sh, measured beside `lienthong bench`:
//!
//!     amqp-load publish --url amqp://127.0.0.1:PORT/%2f --queue q --count 200000 --size 4096 --window 256
//!     amqp-load consume --url … --queue q --count 200000 --prefetch 256
//!
//! `publish` declares a durable quorum queue and publishes persistent messages on one channel in
//! confirm mode, keeping at most `window` unconfirmed (what the issue compares against:
//! a broker answer that means "stored on a quorum of disks"); the latency of a message is from
//! its publish to its confirm. `consume` reads `count` messages with manual acks, one ack per
//! message. Both print one JSON line: messages, seconds, rate, MB/s, p50/p99 ms.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

struct Args {
    mode: String,
    url: String,
    queue: String,
    count: usize,
    size: usize,
    window: usize,
    consumers: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        mode: it.next().unwrap_or_default(),
        url: "amqp://127.0.0.1:5672/%2f".into(),
        queue: "lienthong-sidebyside".into(),
        count: 100_000,
        size: 4096,
        window: 256,
        consumers: 1,
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || {
            value
                .parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: a number")))
        };
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--queue" => a.queue = value.clone(),
            "--count" => a.count = number(),
            "--size" => a.size = number(),
            "--window" | "--prefetch" => a.window = number(),
            "--consumers" => a.consumers = number().max(1),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "amqp-load: {why}\nusage: amqp-load publish|consume [--url U] [--queue Q] [--count N] [--size B] [--window W] [--consumers N]"
    );
    std::process::exit(2)
}

async fn channel(url: &str, queue: &str) -> Channel {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| usage(&format!("connect {url}: {e}")));
    let ch = conn.create_channel().await.expect("channel");
    let mut table = FieldTable::default();
    table.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue, durable, table)
        .await
        .expect("queue_declare");
    // The connection must outlive the channel: leak it for the life of the process.
    std::mem::forget(conn);
    ch
}

async fn publish(a: &Args) -> Vec<Duration> {
    let ch = channel(&a.url, &a.queue).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm_select");
    let body = vec![b'x'; a.size];
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut pending = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(a.count);
    let mut take = |c: (Instant, lapin::Result<Confirmation>)| match c.1 {
        Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => latencies.push(c.0.elapsed()),
        other => panic!("publish not confirmed: {other:?}"),
    };
    for _ in 0..a.count {
        if pending.len() >= a.window {
            take(pending.next().await.unwrap());
        }
        let sent = Instant::now();
        let confirm = ch
            .basic_publish(
                "",
                &a.queue,
                BasicPublishOptions::default(),
                &body,
                persistent.clone(),
            )
            .await
            .expect("publish");
        pending.push(async move { (sent, confirm.await) });
    }
    while let Some(c) = pending.next().await {
        take(c);
    }
    latencies
}

/// `consumers` connections, each consuming its share of `count` with one ack per message;
/// the latencies are the gaps between a consumer's deliveries.
async fn consume(a: &Args) -> Vec<Duration> {
    let share = a.count.div_ceil(a.consumers);
    let mut tasks = Vec::new();
    for k in 0..a.consumers {
        let n = share.min(a.count - (k * share).min(a.count));
        let (url, queue, prefetch) = (a.url.clone(), a.queue.clone(), a.window);
        tasks.push(tokio::spawn(async move {
            consume_one(&url, &queue, n, prefetch, k).await
        }));
    }
    let mut all = Vec::with_capacity(a.count);
    for t in tasks {
        all.extend(t.await.expect("consumer task"));
    }
    all
}

async fn consume_one(url: &str, queue: &str, n: usize, prefetch: usize, k: usize) -> Vec<Duration> {
    let ch = channel(url, queue).await;
    ch.basic_qos(prefetch.min(65_535) as u16, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue,
            &format!("amqp-load-{k}"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    let mut latencies = Vec::with_capacity(n);
    let mut last = Instant::now();
    while latencies.len() < n {
        let delivery = consumer
            .next()
            .await
            .expect("consumer ended")
            .expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        latencies.push(last.elapsed());
        last = Instant::now();
    }
    latencies
}

#[tokio::main]
async fn main() {
    let a = args();
    let started = Instant::now();
    let mut lat = match a.mode.as_str() {
        "publish" => publish(&a).await,
        "consume" => consume(&a).await,
        m => usage(&format!("mode {m:?}")),
    };
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "mode": a.mode, "messages": lat.len(), "size": a.size, "window": a.window,
            "secs": secs, "rate": lat.len() as f64 / secs,
            "mb_per_s": (lat.len() * a.size) as f64 / secs / 1e6,
            "p50_ms": at(0.5), "p99_ms": at(0.99),
        })
    );
}
