//! A passage collection: JSON lines read into [`Passage`]s, and the fingerprints that tell a
//! resumed build it is looking at the same passages and model.

use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::io::records::{lines, parse_json_record};
use crate::tokenizer::Input;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// An id as the user wrote it in JSON: a string or a number, given back the same way (the id
/// is what ties a hit to the user's own database).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Text(String),
    Number(serde_json::Number),
}

impl Id {
    /// The id a JSON value holds (`None` for anything but a string or a number).
    pub fn from_json(value: &Value) -> Option<Id> {
        match value {
            Value::String(s) => Some(Id::Text(s.clone())),
            Value::Number(n) => Some(Id::Number(n.clone())),
            _ => None,
        }
    }

    /// The id as JSON, as it came.
    pub fn to_json(&self) -> Value {
        match self {
            Id::Text(s) => Value::String(s.clone()),
            Id::Number(n) => Value::Number(n.clone()),
        }
    }
}

/// The text of the id (a number as JSON writes it): what eval's `passage_id` and the text
/// output match and print.
impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Text(s) => f.write_str(s),
            Id::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Id {
        Id::Text(text.to_owned())
    }
}

/// Where a passage cut from a document comes from: the document's id and the passage's
/// characters (Unicode scalar values, as Python indexes strings) `start..end` of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub doc_id: Id,
    pub start: usize,
    pub end: usize,
}

/// One passage of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub id: Id,
    /// Encoded as the first text of the pair; an absent title encodes the text alone.
    pub title: Option<String>,
    pub text: String,
    /// The document it was cut from (`densa chunk`), if any.
    pub origin: Option<Origin>,
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

    /// The passage as JSON: `{"id", "title", "text"}`, and `"doc_id"`, `"start"`, `"end"` for
    /// a passage cut from a document.
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "id": self.id.to_json(), "title": self.title, "text": self.text });
        if let Some(origin) = &self.origin {
            value["doc_id"] = origin.doc_id.to_json();
            value["start"] = origin.start.into();
            value["end"] = origin.end.into();
        }
        value
    }

    /// The passage as one line of `passages.jsonl` (no newline).
    pub(crate) fn to_json_line(&self) -> String {
        self.to_json().to_string()
    }

    /// A passage from one JSON object of a collection (`{"text", "id"?, "title"?, "doc_id"?,
    /// "start"?, "end"?}`); `default_id` when it has no `"id"`. The error says which field is
    /// wrong.
    pub fn from_json(value: &Value, default_id: usize) -> std::result::Result<Passage, String> {
        let string = |key: &str| match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("\"{key}\" must be a string")),
        };
        let id = |key: &str| match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Id::from_json(v)
                .map(Some)
                .ok_or_else(|| format!("\"{key}\" must be a string or a number")),
        };
        let offset = |key: &str| {
            value[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("\"{key}\" must be a character offset (an integer from 0)"))
        };
        let origin = match id("doc_id")? {
            Some(doc_id) => {
                let (start, end) = (offset("start")?, offset("end")?);
                if start > end {
                    return Err(format!("\"start\" {start} is after \"end\" {end}"));
                }
                Some(Origin { doc_id, start, end })
            }
            None => None,
        };
        Ok(Passage {
            id: id("id")?.unwrap_or_else(|| Id::Text(default_id.to_string())),
            title: string("title")?,
            text: string("text")?.ok_or("no \"text\" field")?,
            origin,
        })
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
        let passage = Passage::from_json(&record.value, i).map_err(at)?;
        if let Some(first) = seen.insert(passage.id.to_string(), i + 1) {
            let id = passage.id.to_string();
            return Err(at(format!("id {id:?} was already used on line {first}")));
        }
        passages.push(passage);
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
