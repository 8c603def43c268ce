//! A passage collection: JSON lines read into [`Passage`]s, and the fingerprints that tell a
//! resumed build it is looking at the same passages and model.

use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::io::records::{lines, parse_json_record};
use crate::tokenizer::Input;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One passage of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub id: String,
    /// Encoded as the first text of the pair; an absent title encodes the text alone.
    pub title: Option<String>,
    pub text: String,
}

impl Passage {
    /// What the context encoder sees.
    pub fn input(&self) -> Input<'_> {
        match &self.title {
            Some(title) => Input::Pair(title, &self.text),
            None => Input::Text(&self.text),
        }
    }

    /// The passage as one text through `template`: `{title}` and `{text}` replaced; a
    /// passage without a title is its text alone (no dangling separator).
    pub fn templated(&self, template: &str) -> String {
        match &self.title {
            Some(title) if !title.is_empty() => template
                .replace("{title}", title)
                .replace("{text}", &self.text),
            _ => self.text.clone(),
        }
    }

    /// The passage as one line of `passages.jsonl` (no newline).
    pub(crate) fn to_json_line(&self) -> String {
        json!({ "id": self.id, "title": self.title, "text": self.text }).to_string()
    }
}

/// Reads a JSON lines collection: one object per line with `"text"` and optional `"id"`
/// (string or number; default: the line number from 0) and `"title"`. Blank lines are
/// skipped; ids must be unique. Errors name the file and line.
pub fn read_passages(path: &Path) -> Result<(Vec<Passage>, u64)> {
    let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e))?;
    let fingerprint = fnv1a(&bytes, FNV_OFFSET);
    let mut passages = Vec::new();
    // Line (1-based) of each id, to refuse duplicates: eval and users find passages by id.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in lines(&bytes) {
        let at = |message: String| {
            Error::InvalidInput(format!("{}: line {}: {message}", path.display(), i + 1))
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = parse_json_record(line).map_err(at)?;
        let id = match record.value.get("id") {
            None | Some(Value::Null) => i.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(at("\"id\" must be a string or a number".into())),
        };
        if let Some(first) = seen.insert(id.clone(), i + 1) {
            return Err(at(format!("id {id:?} was already used on line {first}")));
        }
        passages.push(Passage {
            id,
            title: record.title,
            text: record.text,
        });
    }
    Ok((passages, fingerprint))
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64-bit: a fingerprint (not a cryptographic hash) that tells a resumed run it is
/// looking at the same passages and model.
pub(crate) fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What identifies the encoder's vectors across machines: its config and tokenizer files (by
/// content), its weight files (by size and a sample of their bytes) and the encoding options.
pub(crate) fn model_fingerprint(encoder: &Encoder) -> u64 {
    let mut hash = FNV_OFFSET;
    let dir = encoder.dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    for path in names.iter().filter(|p| p.is_file()) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        hash = fnv1a(name.as_bytes(), hash);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        hash = fnv1a(&size.to_le_bytes(), hash);
        if name.ends_with(".json") || name.ends_with(".txt") {
            hash = fnv1a(&std::fs::read(path).unwrap_or_default(), hash);
        } else if let Ok(map) = crate::io::mapped::map_file(path) {
            // Weights: the first and last MiB (the safetensors header with every name, shape
            // and offset, and the first and last tensors' bytes) and 64 bytes of every MiB
            // between, which tells fine-tunes of one architecture apart without reading GBs.
            const MIB: usize = 1 << 20;
            let len = map.len();
            hash = fnv1a(&map[..len.min(MIB)], hash);
            hash = fnv1a(&map[len.saturating_sub(MIB)..], hash);
            for at in (MIB..len.saturating_sub(MIB)).step_by(MIB) {
                hash = fnv1a(&map[at..(at + 64).min(len)], hash);
            }
        }
    }
    let options = format!(
        "{}|{}|{}|{}",
        encoder.model().precision.name(),
        encoder.pooling().name(),
        encoder.normalizes(),
        encoder.tokenizer().max_length()
    );
    fnv1a(options.as_bytes(), hash)
}
