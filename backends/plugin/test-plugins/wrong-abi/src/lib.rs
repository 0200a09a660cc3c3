//! Exports the entry symbol with a descriptor of ABI 99: the host must
//! refuse it before calling anything else.

use std::ffi::c_void;

use persistence_plugin_sdk::abi::{PluginDescriptor, RBuffer, RStr};

unsafe extern "C" fn create(_: RStr, _: RStr, _: *mut *mut c_void, _: *mut RBuffer) -> i32 {
    std::process::abort() // the host must never get this far
}
unsafe extern "C" fn call(
    _: *mut c_void,
    _: RStr,
    _: persistence_plugin_sdk::abi::Callback,
    _: *mut c_void,
    _: *mut RBuffer,
) -> i32 {
    std::process::abort()
}
unsafe extern "C" fn free_buffer(_: RBuffer) {}
unsafe extern "C" fn destroy(_: *mut c_void) {}

static DESCRIPTOR: PluginDescriptor = PluginDescriptor {
    abi_major: 99,
    abi_minor: 0,
    size: std::mem::size_of::<PluginDescriptor>(),
    name: RStr::new(b"from-the-future"),
    version: RStr::new(b"99.0"),
    backends: std::ptr::null(),
    backend_count: 0,
    create,
    call,
    free_buffer,
    destroy,
};

/// The entry point, of the wrong ABI version.
#[unsafe(no_mangle)]
pub extern "C" fn ta_persistence_plugin_v1() -> *const PluginDescriptor {
    &DESCRIPTOR
}
