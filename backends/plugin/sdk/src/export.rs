//! The plugin side of the ABI: what `export_plugin!` wires up.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use persistence_core::backend::Capabilities;
use persistence_core::{Error, SharedBackend};

use crate::abi::{
    capability_bits, Callback, PluginDescriptor, RBackendInfo, RBuffer, RStr, ABI_MAJOR, ABI_MINOR,
    STATUS_ERROR, STATUS_OK, STATUS_PENDING,
};
use crate::codec::{encode_error, Request, Response};

/// A plugin: a name, a version, and the backends it can create.
/// Implement it and call [`export_plugin!`](crate::export_plugin).
pub trait Plugin: 'static {
    /// The plugin's name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// The backends it offers, with what each can do.
    fn backends() -> Vec<(&'static str, Capabilities)>;
    /// Creates backend `name` from `config` (the JSON object of the host's
    /// `[plugin.options]`). Runs inside the plugin's own tokio runtime.
    fn create(name: &str, config: &[u8]) -> Result<SharedBackend, Error>;
}

/// The plugin's own runtime: no tokio runtime crosses the boundary.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ta-plugin")
            .enable_all()
            .build()
            .expect("the plugin's runtime starts")
    })
}

struct Instance {
    backend: SharedBackend,
}

/// Keeps the descriptor and the memory it points to for the library's life.
#[doc(hidden)]
#[derive(Debug)]
pub struct Exported {
    descriptor: PluginDescriptor,
    _names: Vec<String>,
    _infos: Vec<RBackendInfo>,
}

// SAFETY: immutable after construction.
unsafe impl Send for Exported {}
// SAFETY: immutable after construction.
unsafe impl Sync for Exported {}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn panicked<P: Plugin>(during: &str, p: Box<dyn std::any::Any + Send>) -> Vec<u8> {
    encode_error(&Error::Plugin {
        plugin: P::NAME.into(),
        message: format!("panicked during {during}: {}", panic_text(p)),
    })
}

/// Builds the descriptor of plugin `P` (once per library).
#[doc(hidden)]
pub fn descriptor<P: Plugin>(cell: &'static OnceLock<Exported>) -> *const PluginDescriptor {
    let exported = cell.get_or_init(|| {
        let backends = P::backends();
        let names: Vec<String> = backends.iter().map(|(n, _)| n.to_string()).collect();
        let infos: Vec<RBackendInfo> = names
            .iter()
            .zip(&backends)
            .map(|(n, (_, caps))| RBackendInfo {
                name: RStr::new(n.as_bytes()),
                capabilities: capability_bits(*caps),
            })
            .collect();
        Exported {
            descriptor: PluginDescriptor {
                abi_major: ABI_MAJOR,
                abi_minor: ABI_MINOR,
                size: std::mem::size_of::<PluginDescriptor>(),
                name: RStr::new(P::NAME.as_bytes()),
                version: RStr::new(P::VERSION.as_bytes()),
                backends: infos.as_ptr(),
                backend_count: infos.len(),
                create: create::<P>,
                call: call::<P>,
                free_buffer,
                destroy,
            },
            _names: names,
            _infos: infos,
        }
    });
    &exported.descriptor
}

unsafe extern "C" fn create<P: Plugin>(
    backend: RStr,
    config: RStr,
    instance: *mut *mut c_void,
    error: *mut RBuffer,
) -> i32 {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes valid slices for the duration of the call
        let (name, config) = unsafe { (backend.as_bytes(), config.as_bytes()) };
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::InvalidInput("backend name is not UTF-8".into()))?;
        let _rt = runtime().enter();
        P::create(name, config)
    }));
    let out = match made {
        Ok(Ok(backend)) => {
            let boxed = Box::new(Instance { backend });
            // SAFETY: `instance` is a valid out-pointer from the host
            unsafe { *instance = Box::into_raw(boxed).cast() };
            return STATUS_OK;
        }
        Ok(Err(e)) => encode_error(&e),
        Err(p) => panicked::<P>("create", p),
    };
    // SAFETY: `error` is a valid out-pointer from the host
    unsafe { *error = RBuffer::from_vec(out) };
    STATUS_ERROR
}

