//! `densa embed --output-kind dense|sparse|colbert`: bge-m3's three outputs (one pass each call).

use crate::{progress_bar, run_options, ModelArgs};
use densa::heads::m3::{OutputKind, M3};
use densa::io::output::write_output;
use densa::io::records::{has_extension, read_records, Record};
use densa::Error;
use serde_json::json;
use std::path::Path;

/// Encodes every text of `input` with the bge-m3 folder `model` and writes the `kind` output:
/// dense vectors as `densa embed` writes vectors (JSON lines or `.npy`); sparse vectors as
/// JSON lines of TEI's `/embed_sparse` shape, `[{"index": token id, "value": weight}]`;
/// ColBERT vectors as JSON lines (a list of vectors per text) or an `.npy` of every text's
/// rows one after the other with `<output>.offsets.json` beside it (text i's rows are
/// `offsets[i]..offsets[i + 1]`).
pub(crate) fn embed(
    model: &ModelArgs,
    max_length: Option<usize>,
    batch_size: usize,
    input: &str,
    output: &Path,
    kind: OutputKind,
) -> Result<(), Error> {
    let m3 = M3::from_dir(&model.model, run_options(model, max_length, batch_size))?;
    let records = read_records(input)?;
    let texts: Vec<&str> = records
        .iter()
        .enumerate()
        .map(|(i, record)| match record {
            Record::Text(text) => Ok(text.as_str()),
            Record::Pair(..) => Err(Error::InvalidInput(format!(
                "{input}: record {} has a title: bge-m3's outputs are of single texts",
                i + 1
            ))),
        })
        .collect::<Result<_, _>>()?;
    let npy = has_extension(output, "npy");
    if npy && kind == OutputKind::Sparse {
        return Err(Error::InvalidInput(format!(
            "{}: sparse vectors are written as JSON lines (a .npy holds a dense matrix)",
            output.display()
        )));
    }
    let progress = progress_bar("texts");
    progress.set_length(texts.len() as u64);
    let mut outputs = Vec::with_capacity(texts.len());
    for part in texts.chunks((batch_size * 16).max(1)) {
        outputs.extend(m3.encode(part)?);
        progress.inc(part.len() as u64);
    }
    progress.finish_and_clear();
    let h = m3.encoder().model().config.hidden_size;
    match (kind, npy) {
        (OutputKind::Dense, true) => write_output(output, |out| {
            let data: Vec<f32> = outputs.iter().flat_map(|o| o.dense.clone()).collect();
            densa::io::npy::write_f32_matrix(out, &data, outputs.len(), h)
        }),
        (OutputKind::Colbert, true) => {
            let mut offsets = vec![0usize];
            for o in &outputs {
                offsets.push(offsets.last().unwrap() + o.colbert.len() / m3.colbert_dim().max(1));
            }
            let offsets_path = output.with_extension("offsets.json");
            write_output(output, |out| {
                let data: Vec<f32> = outputs.iter().flat_map(|o| o.colbert.clone()).collect();
                let rows = *offsets.last().unwrap();
                densa::io::npy::write_f32_matrix(out, &data, rows, m3.colbert_dim())
            })?;
            write_output(&offsets_path, |out| writeln!(out, "{}", json!(offsets)))
        }
        (_, _) => write_output(output, |out| {
            for o in &outputs {
                let line = match kind {
                    OutputKind::Dense => json!(o.dense),
                    OutputKind::Sparse => json!(o
                        .sparse
                        .iter()
                        .map(|(index, value)| json!({ "index": index, "value": value }))
                        .collect::<Vec<_>>()),
                    OutputKind::Colbert => json!(o.colbert_rows().collect::<Vec<_>>()),
                };
                writeln!(out, "{line}")?;
            }
            Ok(())
        }),
    }
}
