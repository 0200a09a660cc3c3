//! A plugin that breaks the one-answer rule of the ABI, written against the
//! raw ABI as a hostile or careless author would. Its backends answer every
//! call with an `Unavailable` error, and:
//!
//! - `twice`: return pending, then call the callback twice from a thread;
//! - `inline-and-callback`: answer inline, and also call the callback later;
//! - `forged`: answer inline, and call the callback with a context the host
//!   never gave out.
//!
//! The host must answer each call once, ignore (and count) the extra
//! answers, and never touch memory it already freed.

use std::ffi::c_void;
use std::time::Duration;

use persistence_plugin_sdk::abi::{
    Callback, PluginDescriptor, RBackendInfo, RBuffer, RStr, ABI_MAJOR, ABI_MINOR, STATUS_ERROR,
    STATUS_OK, STATUS_PENDING,
};
use persistence_plugin_sdk::codec::encode_error;
use persistence_plugin_sdk::Error;

const TWICE: &str = "twice";
const INLINE_AND_CALLBACK: &str = "inline-and-callback";
const FORGED: &str = "forged";

/// The instance: which misbehaviour (a leaked, never freed box).
struct Mode(&'static str);

fn answer() -> RBuffer {
    RBuffer::from_vec(encode_error(&Error::Unavailable {
        backend: "answers-twice".into(),
        reason: "this plugin only ever says no".into(),
    }))
}

unsafe extern "C" fn create(
    backend: RStr,
    _: RStr,
    instance: *mut *mut c_void,
    _: *mut RBuffer,
) -> i32 {
    // SAFETY: the host passes a valid name for the call's duration
    let name = unsafe { std::slice::from_raw_parts(backend.ptr, backend.len) };
    let mode = match name {
        b"twice" => TWICE,
        b"inline-and-callback" => INLINE_AND_CALLBACK,
        _ => FORGED,
    };
    // SAFETY: the host passes a valid out-pointer
    unsafe { *instance = Box::into_raw(Box::new(Mode(mode))).cast() };
    STATUS_OK
}

unsafe extern "C" fn call(
    instance: *mut c_void,
    _: RStr,
    callback: Callback,
    ctx: *mut c_void,
    response: *mut RBuffer,
) -> i32 {
    // SAFETY: the instance came from `create`
    let mode = unsafe { &*instance.cast::<Mode>() }.0;
    let ctx = ctx as usize;
    let late = move |ctx: usize, times: usize| {
        std::thread::spawn(move || {
            for _ in 0..times {
                std::thread::sleep(Duration::from_micros(200));
                // SAFETY: as the ABI says, except that it is called too often
                unsafe { callback(ctx as *mut c_void, STATUS_ERROR, answer()) };
            }
        });
    };
    match mode {
        TWICE => {
            late(ctx, 2);
            STATUS_PENDING
        }
        INLINE_AND_CALLBACK => {
            late(ctx, 1);
            // SAFETY: the host passes a valid out-pointer
            unsafe { *response = answer() };
            STATUS_ERROR
        }
        _ => {
            late(ctx ^ 0x5a5a_5a5a, 1);
            // SAFETY: as above
            unsafe { *response = answer() };
            STATUS_ERROR
        }
    }
}

unsafe extern "C" fn free_buffer(buffer: RBuffer) {
    // SAFETY: every buffer this plugin hands out comes from `RBuffer::from_vec`
    unsafe { buffer.free() }
}

unsafe extern "C" fn destroy(_: *mut c_void) {
    // instances are leaked: a late callback thread may still read its mode
}

const fn s(text: &'static str) -> RStr {
    RStr {
        ptr: text.as_ptr(),
        len: text.len(),
    }
}

struct Backends([RBackendInfo; 3]);
// SAFETY: immutable statics
unsafe impl Sync for Backends {}

static BACKENDS: Backends = Backends([
    RBackendInfo {
        name: s(TWICE),
        capabilities: 0,
    },
    RBackendInfo {
        name: s(INLINE_AND_CALLBACK),
        capabilities: 0,
    },
    RBackendInfo {
        name: s(FORGED),
        capabilities: 0,
    },
]);

static DESCRIPTOR: PluginDescriptor = PluginDescriptor {
    abi_major: ABI_MAJOR,
    abi_minor: ABI_MINOR,
    size: std::mem::size_of::<PluginDescriptor>(),
    name: s("answers-twice"),
    version: s("0.1.0"),
    backends: BACKENDS.0.as_ptr(),
    backend_count: 3,
    create,
    call,
    free_buffer,
    destroy,
};

/// The entry point.
#[unsafe(no_mangle)]
pub extern "C" fn ta_persistence_plugin_v1() -> *const PluginDescriptor {
    &DESCRIPTOR
}
