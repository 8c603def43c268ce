//! `config.json` parsing and validation on arbitrary text: an error or a config within the
//! documented bounds, never a panic.
#![no_main]

use densa::BertConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = BertConfig::from_json(text) {
            assert!(config.hidden_size % config.num_attention_heads == 0);
            assert!(config.num_hidden_layers >= 1);
        }
    }
});
