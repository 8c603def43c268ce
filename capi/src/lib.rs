//! The C API of densa (`include/densa.h`), built as `libdensa_c.so`.
//!
//! Every exported function catches panics (none may unwind into C), checks its pointers,
//! and reports failures through a thread-local last-error string. This crate is the FFI
//! boundary: its `unsafe` is reading the caller's pointers, each use argued in place.

// Functions stay short enough to read at once (clippy.toml: 80 lines).
#![warn(clippy::too_many_lines)]

use densa::{Encoder, Input, Options, Precision, Prompt};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

mod heads;

/// `densa_options` (see the header); only grows at its end, versioned by `size`.
#[repr(C)]
pub struct DensaOptions {
    pub size: usize,
    pub threads: u32,
    pub precision: u32,
    pub normalize: u32,
    pub max_length: u32,
    pub batch_size: u32,
    pub truncate_dim: u32,
    pub prompt: *const c_char,
}

/// The opaque `densa_encoder`.
pub struct DensaEncoder {
    encoder: Encoder,
    /// The process that opened it: an encoder's worker threads do not survive `fork()`, so a
    /// child's calls are refused instead of waiting forever on threads it does not have.
    opened_by: u32,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: impl Into<String>) {
    // Interior NULs would cut the C string short: replace them.
    let text = message.into().replace('\0', "\\0");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning an error or a panic into `fallback` plus the last-error message.
pub(crate) fn guarded<T>(fallback: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        // The last error stays until the next failure (as errno): a successful call does not
        // erase the message a caller has not read yet.
        Ok(Ok(value)) => value,
        Ok(Err(message)) => {
            set_error(message);
            fallback
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            set_error(format!("densa: internal error (please report): {what}"));
            fallback
        }
    }
}

/// A NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|e| format!("{what} is not valid UTF-8 ({e})"))
}

/// `count` strings from a C array of pointers.
///
/// # Safety
/// `array` is NULL or points at `count` pointers, each NULL or a NUL-terminated string.
pub(crate) unsafe fn c_strings<'a>(
    array: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if array.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: `array` holds `count` pointers (contract).
    let pointers = unsafe { std::slice::from_raw_parts(array, count) };
    pointers
        .iter()
        .enumerate()
        // SAFETY: each pointer is NULL or a NUL-terminated string (contract).
        .map(|(i, &p)| unsafe { c_str(p, &format!("{what}[{i}]")) })
        .collect()
}

/// The library options a `densa_options` stands for (defaults for NULL, and for the fields an
/// older, smaller struct lacks).
///
/// # Safety
/// `options` is NULL or points at a `densa_options` filled by the header's
/// `densa_options_init` (at least `size` readable bytes).
pub(crate) unsafe fn parse_options(options: *const DensaOptions) -> Result<Options, String> {
    let mut opts = Options::default();
    if !options.is_null() {
        // SAFETY: non-NULL and initialised by densa_options_init (contract): its first
        // field, `size`, is the size of the caller's struct.
        let size = unsafe { options.cast::<usize>().read_unaligned() };
        if size < std::mem::size_of::<usize>() {
            return Err(format!(
                "densa_options.size is {size}: call densa_options_init first"
            ));
        }
        // A field the caller's (older, smaller) struct lacks keeps its default.
        let field = |offset: usize| -> Option<u32> {
            (offset + std::mem::size_of::<u32>() <= size).then(|| {
                // SAFETY: the caller's struct holds `size` readable bytes (contract) and
                // this field lies within them (checked).
                unsafe {
                    options
                        .cast::<u8>()
                        .add(offset)
                        .cast::<u32>()
                        .read_unaligned()
                }
            })
        };
        use std::mem::offset_of;
        if let Some(threads) = field(offset_of!(DensaOptions, threads)) {
            opts.threads = threads as usize;
        }
        if let Some(precision) = field(offset_of!(DensaOptions, precision)) {
            // DENSA_PRECISION_AUTO, _F32, _INT8 are 0, 1, 2: Precision::ALL's order.
            opts.precision = *Precision::ALL.get(precision as usize).ok_or_else(|| {
                format!("densa_options.precision {precision} is not DENSA_PRECISION_*")
            })?;
        }
        if let Some(normalize) = field(offset_of!(DensaOptions, normalize)) {
            opts.normalize = normalize != 0;
        }
        if let Some(max_length) = field(offset_of!(DensaOptions, max_length)) {
            opts.max_length = (max_length != 0).then_some(max_length as usize);
        }
        if let Some(batch_size) = field(offset_of!(DensaOptions, batch_size)).filter(|&b| b != 0) {
            opts.batch_size = batch_size as usize;
        }
        if let Some(n) = field(offset_of!(DensaOptions, truncate_dim)).filter(|&n| n != 0) {
            opts.truncate_dim = Some(n as usize);
        }
        let prompt_at = offset_of!(DensaOptions, prompt);
        if prompt_at + std::mem::size_of::<*const c_char>() <= size {
            // SAFETY: the caller's struct holds `size` readable bytes (contract) and this
            // field lies within them (checked).
            let prompt = unsafe {
                options
                    .cast::<u8>()
                    .add(prompt_at)
                    .cast::<*const c_char>()
                    .read_unaligned()
            };
            if !prompt.is_null() {
                // SAFETY: a non-NULL prompt is a NUL-terminated string (contract).
                let text = unsafe { c_str(prompt, "densa_options.prompt") }?;
                // "" is no prompt; NULL (above) keeps the folder's default.
                opts.prompt = Prompt::from_flags(Some(text), None).unwrap_or_default();
            }
        }
    }
    Ok(opts)
}

