//! A plugin whose backend panics in `put` and `get`, and whose class
//! `panics-on-create` panics while starting: the host must survive both.

use std::sync::Arc;

use async_trait_free::PanickingBackend;
use persistence_plugin_sdk::Capabilities;
use persistence_plugin_sdk::Plugin;
use persistence_plugin_sdk::{Error, SharedBackend};

mod async_trait_free {
    use persistence_plugin_sdk::MemoryBackend;
    use persistence_plugin_sdk::Result;
    use persistence_plugin_sdk::{
        Backend, Capabilities, Document, DocumentWrite, Health, Precondition, Version,
    };

    /// Memory, except that writes and reads panic.
    #[derive(Debug, Default)]
    pub struct PanickingBackend(pub MemoryBackend);

    impl Backend for PanickingBackend {
        fn name(&self) -> &str {
            "panicking"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn get<'a, 'b, 'c, 'f>(
            &'a self,
            _: &'b str,
            _: &'c str,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Option<Document>>> + Send + 'f>,
        >
        where
            'a: 'f,
            'b: 'f,
            'c: 'f,
        {
            Box::pin(async { panic!("deliberate panic in get") })
        }
        fn put<'a, 'b, 'c, 'f>(
            &'a self,
            _: &'b str,
            _: &'c str,
            _: DocumentWrite,
            _: Precondition,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Version>> + Send + 'f>>
        where
            'a: 'f,
            'b: 'f,
            'c: 'f,
        {
            panic!("deliberate panic in put")
        }
        fn remove<'a, 'b, 'c, 'f>(
            &'a self,
            ns: &'b str,
            key: &'c str,
            p: Precondition,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send + 'f>>
        where
            'a: 'f,
            'b: 'f,
            'c: 'f,
        {
            self.0.remove(ns, key, p)
        }
        fn lookup<'a, 'b, 'c, 'd, 'f>(
            &'a self,
            ns: &'b str,
            i: &'c str,
            t: &'d str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>>> + Send + 'f>>
        where
            'a: 'f,
            'b: 'f,
            'c: 'f,
            'd: 'f,
        {
            self.0.lookup(ns, i, t)
        }
        fn health<'a, 'f>(
            &'a self,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Health> + Send + 'f>>
        where
            'a: 'f,
        {
            Box::pin(async { Health::ok("panicking", "fine until you write") })
        }
    }
}

/// The panicking plugin.
struct Panicking;

impl Plugin for Panicking {
    const NAME: &'static str = "panicking";
    const VERSION: &'static str = "0";
    fn backends() -> Vec<(&'static str, Capabilities)> {
        vec![
            ("panics-on-call", Capabilities::default()),
            ("panics-on-create", Capabilities::default()),
        ]
    }
    fn create(name: &str, _config: &[u8]) -> Result<SharedBackend, Error> {
        if name == "panics-on-create" {
            panic!("deliberate panic in create");
        }
        Ok(Arc::new(PanickingBackend::default()))
    }
}

persistence_plugin_sdk::export_plugin!(Panicking);
