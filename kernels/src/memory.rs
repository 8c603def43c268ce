//! Large, long-lived buffers (packed weights): zeroed, and backed by 2 MiB pages where the
//! system allows it. A BERT-base's packed weights in 4 KiB pages take ~110,000 page faults to
//! fill at load and a TLB miss per 4 KiB when streamed on every forward pass; in huge pages,
//! ~220 and one per 2 MiB.

/// `len` zeroed values, asking Linux for transparent huge pages (`MADV_HUGEPAGE`, honoured
/// when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`) before any
/// page is touched. Elsewhere, or if refused, a plain zeroed `Vec`.
pub fn zeroed_vec<T: Copy + Default>(len: usize) -> Vec<T> {
    // A zeroed allocation this large comes straight from mmap, untouched: the advice applies
    // before the first fault. (T is a plain number type, so all-zero bytes are T's zero.)
    let values = vec![T::default(); len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = len * std::mem::size_of::<T>();
        let start = values.as_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel backs the pages
            // of this range, which lies inside our allocation; their contents (zeros) stay.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    values
}

/// Bytes that live in a buffer someone else owns (a memory-mapped file), kept alive by a
/// shared handle: weights stored in the layout a kernel reads are used in place, not copied.
#[derive(Clone)]
pub struct SharedBytes {
    owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl SharedBytes {
    /// `owner`'s bytes `start .. start + len`; `None` if the range is not inside them.
    pub fn new(
        owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        len: usize,
    ) -> Option<Self> {
        let end = start.checked_add(len)?;
        ((*owner).as_ref().len() >= end).then_some(SharedBytes { owner, start, len })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }

    /// The bytes as `f32` values (little-endian, as safetensors stores them), or `None` if
    /// they do not start on a 4-byte boundary or are not a whole number of values.
    pub fn as_f32(&self) -> Option<&[f32]> {
        let bytes = self.as_bytes();
        if !cfg!(target_endian = "little")
            || !bytes.len().is_multiple_of(4)
            || !(bytes.as_ptr() as usize).is_multiple_of(4)
        {
            return None;
        }
        // SAFETY: the pointer is 4-byte aligned and the length a multiple of 4 (checked
        // above); every bit pattern is a valid f32; the slice keeps the borrow of `self`.
        Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) })
    }

    /// The bytes as `i8` values.
    pub fn as_i8(&self) -> &[i8] {
        let bytes = self.as_bytes();
        // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid in
        // both; the slice keeps the borrow of `self`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