/// `densa_open`
///
/// # Safety
/// `model_dir` is a NUL-terminated string; `options` is NULL or points at a `densa_options`
/// filled by the header's `densa_options_init` (at least `size` readable bytes).
#[no_mangle]
pub unsafe extern "C" fn densa_open(
    model_dir: *const c_char,
    options: *const DensaOptions,
) -> *mut DensaEncoder {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: contract of this function.
        let dir = unsafe { c_str(model_dir, "model_dir") }?;
        // SAFETY: contract of this function.
        let opts = unsafe { parse_options(options) }?;
        let encoder = Encoder::from_dir(dir, opts).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(DensaEncoder {
            encoder,
            opened_by: std::process::id(),
        })))
    })
}

/// `densa_dim`
///
/// # Safety
/// `encoder` is NULL or was returned by `densa_open` and not closed.
#[no_mangle]
pub unsafe extern "C" fn densa_dim(encoder: *const DensaEncoder) -> usize {
    // SAFETY: NULL or a live encoder (contract).
    match unsafe { live_encoder(encoder) } {
        Ok(e) => e.encoder.dim(),
        Err(message) => {
            set_error(message);
            0
        }
    }
}

/// The live encoder behind `encoder`, or why it cannot be used.
///
/// # Safety
/// `encoder` is NULL or was returned by `densa_open` and not closed.
unsafe fn live_encoder<'a>(encoder: *const DensaEncoder) -> Result<&'a DensaEncoder, String> {
    // SAFETY: NULL or a live encoder (contract).
    let encoder = unsafe { encoder.as_ref() }.ok_or("encoder is NULL")?;
    same_process(encoder.opened_by, "encoder")?;
    Ok(encoder)
}

/// Refuses an object opened by another process (before a `fork()`): its worker threads do
/// not exist here, and a call would wait for them forever.
pub(crate) fn same_process(opened_by: u32, what: &str) -> Result<(), String> {
    if opened_by != std::process::id() {
        return Err(format!(
            "this {what} was opened by process {opened_by} before a fork(); its threads do not exist in this process: open the {what} after forking"
        ));
    }
    Ok(())
}

/// Checks everything about an embed call but the texts, before any text is read: the
/// encoder, that `out` holds `count` rows, and the pointers. Returns the floats to write.
///
/// # Safety
/// `encoder` is NULL or live.
unsafe fn check_embed_call<'a>(
    encoder: *const DensaEncoder,
    arrays: &[(*const *const c_char, &str)],
    count: usize,
    out: *mut f32,
    out_len: usize,
) -> Result<(&'a DensaEncoder, usize), String> {
    // SAFETY: contract of this function.
    let encoder = unsafe { live_encoder(encoder) }?;
    let dim = encoder.encoder.dim();
    let needed = count.checked_mul(dim).ok_or("count * dim overflows")?;
    if out_len < needed {
        return Err(format!(
            "out holds {out_len} floats, {count} inputs of dimension {dim} need {needed}"
        ));
    }
    if count > 0 {
        if let Some((_, what)) = arrays.iter().find(|(array, _)| array.is_null()) {
            return Err(format!("{what} is NULL"));
        }
        if out.is_null() {
            return Err("out is NULL".into());
        }
    }
    Ok((encoder, needed))
}

