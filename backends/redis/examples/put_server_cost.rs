//! What a put costs the server, measured by the server: starts its own
//! redis-server, writes 2,000 documents with two index terms, resets the
//! server's statistics, then makes 20,000 more puts (half create new keys,
//! half replace the first 2,000) and prints the script's time per call
//! (`INFO commandstats`) and the commands the scripts ran per put, with a
//! day's TTL and without, in turns, three rounds each.
//!
//! ```text
//! cargo run --release -p persistence-redis --example put_server_cost
//! ```

use std::time::Duration;

use persistence_core::backend::{Backend, DocumentWrite, Precondition};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

const WARM: usize = 2_000;
const PUTS: usize = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = RedisServer::start();
    let b = RedisBackend::connect(RedisOptions::new("127.0.0.1", server.port()))
        .await
        .expect("connect");
    let mut raw = redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    println!("ttl   round  µs per put (server)  commands per put");
    for round in 1..=3 {
        for ttl in [Some(Duration::from_secs(86_400)), None] {
            let ns = format!("cost-{round}-{}", ttl.is_some());
            let write = |i: usize| {
                DocumentWrite::new(vec![b'x'; 300])
                    .with_term("status", "running")
                    .with_term("type", format!("t{}", i % 5))
                    .with_ttl(ttl)
            };
            for i in 0..WARM {
                b.put(&ns, &format!("k{i}"), write(i), Precondition::Any)
                    .await
                    .expect("put");
            }
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut raw)
                .await
                .expect("reset");
            for i in 0..PUTS {
                let key = if i % 2 == 0 {
                    format!("n{i}")
                } else {
                    format!("k{}", i % WARM)
                };
                b.put(&ns, &key, write(i), Precondition::Any)
                    .await
                    .expect("put");
            }
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut raw)
                .await
                .expect("info");
            let mut per_call = 0.0;
            let mut commands = Vec::new();
            for line in info.lines() {
                let Some((name, rest)) = line
                    .strip_prefix("cmdstat_")
                    .and_then(|l| l.split_once(':'))
                else {
                    continue;
                };
                let field = |f: &str| {
                    rest.split(',')
                        .find_map(|kv| kv.strip_prefix(f))
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                if name == "evalsha" {
                    per_call = field("usec_per_call=");
                } else if name != "config" {
                    commands.push(format!("{name} {:.2}", field("calls=") / PUTS as f64));
                }
            }
            commands.sort();
            println!(
                "{:<5} {round:>5}  {per_call:>19.2}  {}",
                if ttl.is_some() { "day" } else { "none" },
                commands.join(", ")
            );
            b.clear_namespace(&ns).await.expect("clear");
        }
    }
}
