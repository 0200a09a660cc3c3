//! A plugin whose descriptor lies, in the way `TA_TEST_BAD_DESCRIPTOR`
//! names when the host calls the entry point: `null-name` (a null name
//! with a length), `null-table` (no backend table, one backend claimed),
//! `huge-count` (`usize::MAX` backends), `over-count` (4096 over a
//! one-entry table), `long-name` (a name of 2^40 bytes), `not-utf8`. The
//! host must refuse each with a typed error before it reads anything out of
//! bounds.

use std::ffi::c_void;

use persistence_plugin_sdk::abi::{
    Callback, PluginDescriptor, RBackendInfo, RBuffer, RStr, ABI_MAJOR, ABI_MINOR,
};

unsafe extern "C" fn create(_: RStr, _: RStr, _: *mut *mut c_void, _: *mut RBuffer) -> i32 {
    std::process::abort() // the host must refuse the descriptor first
}
unsafe extern "C" fn call(
    _: *mut c_void,
    _: RStr,
    _: Callback,
    _: *mut c_void,
    _: *mut RBuffer,
) -> i32 {
    std::process::abort()
}
unsafe extern "C" fn free_buffer(_: RBuffer) {}
unsafe extern "C" fn destroy(_: *mut c_void) {}

/// The entry point: a descriptor broken as the environment asks.
#[unsafe(no_mangle)]
pub extern "C" fn ta_persistence_plugin_v1() -> *const PluginDescriptor {
    let how = std::env::var("TA_TEST_BAD_DESCRIPTOR").unwrap_or_default();
    let one: &'static [RBackendInfo] = Box::leak(Box::new([RBackendInfo {
        name: RStr::new(b"only"),
        capabilities: 0,
    }]));
    let mut d = PluginDescriptor {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        size: std::mem::size_of::<PluginDescriptor>(),
        name: RStr::new(b"bad-descriptor"),
        version: RStr::new(b"0.1.0"),
        backends: one.as_ptr(),
        backend_count: 1,
        create,
        call,
        free_buffer,
        destroy,
    };
    match how.as_str() {
        "null-name" => {
            d.name = RStr {
                ptr: std::ptr::null(),
                len: 12,
            }
        }
        "null-table" => d.backends = std::ptr::null(),
        "huge-count" => d.backend_count = usize::MAX,
        "over-count" => d.backend_count = 4097,
        "long-name" => {
            d.name = RStr {
                ptr: b"x".as_ptr(),
                len: 1 << 40,
            }
        }
        "not-utf8" => d.version = RStr::new(b"\xff\xfe"),
        _ => {}
    }
    Box::leak(Box::new(d))
}
