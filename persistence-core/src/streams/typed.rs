//! JSON events over any engine.

use std::marker::PhantomData;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Item, Offset, SharedStreams, StartAt};
use crate::error::{Error, Result};

/// What a typed subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedItem<T> {
    /// The next event, decoded, with its offset.
    Event(Offset, T),
    /// The close reason; the subscription finishes after it.
    End(String),
}

/// Event streams of JSON values of type `T` over any engine.
///
/// ```
/// use futures::StreamExt;
/// use persistence_core::streams::{JsonStreams, MemoryStreams, StartAt, TypedItem};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let events = JsonStreams::<serde_json::Value>::new(std::sync::Arc::new(MemoryStreams::new(Default::default())));
/// events.append("run-1", &serde_json::json!({"event": "values", "n": 1})).await.unwrap();
/// events.close("run-1", "success").await.unwrap();
/// let mut sub = events.subscribe("run-1", StartAt::Beginning).await.unwrap();
/// let Some(Ok(TypedItem::Event(_, first))) = sub.next().await else { panic!() };
/// assert_eq!(first["n"], 1);
/// # });
/// ```
#[derive(Debug)]
pub struct JsonStreams<T> {
    engine: SharedStreams,
    _events: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonStreams<T> {
    fn clone(&self) -> Self {
        JsonStreams {
            engine: self.engine.clone(),
            _events: PhantomData,
        }
    }
}

/// A typed subscription.
pub type TypedSubscription<T> = Pin<Box<dyn Stream<Item = Result<TypedItem<T>>> + Send>>;

impl<T: Serialize + DeserializeOwned + Send + 'static> JsonStreams<T> {
    /// JSON events over `engine`.
    pub fn new(engine: SharedStreams) -> Self {
        JsonStreams {
            engine,
            _events: PhantomData,
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &SharedStreams {
        &self.engine
    }

    /// Appends `event` as JSON.
    pub async fn append(&self, stream: &str, event: &T) -> Result<Offset> {
        let bytes = serde_json::to_vec(event)
            .map_err(|e| Error::InvalidInput(format!("event does not serialize: {e}")))?;
        self.engine.append(stream, bytes.into()).await
    }

    /// Closes the stream with a reason.
    pub async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        self.engine.close(stream, reason).await
    }

    /// Replays from `from`, then follows, decoding each event; one that
    /// does not decode is a `Corrupted` error naming the stream and offset
    /// (the subscription goes on after it).
    pub async fn subscribe(&self, stream: &str, from: StartAt) -> Result<TypedSubscription<T>> {
        let name = stream.to_string();
        let raw = self.engine.subscribe(stream, from).await?;
        Ok(Box::pin(raw.map(move |item| {
            match item? {
                Item::End(reason) => Ok(TypedItem::End(reason)),
                Item::Event(e) => serde_json::from_slice(&e.data)
                    .map(|v| TypedItem::Event(e.offset, v))
                    .map_err(|err| Error::Corrupted {
                        namespace: name.clone(),
                        key: e.offset.to_string(),
                        reason: format!("event is not the expected JSON: {err}"),
                        len: e.data.len(),
                    }),
            }
        })))
    }
}
