//! One 50 MB line: memory is bounded by what its first `max_length` tokens need (peak RSS of
//! the process under 600 MB), and its vector is the vector of its first 100 KB. Alone in its
//! test binary, so that the peak resident memory of waited children is this one's.

mod common;

use common::cli::{ok, s};
use common::{model_dir, read_npy};
use std::process::Command;

/// The largest resident memory of any child process waited for so far, in bytes (Linux
/// reports `ru_maxrss` in KiB).
fn peak_rss_of_children() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer, which points at enough space.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call above (and zeroed before).
    let usage = unsafe { usage.assume_init() };
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn a_50_mb_line_needs_only_its_first_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir("dpr-ctx-tiny");
    let sentence =
        "La Biblioteca Nacional de España guarda manuscritos del siglo XV y mapas antiguos. ";
    let line = sentence.repeat((50 << 20) / sentence.len());
    let huge = dir.path().join("huge.txt");
    std::fs::write(&huge, format!("{line}\n")).unwrap();
    let cut = line[..100 << 10].rfind(' ').unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, format!("{}\n", &line[..cut])).unwrap();

    let embed = |input: &std::path::Path, output: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_densa"))
            .args([
                "embed",
                "--model",
                s(&model),
                "--input",
                s(input),
                "--output",
                s(output),
            ])
            .output()
            .unwrap()
    };
    let start = std::time::Instant::now();
    let out = embed(&huge, &dir.path().join("huge.npy"));
    ok(&out);
    let seconds = start.elapsed().as_secs_f64();
    let peak_mb = peak_rss_of_children() as f64 / 1e6;
    println!("RELIABILITY 50 MB line: {seconds:.1} s, peak RSS {peak_mb:.0} MB");
    assert!(peak_mb < 600.0, "peak RSS {peak_mb} MB");
    ok(&embed(&small, &dir.path().join("small.npy")));
    let (huge_rows, dim, huge_vector) = read_npy(&dir.path().join("huge.npy"));
    let (small_rows, _, small_vector) = read_npy(&dir.path().join("small.npy"));
    assert_eq!((huge_rows, small_rows, dim), (1, 1, 32));
    assert_eq!(huge_vector, small_vector, "the same vector, bit for bit");
}
