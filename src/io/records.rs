//! Input texts: one per line, or JSON lines (`{"text": ..., "title": ...}`).
//!
//! One line is one record, an empty line an empty text; a Windows `\r\n` ending is not part
//! of the text; a UTF-8 byte-order mark at the start of the input is skipped. Errors name the
//! source and the line.

use crate::error::{Error, Result};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// One input record: a text, or a (title, text) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Text(String),
    Pair(String, String),
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Reads `input` (a file, or `-` for standard input) whole.
pub fn read_input(input: &str) -> Result<Vec<u8>> {
    if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("<stdin>", e))?;
        Ok(bytes)
    } else {
        std::fs::read(input).map_err(|e| Error::reading(input, e))
    }
}

/// Splits `bytes` into lines: a final newline ends the last line (it does not start an empty
/// one), `\r\n` counts as `\n`, a leading byte-order mark is dropped. Yields `(index, line)`.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = strip_bom(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .enumerate()
}

/// Reads the records of `input` (a file or `-`): JSON lines when the name ends in `.jsonl`
/// (any case), else one text per line.
pub fn read_records(input: &str) -> Result<Vec<Record>> {
    let bytes = read_input(input)?;
    let jsonl = has_extension(Path::new(input), "jsonl");
    lines(&bytes)
        .map(|(i, line)| {
            let at = |message: String| {
                Error::InvalidInput(format!("{input}: line {}: {message}", i + 1))
            };
            if jsonl {
                let record = parse_json_record(line).map_err(at)?;
                return Ok(match record.title {
                    Some(title) => Record::Pair(title, record.text),
                    None => Record::Text(record.text),
                });
            }
            let text = std::str::from_utf8(line).map_err(|e| at(format!("invalid UTF-8 ({e})")))?;
            Ok(Record::Text(text.to_owned()))
        })
        .collect()
}

/// Whether `path`'s extension is `extension`, in any case (`X.NPY` is a `.npy`).
pub fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(extension))
}

/// One line of a JSON lines input: `"text"` and an optional `"title"`, both strings, and the
/// parsed object for any other field.
#[derive(Debug)]
pub struct JsonRecord {
    pub text: String,
    pub title: Option<String>,
    pub value: Value,
}

/// Parses one JSON lines line (`densa embed --input x.jsonl`, `densa index --passages`). The
/// error says what is wrong; the caller adds the file and line.
pub fn parse_json_record(line: &[u8]) -> std::result::Result<JsonRecord, String> {
    let text = std::str::from_utf8(strip_bom(line)).map_err(|e| format!("invalid UTF-8 ({e})"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let string = |key: &str| match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    };
    let text = string("text")?.ok_or("no \"text\" field")?;
    let title = string("title")?;
    Ok(JsonRecord { text, title, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_rules() {
        let got: Vec<_> = lines(b"\xEF\xBB\xBFa\r\n\nb\n").map(|(_, l)| l).collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"b"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").map(|(_, l)| l).collect::<Vec<_>>(), vec![b""]);
        assert_eq!(lines(b"x").count(), 1);
    }

    #[test]
    fn json_records() {
        let r = parse_json_record(b"\xEF\xBB\xBF{\"text\": \"t\", \"title\": \"a\"}").unwrap();
        assert_eq!((r.text.as_str(), r.title.as_deref()), ("t", Some("a")));
        assert!(parse_json_record(b"[1]")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(parse_json_record(b"{\"text\": 3}")
            .unwrap_err()
            .contains("string"));
        assert!(parse_json_record(b"{}")
            .unwrap_err()
            .contains("no \"text\""));
    }
}
