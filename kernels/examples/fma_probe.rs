//! Prints the single-core FMA (and, with VNNI, int8) peak:
//! `cargo run --release -p densa-kernels --example fma_probe`.
fn main() {
    let (gflops, isa) = densa_kernels::probe::fma_peak_gflops(500);
    let vnni =
        densa_kernels::probe::vnni_peak_gops(500).map_or("null".to_string(), |g| format!("{g:.1}"));
    println!("{{\"isa\": \"{}\", \"peak_gflops_one_core\": {gflops:.1}, \"vnni_peak_gops_one_core\": {vnni}}}", isa.name());
}
