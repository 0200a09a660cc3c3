//! A shared library that is not a plugin: no entry symbol.

/// Something a library might export, but not `ta_persistence_plugin_v1`.
#[unsafe(no_mangle)]
pub extern "C" fn not_a_plugin() -> i32 {
    7
}