async fn execute(backend: Arc<dyn persistence_core::Backend>, request: Request) -> (i32, Vec<u8>) {
    let answer = match request {
        Request::Get { ns, key } => backend.get(&ns, &key).await.map(Response::Document),
        Request::GetValue { ns, key } => backend.get_value(&ns, &key).await.map(Response::Value),
        Request::Put {
            ns,
            key,
            write,
            precondition,
        } => backend
            .put(&ns, &key, write, precondition)
            .await
            .map(Response::Version),
        Request::Remove {
            ns,
            key,
            precondition,
        } => backend
            .remove(&ns, &key, precondition)
            .await
            .map(Response::Removed),
        Request::Lookup { ns, index, term } => {
            backend.lookup(&ns, &index, &term).await.map(Response::Keys)
        }
        Request::Scan { ns, request } => backend.scan(&ns, request).await.map(Response::Page),
        Request::Count { ns } => backend.count(&ns).await.map(Response::Count),
        Request::Health => Ok(Response::Health(backend.health().await)),
        Request::Transact { writes } => backend.transact(writes).await.map(Response::Outcomes),
    };
    match answer {
        Ok(r) => (STATUS_OK, r.encode()),
        Err(e) => (STATUS_ERROR, encode_error(&e)),
    }
}

/// Lets a context pointer travel to the thread that completes the call.
struct SendPtr(*mut c_void);
// SAFETY: the host's context is only handed back to the host's callback.
unsafe impl Send for SendPtr {}

enum Outcome {
    Ready((i32, Vec<u8>)),
    Pending,
}

unsafe extern "C" fn call<P: Plugin>(
    instance: *mut c_void,
    request: RStr,
    callback: Callback,
    ctx: *mut c_void,
    response: *mut RBuffer,
) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the instance came from `create` and the request is valid
        // until `call` returns; it is decoded (copied) before that.
        let (backend, bytes) = unsafe {
            (
                (*instance.cast::<Instance>()).backend.clone(),
                request.as_bytes(),
            )
        };
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(e) => return Outcome::Ready((STATUS_ERROR, encode_error(&e))),
        };
        // Poll once here, inside our runtime's context: an operation that
        // completes at once (memory) answers without a thread hop; one that
        // waits continues on the plugin's own threads.
        let _rt = runtime().enter();
        let mut work = Box::pin(AssertUnwindSafe(execute(backend, request)).catch_unwind());
        match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(answer)) => Outcome::Ready(answer),
            Poll::Ready(Err(p)) => Outcome::Ready((STATUS_ERROR, panicked::<P>("call", p))),
            Poll::Pending => {
                let ctx = SendPtr(ctx);
                runtime().spawn(async move {
                    let ctx = ctx;
                    let (status, body) = match work.await {
                        Ok(answer) => answer,
                        Err(p) => (STATUS_ERROR, panicked::<P>("call", p)),
                    };
                    // SAFETY: the host gave this callback and context for exactly one answer
                    unsafe { callback(ctx.0, status, RBuffer::from_vec(body)) };
                });
                Outcome::Pending
            }
        }
    }));
    let (status, body) = match outcome {
        Ok(Outcome::Pending) => return STATUS_PENDING,
        Ok(Outcome::Ready(answer)) => answer,
        Err(p) => (STATUS_ERROR, panicked::<P>("call", p)),
    };
    // SAFETY: `response` is a valid out-pointer from the host
    unsafe { *response = RBuffer::from_vec(body) };
    status
}

unsafe extern "C" fn free_buffer(buffer: RBuffer) {
    // SAFETY: buffers handed to the host all come from `RBuffer::from_vec` here
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { buffer.free() }));
}

unsafe extern "C" fn destroy(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !instance.is_null() {
            let _rt = runtime().enter();
            // SAFETY: the instance came from `create` and is destroyed once
            drop(unsafe { Box::from_raw(instance.cast::<Instance>()) });
        }
    }));
}

/// Exports a [`Plugin`] from a `cdylib`: defines the entry symbol
/// `ta_persistence_plugin_v1`.
///
/// ```text
/// struct MyPlugin;
/// impl persistence_plugin_sdk::Plugin for MyPlugin { /* ... */ }
/// persistence_plugin_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The plugin's entry point (see `docs/plugin-abi.md`).
        #[unsafe(no_mangle)]
        pub extern "C" fn ta_persistence_plugin_v1() -> *const $crate::abi::PluginDescriptor {
            static EXPORTED: ::std::sync::OnceLock<$crate::export::Exported> =
                ::std::sync::OnceLock::new();
            match ::std::panic::catch_unwind(|| $crate::export::descriptor::<$plugin>(&EXPORTED)) {
                Ok(d) => d,
                Err(_) => ::std::ptr::null(),
            }
        }
    };
}
