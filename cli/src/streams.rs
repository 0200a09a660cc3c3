//! `streams`: follow, append to and close run event streams on the engine
//! the settings choose (`[streams]`, `STREAMING_BACKEND`).

use std::process::ExitCode;

use futures::StreamExt;
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::streams::{Item, Offset, StartAt};

#[derive(Debug, clap::Subcommand)]
pub enum Streams {
    /// Follow a run's events: replay, then live, until the stream is
    /// closed (events as JSON lines with --json).
    Tail {
        /// The run (stream) to follow.
        run: String,
        /// Where to start: `beginning` (default), `now`, or an offset
        /// (SEQ-SUB, as a client's Last-Event-ID): the events after it.
        #[arg(long, default_value = "beginning")]
        from: String,
    },
    /// Append one event (its text as given) and print its offset.
    Append {
        /// The run (stream).
        run: String,
        /// The event.
        event: String,
    },
    /// Close a run's stream with a reason (success, error: ..., cancelled).
    Close {
        /// The run (stream).
        run: String,
        /// Why it ended.
        #[arg(default_value = "success")]
        reason: String,
    },
}

pub async fn run(
    command: &Streams,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let opened = factory.open_streams(settings).await?;
    if let Some(cause) = &opened.fallback_cause {
        eprintln!(
            "warning: streams on {} unavailable, running in memory: {cause}",
            opened.requested
        );
    }
    let streams = opened.streams;
    match command {
        Streams::Append { run, event } => {
            let offset = streams
                .append(run, event.clone().into_bytes().into())
                .await?;
            if json {
                println!("{}", serde_json::json!({"offset": offset.to_string()}));
            } else {
                println!("{offset}");
            }
        }
        Streams::Close { run, reason } => {
            streams.close(run, reason).await?;
        }
        Streams::Tail { run, from } => {
            let start = match from.as_str() {
                "beginning" => StartAt::Beginning,
                "now" => StartAt::Now,
                offset => StartAt::After(offset.parse::<Offset>()?),
            };
            let mut events = streams.subscribe(run, start).await?;
            while let Some(item) = events.next().await {
                match item {
                    Ok(Item::Event(e)) => {
                        if json {
                            let data = serde_json::from_slice::<serde_json::Value>(&e.data)
                                .unwrap_or_else(|_| String::from_utf8_lossy(&e.data).into());
                            println!(
                                "{}",
                                serde_json::json!({"offset": e.offset.to_string(), "data": data})
                            );
                        } else {
                            println!("{}  {}", e.offset, String::from_utf8_lossy(&e.data));
                        }
                    }
                    Ok(Item::End(reason)) => {
                        if json {
                            println!("{}", serde_json::json!({"end": reason}));
                        } else {
                            println!("-- end: {reason}");
                        }
                        break;
                    }
                    // an outage: said, and the subscription reads on
                    Err(e) if e.is_retryable() => eprintln!("warning: {e}; retrying"),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
