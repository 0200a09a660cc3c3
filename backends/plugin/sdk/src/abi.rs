//! The C ABI between the host and a plugin library (`docs/plugin-abi.md`).

use std::ffi::c_void;

/// Major version: a host loads only plugins with the same major.
pub const ABI_MAJOR: u32 = 1;
/// Minor version: a later minor only adds what an earlier plugin never
/// sees: fields appended to [`PluginDescriptor`], capability bits, and
/// request values sent only when those bits are set (1.1: the
/// `time_order` bit, newest-first and windowed scans; 1.2: the
/// `transactions` bit and the `transact` request).
pub const ABI_MINOR: u32 = 2;
/// The one symbol a plugin exports: `extern "C" fn() -> *const PluginDescriptor`.
pub const ENTRY_SYMBOL: &str = "ta_persistence_plugin_v1";

/// `call` returned without an answer yet: the callback will deliver it.
pub const STATUS_PENDING: i32 = -1;
/// Success; the buffer holds the response.
pub const STATUS_OK: i32 = 0;
/// Failure; the buffer holds an encoded error (see the codec).
pub const STATUS_ERROR: i32 = 1;

/// A borrowed UTF-8 string or byte slice.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RStr {
    /// Start (may be dangling when `len` is 0).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl RStr {
    /// Borrows `bytes`.
    pub const fn new(bytes: &[u8]) -> Self {
        RStr {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive the result.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller promises `ptr..ptr+len` is readable
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A buffer allocated by the plugin and freed only by its `free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct RBuffer {
    /// Start.
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
    /// Capacity (what the allocating side needs to free it).
    pub cap: usize,
}

// SAFETY: a buffer is plain owned memory handed from one thread to another.
unsafe impl Send for RBuffer {}

impl RBuffer {
    /// No buffer.
    pub const EMPTY: RBuffer = RBuffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Hands a vector over (to be freed with [`RBuffer::free`] on this side).
    pub fn from_vec(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        RBuffer {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Frees a buffer made by [`RBuffer::from_vec`] on this side of the boundary.
    ///
    /// # Safety
    /// The buffer must come from `from_vec` in this same library, once.
    pub unsafe fn free(self) {
        if !self.ptr.is_null() {
            // SAFETY: rebuilt from the parts `from_vec` produced
            drop(unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) });
        }
    }

    /// The bytes, borrowed.
    ///
    /// # Safety
    /// The buffer must be valid and not yet freed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: valid per the caller
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A backend a plugin offers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RBackendInfo {
    /// Its name (`TA_PERSISTENCE_CLASS` selects it).
    pub name: RStr,
    /// [`Capabilities`](persistence_core::backend::Capabilities) as bits, see [`capability_bits`].
    pub capabilities: u64,
}

/// Called by the plugin, from any thread, to deliver a pending answer:
/// `ctx` as given to `call`, the status, and a buffer the host frees with
/// the plugin's `free_buffer`.
pub type Callback = unsafe extern "C" fn(ctx: *mut c_void, status: i32, response: RBuffer);

/// What the entry symbol returns. Version 1.0; later minors append fields
/// and grow `size`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    /// [`ABI_MAJOR`] of the SDK the plugin was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] of the SDK the plugin was built with.
    pub abi_minor: u32,
    /// `size_of::<PluginDescriptor>()` as the plugin knows it.
    pub size: usize,
    /// The plugin's name.
    pub name: RStr,
    /// The plugin's version.
    pub version: RStr,
    /// The backends it offers.
    pub backends: *const RBackendInfo,
    /// How many.
    pub backend_count: usize,
    /// Creates an instance of backend `backend` from `config` (JSON bytes).
    /// Returns a status; on success `*instance` is set, on error `*error`
    /// holds an encoded error.
    pub create: unsafe extern "C" fn(
        backend: RStr,
        config: RStr,
        instance: *mut *mut c_void,
        error: *mut RBuffer,
    ) -> i32,
    /// Runs one request envelope. Returns `STATUS_OK`/`STATUS_ERROR` with the
    /// answer in `*response`, or `STATUS_PENDING` and later calls
    /// `callback(ctx, ...)` exactly once. The request is read before `call`
    /// returns.
    pub call: unsafe extern "C" fn(
        instance: *mut c_void,
        request: RStr,
        callback: Callback,
        ctx: *mut c_void,
        response: *mut RBuffer,
    ) -> i32,
    /// Frees a buffer the plugin allocated.
    pub free_buffer: unsafe extern "C" fn(buffer: RBuffer),
    /// Destroys an instance.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
}

// SAFETY: the descriptor and what it points to are immutable for the life
// of the library.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above.
unsafe impl Send for PluginDescriptor {}

/// Capabilities as the bits of [`RBackendInfo::capabilities`].
pub fn capability_bits(c: persistence_core::backend::Capabilities) -> u64 {
    [
        c.ttl,
        c.scan,
        c.scan_by_creation,
        c.count,
        c.native_batch,
        c.atomic_index,
        c.durable,
        c.time_order,
        c.transactions,
    ]
    .iter()
    .enumerate()
    .map(|(i, on)| u64::from(*on) << i)
    .sum()
}

/// The inverse of [`capability_bits`]; unknown bits are ignored.
pub fn capabilities_from_bits(b: u64) -> persistence_core::backend::Capabilities {
    let on = |i: u32| b & (1 << i) != 0;
    persistence_core::backend::Capabilities {
        ttl: on(0),
        scan: on(1),
        scan_by_creation: on(2),
        count: on(3),
        native_batch: on(4),
        atomic_index: on(5),
        durable: on(6),
        // ABI 1.1
        time_order: on(7),
        // ABI 1.x carries neither `namespaces` nor `index_terms`
        export: false,
        // ABI 1.2
        transactions: on(8),
        partitioned_transactions: false,
    }
}
