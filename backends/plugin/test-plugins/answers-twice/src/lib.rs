//! A plugin that breaks the one-answer rule of the ABI, written against the
//! raw ABI as a hostile or careless author would. Its backends answer every
//! call with an `Unavailable` error, and:
//!
//! - `twice`: return pending, then call the callback twice from a thread;
//! - `inline-and-callback`: answer inline, and also call the callback later;
//! - `forged`: answer inline, and call the callback with a context the host
//!   never gave out;
//! - `huge-answer`: answer inline with a buffer claiming 2^40 bytes over a
//!   4-byte allocation;
//! - `start-fails`: `create` reports an error but hands over an instance
//!   anyway (`answers_twice_destroyed` counts the instances destroyed);
//! - `never-answers`: every call is pending, and no answer ever comes;
//! - `blocks`: every call holds the caller's thread for 300 ms, then answers.
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
const HUGE_ANSWER: &str = "huge-answer";
const START_FAILS: &str = "start-fails";
const NEVER_ANSWERS: &str = "never-answers";
const BLOCKS: &str = "blocks";
static DESTROYED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many instances the host destroyed.
#[unsafe(no_mangle)]
pub extern "C" fn answers_twice_destroyed() -> usize {
    DESTROYED.load(std::sync::atomic::Ordering::SeqCst)
}
const HUGE: usize = 1 << 40;
static SHORT: [u8; 4] = [0; 4];

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
    error: *mut RBuffer,
) -> i32 {
    // SAFETY: the host passes a valid name for the call's duration
    let name = unsafe { std::slice::from_raw_parts(backend.ptr, backend.len) };
    let mode = match name {
        b"twice" => TWICE,
        b"inline-and-callback" => INLINE_AND_CALLBACK,
        b"huge-answer" => HUGE_ANSWER,
        b"start-fails" => START_FAILS,
        b"never-answers" => NEVER_ANSWERS,
        b"blocks" => BLOCKS,
        _ => FORGED,
    };
    // SAFETY: the host passes a valid out-pointer
    unsafe { *instance = Box::into_raw(Box::new(Mode(mode))).cast() };
    if mode == START_FAILS {
        // SAFETY: the host passes a valid out-pointer
        unsafe { *error = answer() };
        return STATUS_ERROR;
    }
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
        NEVER_ANSWERS => STATUS_PENDING,
        BLOCKS => {
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: the host passes a valid out-pointer
            unsafe { *response = answer() };
            STATUS_ERROR
        }
        TWICE => {
            late(ctx, 2);
            STATUS_PENDING
        }
        HUGE_ANSWER => {
            let lie = RBuffer {
                ptr: SHORT.as_ptr().cast_mut(),
                len: HUGE,
                cap: HUGE,
            };
            // SAFETY: the host passes a valid out-pointer
            unsafe { *response = lie };
            STATUS_OK
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
    if buffer.cap == HUGE {
        return; // the lie points at a static
    }
    // SAFETY: every other buffer this plugin hands out comes from `RBuffer::from_vec`
    unsafe { buffer.free() }
}

unsafe extern "C" fn destroy(_: *mut c_void) {
    // instances are leaked: a late callback thread may still read its mode
    DESTROYED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

struct Backends([RBackendInfo; 7]);
// SAFETY: immutable statics
unsafe impl Sync for Backends {}

static BACKENDS: Backends = Backends([
    RBackendInfo {
        name: RStr::new(TWICE.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(INLINE_AND_CALLBACK.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(FORGED.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(HUGE_ANSWER.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(START_FAILS.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(NEVER_ANSWERS.as_bytes()),
        capabilities: 0,
    },
    RBackendInfo {
        name: RStr::new(BLOCKS.as_bytes()),
        capabilities: 0,
    },
]);

static DESCRIPTOR: PluginDescriptor = PluginDescriptor {
    abi_major: ABI_MAJOR,
    abi_minor: ABI_MINOR,
    size: std::mem::size_of::<PluginDescriptor>(),
    name: RStr::new("answers-twice".as_bytes()),
    version: RStr::new("0.1.0".as_bytes()),
    backends: BACKENDS.0.as_ptr(),
    backend_count: 7,
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
