//! The checkpoint loader on arbitrary bytes: a safetensors file (header length, JSON header,
//! offsets, data) is mapped, indexed and loaded as bert-tiny's trunk. Any outcome but a
//! panic, an abort or a memory error is fine; an `Ok` must hold the tensors the config needs.
#![no_main]

use densa::checkpoint::Checkpoint;
use densa::model::{BertModel, Precision};
use densa::BertConfig;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn config() -> &'static BertConfig {
    static CONFIG: OnceLock<BertConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/bert-tiny/config.json");
        BertConfig::from_file(std::path::Path::new(path)).expect("fixture config")
    })
}

fuzz_target!(|data: &[u8]| {
    // One file per process, rewritten each run (the loader maps files, not memory).
    let path = std::env::temp_dir().join(format!("densa-fuzz-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(checkpoint) = Checkpoint::open_files(&[path]) {
        for info in checkpoint.tensor_infos() {
            let _ = checkpoint.non_finite_count(&info.name);
        }
        for precision in [Precision::F32, Precision::Int8] {
            let _ = BertModel::load(&checkpoint, config(), precision, true);
        }
    }
});
