//! Prints the single-core FMA peak: `cargo run --release -p densa-kernels --example fma_probe`.
fn main() {
    let (gflops, isa) = densa_kernels::probe::fma_peak_gflops(500);
    println!(
        "{{\"isa\": \"{}\", \"peak_gflops_one_core\": {gflops:.1}}}",
        isa.name()
    );
}