/// Embeds `inputs` into `out` (checked by [`check_embed_call`]).
///
/// # Safety
/// `out` has at least `needed` writable floats.
unsafe fn embed_into(
    encoder: &DensaEncoder,
    inputs: &[Input<'_>],
    out: *mut f32,
    needed: usize,
) -> Result<c_int, String> {
    if needed == 0 {
        return Ok(0);
    }
    let embeddings = encoder
        .encoder
        .embed_inputs(inputs)
        .map_err(|e| e.to_string())?;
    if embeddings.data.len() != needed {
        return Err(format!(
            "densa: internal error (please report): {} values for {needed}",
            embeddings.data.len()
        ));
    }
    // SAFETY: `out` has at least `needed` writable floats (contract, checked by the caller
    // against `out_len`), and `embeddings.data` holds exactly `needed` values.
    let target = unsafe { std::slice::from_raw_parts_mut(out, needed) };
    target.copy_from_slice(&embeddings.data);
    Ok(0)
}

/// One embed call: checks it, reads the strings of each array (one array: texts; two:
/// (title, text) pairs) and embeds them into `out`, reporting a failure through `guarded`.
///
/// # Safety
/// `encoder` is NULL or live; each array points at `count` NUL-terminated strings (checked
/// for NULL); `out` has `out_len` writable floats.
unsafe fn embed_call(
    encoder: *mut DensaEncoder,
    arrays: &[(*const *const c_char, &str)],
    count: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    guarded(-1, || {
        // SAFETY: contract of this function.
        let (encoder, needed) = unsafe { check_embed_call(encoder, arrays, count, out, out_len) }?;
        let mut strings = Vec::with_capacity(arrays.len());
        for &(array, what) in arrays {
            // SAFETY: contract of this function; `array` is not NULL when `count > 0`.
            strings.push(unsafe { c_strings(array, count, what) }?);
        }
        let inputs: Vec<Input> = match strings.as_slice() {
            [titles, texts] => titles
                .iter()
                .zip(texts)
                .map(|(&a, &b)| Input::Pair(a, b))
                .collect(),
            texts => texts.iter().flatten().map(|&t| Input::Text(t)).collect(),
        };
        // SAFETY: `out` holds `out_len >= needed` floats (contract, checked).
        unsafe { embed_into(encoder, &inputs, out, needed) }
    })
}

/// `densa_embed`
///
/// # Safety
/// `encoder` is live; `texts` points at `count` NUL-terminated strings; `out` has `out_len`
/// writable floats.
#[no_mangle]
pub unsafe extern "C" fn densa_embed(
    encoder: *mut DensaEncoder,
    texts: *const *const c_char,
    count: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    // SAFETY: this function's contract is `embed_call`'s for one array.
    unsafe { embed_call(encoder, &[(texts, "texts")], count, out, out_len) }
}

/// `densa_embed_pairs`
///
/// # Safety
/// As `densa_embed`, with `titles` and `texts` both of `count` strings.
#[no_mangle]
pub unsafe extern "C" fn densa_embed_pairs(
    encoder: *mut DensaEncoder,
    titles: *const *const c_char,
    texts: *const *const c_char,
    count: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    let arrays = [(titles, "titles"), (texts, "texts")];
    // SAFETY: this function's contract is `embed_call`'s for two arrays.
    unsafe { embed_call(encoder, &arrays, count, out, out_len) }
}

/// `densa_last_error`: the message of this thread's last failed call ("" if none has failed),
/// valid until this thread's next failed call (a successful call keeps it, as `include/densa.h`
/// says).
#[no_mangle]
pub extern "C" fn densa_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// `densa_close`
///
/// # Safety
/// `encoder` is NULL or was returned by `densa_open` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn densa_close(encoder: *mut DensaEncoder) {
    if !encoder.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: made by Box::into_raw in densa_open, closed once (contract).
            drop(unsafe { Box::from_raw(encoder) })
        }));
    }
}

/// `densa_version`
#[no_mangle]
pub extern "C" fn densa_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}
