//! Approximate search: an HNSW graph from USearch over an index's vectors, built once
//! (`densa ann`, or `densa index --ann hnsw`) and searched in place through a memory map
//! (USearch's `view`: the graph is never loaded into the heap).
//!
//! The graph holds the vectors as one of the storage kinds (`storage.rs`): float32, float16,
//! int8 codes (the collection's per-dimension scales; a query's weights `q_j · s_j` rounded to
//! int8, so that its inner product with a code row ranks as with the decoded vector) or sign
//! bits (Hamming distance). Its candidates are always rescored by their exact inner products
//! with the index's vectors, so scores are those of the exact search.
//!
//! The file is trusted only as far as it is checked: the manifest records its name, size,
//! parameters and a fingerprint of its bytes (and of the vectors it was built from); a file
//! that is missing, truncated, of another index, or whose header disagrees is an error naming
//! the check and the command that rebuilds it, before USearch reads it. Building writes a new
//! file under a new name, then switches the manifest to it, then removes the old one: a build
//! killed at any point leaves the folder as it was, searchable.

use super::reader::Index;
use super::storage::{Calibration, VectorKind};
use crate::error::{Error, Result};
use crate::io::mapped::{map_file, MappedMatrix};
use crate::io::output::write_output;
use crate::io::read_json;
use densa_kernels::search::Hit;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use usearch::{IndexOptions, MetricKind, ScalarKind};

/// How a graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnOptions {
    /// How the graph holds the vectors.
    pub vectors: VectorKind,
    /// HNSW's `M`: links per node (USearch's `connectivity`).
    pub connectivity: usize,
    /// Candidates considered while linking each new vector (`efConstruction`).
    pub expansion_add: usize,
    /// The default candidates considered while searching (`ef`; a search may ask for more).
    pub expansion_search: usize,
}

/// Measured on 1,000,000 × 384 vectors (docs/BENCHMARKS.md, issue 23): M 32 and
/// efConstruction 256 (FAISS's HNSW32 and a common efConstruction) build a graph whose
/// recall@10 reaches 0.97 at ef 768 (0.93 at 256, 0.96 at 512). Other M and efConstruction
/// were not compared at that size (each build is ~18 minutes on one core).
impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            vectors: VectorKind::F32,
            connectivity: 32,
            expansion_add: 256,
            expansion_search: 768,
        }
    }
}

/// What [`build_ann`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub vectors: usize,
}

/// The graph of an open index.
pub(super) struct Ann {
    /// Declared before `_mapped_graph`: dropped first, while the bytes it views are still mapped.
    graph: usearch::Index,
    /// The graph file, mapped and populated; USearch views it in place.
    _mapped_graph: std::sync::Arc<memmap2::Mmap>,
    options: AnnOptions,
    /// int8's scales or binary's thresholds, for the queries.
    calibration: Option<Calibration>,
    /// Searches at the default `ef` share it; a search at another `ef` holds it alone while
    /// the graph's setting is changed for it.
    expansion: RwLock<()>,
}

/// USearch's description of a graph of `kind` vectors of `dim` dimensions.
fn usearch_options(options: &AnnOptions, dim: usize) -> IndexOptions {
    let (metric, quantization) = match options.vectors {
        VectorKind::F32 => (MetricKind::IP, ScalarKind::F32),
        VectorKind::F16 => (MetricKind::IP, ScalarKind::F16),
        VectorKind::Int8 => (MetricKind::IP, ScalarKind::I8),
        VectorKind::Binary => (MetricKind::Hamming, ScalarKind::B1),
    };
    IndexOptions {
        dimensions: dim,
        metric,
        quantization,
        connectivity: options.connectivity,
        expansion_add: options.expansion_add,
        expansion_search: options.expansion_search,
        multi: false,
    }
}

/// Has `graph` measure with densa's kernels on this CPU's ISA (USearch, built without its
/// optional SIMD library, would use baseline x86-64 code): the same distance, `1 − a·b` for
/// float rows, `−a·b` for int8 codes, Hamming for bits. Set at every build and every open,
/// since a graph file records only the metric's kind.
fn use_densa_metric(
    graph: &mut usearch::Index,
    kind: VectorKind,
    dim: usize,
    calibration: Option<&Calibration>,
) {
    use densa_kernels::search::graph as metric;
    // SAFETY: USearch calls a graph's metric only on two of its vectors (stored rows or the
    // query being searched, which `Row` builds at the graph's width), each of the graph's
    // `dim` dimensions: `dim` f32, f16 or i8 values, or ⌈dim / 8⌉ bytes of bits.
    unsafe {
        match kind {
            VectorKind::F32 => graph.change_metric::<f32>(metric::ip_f32(dim)),
            VectorKind::F16 => {
                let ip = metric::ip_f16(dim);
                graph.change_metric::<usearch::f16>(Box::new(move |a, b| ip(a.cast(), b.cast())))
            }
            VectorKind::Int8 => {
                let scales = calibration.map_or(&[][..], |c| &c.values[..]);
                assert_eq!(scales.len(), dim, "an int8 graph's calibration");
                graph.change_metric::<i8>(metric::ip_i8(scales))
            }
            VectorKind::Binary => {
                let hamming = metric::hamming(dim.div_ceil(8));
                graph.change_metric::<usearch::b1x8>(Box::new(move |a, b| {
                    hamming(a.cast(), b.cast())
                }))
            }
        }
    }
}

/// The distance a graph of `kind` vectors was built with (recorded in the manifest: a graph
/// built with another is refused, not searched with the wrong one).
fn graph_metric(kind: VectorKind) -> &'static str {
    match kind {
        VectorKind::F32 | VectorKind::F16 => "1 - a.b",
        VectorKind::Int8 => "-sum(scale^2 a b)",
        VectorKind::Binary => "hamming",
    }
}

fn usearch_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Internal(format!("USearch: {what}: {error}"))
}

/// A row of the collection in the graph's form.
enum Row {
    F32(Vec<f32>),
    F16(Vec<i16>),
    I8(Vec<i8>),
    Bits(Vec<u8>),
}

impl Row {
    /// Row `i` of `vectors` as `kind` holds it.
    fn of(vectors: &MappedMatrix, i: usize, calibration: Option<&Calibration>) -> Row {
        let mut row = vec![0.0f32; vectors.cols()];
        vectors.row_f32(i, &mut row);
        Row::from_f32(row, calibration)
    }

    /// A float32 vector as the graph holds it (a query as the graph searches it, for
    /// binary).
    fn from_f32(row: Vec<f32>, calibration: Option<&Calibration>) -> Row {
        match calibration {
            None => Row::F32(row),
            Some(c) => {
                let mut code = vec![0u8; c.kind.code_width(row.len())];
                c.encode(&row, &mut code);
                match c.kind {
                    VectorKind::Int8 => Row::I8(code.into_iter().map(|b| b as i8).collect()),
                    _ => Row::Bits(code),
                }
            }
        }
    }

    fn add(self, graph: &usearch::Index, key: u64) -> Result<()> {
        match self {
            Row::F32(v) => graph.add(key, &v),
            Row::F16(v) => graph.add(key, usearch::f16::from_i16s(&v)),
            Row::I8(v) => graph.add(key, &v),
            Row::Bits(v) => graph.add(key, usearch::b1x8::from_u8s(&v)),
        }
        .map_err(|e| usearch_error("adding a vector", e))
    }

    /// The `count` nearest keys of this query row.
    fn search(self, graph: &usearch::Index, count: usize) -> Result<usearch::ffi::Matches> {
        match self {
            Row::F32(v) => graph.search(&v, count),
            Row::F16(v) => graph.search(usearch::f16::from_i16s(&v), count),
            Row::I8(v) => graph.search(&v, count),
            Row::Bits(v) => graph.search(usearch::b1x8::from_u8s(&v), count),
        }
        .map_err(|e| usearch_error("searching", e))
    }
}

/// Builds the HNSW graph of a complete index folder `dir` with `options`, and switches its
/// manifest to it (replacing a previous graph). `progress(done, total)` is called as vectors
/// are added. Runs on the current rayon pool.
pub fn build_ann(
    dir: &Path,
    options: &AnnOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<AnnReport> {
    let index = Index::open_exact(dir)?;
    // One build of a folder's graph at a time: the leftovers of killed ones can go.
    let _lock = super::build::lock_folder(dir)?;
    remove_orphans(dir, index.manifest())?;
    let (n, dim) = (index.len(), index.dim());
    let calibration = match options.vectors {
        VectorKind::Int8 | VectorKind::Binary => {
            Some(super::storage::write_calibration(dir, options.vectors)?)
        }
        VectorKind::F32 | VectorKind::F16 => None,
    };
    let mut graph = usearch::Index::new(&usearch_options(options, dim))
        .map_err(|e| usearch_error("creating the graph", e))?;
    use_densa_metric(&mut graph, options.vectors, dim, calibration.as_ref());
    let threads = rayon::current_num_threads();
    graph
        .reserve_capacity_and_threads(n, threads)
        .map_err(|e| usearch_error("reserving", e))?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let add_row = |i: usize| {
        let row = match options.vectors {
            VectorKind::F16 => {
                let mut f = vec![0.0f32; dim];
                index.vectors().row_f32(i, &mut f);
                Row::F16(
                    f.iter()
                        .map(|&x| half::f16::from_f32(x).to_bits() as i16)
                        .collect(),
                )
            }
            _ => Row::of(index.vectors(), i, calibration.as_ref()),
        };
        row.add(&graph, i as u64)?;
        let so_far = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if so_far.is_multiple_of(10_000) || so_far == n {
            progress(so_far, n);
        }
        Ok::<(), Error>(())
    };
    // One insertion at a time: USearch 2.x's concurrent `add` can leave a node stored but
    // unreachable by any search (unum-cloud/USearch#735: a node is discoverable through its
    // upper levels before its level-0 links exist), which a parallel build here showed as
    // passages missing from searches wider than the collection (tests/ann.rs).
    (0..n).try_for_each(add_row)?;
    let name = format!(
        "ann.hnsw.{}.{:x}.usearch",
        options.vectors.name(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    );
    let file = dir.join(&name);
    save_graph(&graph, &file)?;
    crate::io::failpoint("ann-saved");
    let bytes = std::fs::metadata(&file)
        .map_err(|e| Error::io(&file, e))?
        .len();
    let entry = json!({
        "kind": "hnsw",
        "library": format!("usearch {}", usearch::version()),
        "file": name,
        "bytes": bytes,
        "fingerprint": format!("{:016x}", sampled_fingerprint(&file)?),
        "vectors_fingerprint": format!("{:016x}", sampled_fingerprint(&dir.join("vectors.npy"))?),
        "vectors": options.vectors.name(),
        "metric": graph_metric(options.vectors),
        "connectivity": options.connectivity,
        "expansion_add": options.expansion_add,
        "expansion_search": options.expansion_search,
        "rows": n,
        "dim": dim,
    });
    let previous = switch_manifest(dir, Some(entry))?;
    if let Some(old) = previous.filter(|old| *old != name) {
        let _ = std::fs::remove_file(dir.join(old));
    }
    Ok(AnnReport {
        file,
        bytes,
        vectors: n,
    })
}

/// Removes what killed builds left: temporaries of graphs, and graphs the manifest does not
/// name (saved, but the build was killed before the manifest switched to them).
fn remove_orphans(dir: &Path, manifest: &Value) -> Result<()> {
    let current = manifest["ann"]["file"].as_str();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let graph = name.starts_with("ann.hnsw.") && name.ends_with(".usearch");
        let temporary = name.starts_with("ann.hnsw.") && name.ends_with(".densa-tmp");
        if (graph && Some(name.as_str()) != current) || temporary {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Saves the graph to a temporary beside `file`, synced, then renamed into place.
fn save_graph(graph: &usearch::Index, file: &Path) -> Result<()> {
    let temporary = file.with_extension(format!("usearch.{}.densa-tmp", std::process::id()));
    let path = temporary
        .to_str()
        .ok_or_else(|| Error::InvalidInput(format!("{}: not a UTF-8 path", file.display())))?;
    graph
        .save(path)
        .map_err(|e| usearch_error("saving the graph", e))?;
    std::fs::File::open(&temporary)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&temporary, e))?;
    std::fs::rename(&temporary, file).map_err(|e| Error::io(file, e))?;
    crate::io::output::sync_folder_of(file);
    Ok(())
}

/// Writes the manifest with `entry` as its `"ann"` (none: removed); the previous graph's file
/// name, if any.
pub(super) fn switch_manifest(dir: &Path, entry: Option<Value>) -> Result<Option<String>> {
    let path = dir.join("manifest.json");
    let mut manifest = read_json(&path)?;
    let previous = manifest["ann"]["file"].as_str().map(str::to_owned);
    match entry {
        Some(entry) => manifest["ann"] = entry,
        None => {
            if let Some(map) = manifest.as_object_mut() {
                map.remove("ann");
            }
        }
    }
    write_output(&path, |out| {
        out.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())
    })?;
    Ok(previous)
}

/// A fingerprint of a file's bytes: FNV-1a of its size, its first and last MiB, and 64 bytes
/// at 4,096 places spread evenly between (a few thousand pages: quick even for a graph of
/// gigabytes, and any other file differs).
pub(super) fn sampled_fingerprint(path: &Path) -> Result<u64> {
    use super::passages::{fnv1a, FNV_OFFSET};
    const MIB: usize = 1 << 20;
    let map = map_file(path)?;
    let len = map.len();
    let mut hash = fnv1a(&(len as u64).to_le_bytes(), FNV_OFFSET);
    hash = fnv1a(&map[..len.min(MIB)], hash);
    hash = fnv1a(&map[len.saturating_sub(MIB)..], hash);
    let stride = (len / 4096).max(64);
    for at in (0..len).step_by(stride) {
        hash = fnv1a(&map[at..(at + 64).min(len)], hash);
    }
    Ok(hash)
}

impl Ann {
    /// The graph the manifest's `"ann"` entry describes, checked before USearch reads it.
    pub(super) fn open(dir: &Path, entry: &Value, n: usize, dim: usize) -> Result<Ann> {
        let redo = format!(
            "rebuild it with densa ann --index {} (or search with --exact)",
            dir.display()
        );
        let bad = |what: String| {
            Error::InvalidInput(format!("{}: the HNSW graph {what}; {redo}", dir.display()))
        };
        let (name, options) = Self::read_entry(entry, (n, dim)).map_err(&bad)?;
        let file = dir.join(&name);
        Self::check_file(dir, &file, entry).map_err(&bad)?;
        let path = file
            .to_str()
            .ok_or_else(|| bad("file's path is not UTF-8".into()))?;
        Self::check_header(path, &options, n, dim).map_err(&bad)?;
        let mut graph = usearch::Index::new(&usearch_options(&options, dim))
            .map_err(|e| usearch_error("creating the graph", e))?;
        let mapped = crate::io::mapped::map_file_populated(&file)?;
        // SAFETY: USearch reads the graph from `mapped` for as long as `graph` lives; `Ann`
        // owns both and drops `graph` first (field order), and the mapping is read-only.
        unsafe { graph.view_from_buffer(&mapped[..]) }
            .map_err(|e| bad(format!("file {name} cannot be read ({e})")))?;
        let calibration = match options.vectors {
            VectorKind::Int8 | VectorKind::Binary => {
                let kind = options.vectors;
                let path = dir.join(format!("calibration.{}.npy", kind.name()));
                Some(Calibration::read(kind, &path, dim)?)
            }
            VectorKind::F32 | VectorKind::F16 => None,
        };
        use_densa_metric(&mut graph, options.vectors, dim, calibration.as_ref());
        if graph.size() != n || graph.dimensions() != dim {
            return Err(bad(format!(
                "file {name} holds {} vectors of {} dimensions",
                graph.size(),
                graph.dimensions()
            )));
        }
        Ok(Ann {
            graph,
            _mapped_graph: mapped,
            expansion: RwLock::new(()),
            options,
            calibration,
        })
    }

    /// The manifest entry's file name and parameters, for an index of `(n, dim)` vectors.
    fn read_entry(
        entry: &Value,
        (n, dim): (usize, usize),
    ) -> std::result::Result<(String, AnnOptions), String> {
        let field = |key: &str| {
            entry[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("entry of the manifest has no {key}"))
        };
        let name = entry["file"]
            .as_str()
            .filter(|f| !f.contains('/') && f.ends_with(".usearch"))
            .ok_or("entry of the manifest names no file")?;
        let vectors = match entry["vectors"].as_str().map(VectorKind::parse) {
            Some(Ok(kind)) => kind,
            _ => return Err(format!("entry has vectors {}", entry["vectors"])),
        };
        let metric = graph_metric(vectors);
        if entry["metric"] != json!(metric) {
            return Err(format!(
                "was built with the metric {} (this densa searches {} graphs with \"{metric}\")",
                entry["metric"],
                vectors.name()
            ));
        }
        let options = AnnOptions {
            vectors,
            connectivity: field("connectivity")?,
            expansion_add: field("expansion_add")?,
            expansion_search: field("expansion_search")?.max(1),
        };
        if (field("rows")?, field("dim")?) != (n, dim) {
            return Err(format!(
                "was built over ({}, {}) vectors, the index holds ({n}, {dim})",
                entry["rows"], entry["dim"]
            ));
        }
        Ok((name.to_owned(), options))
    }

    /// The file's size and fingerprint, and the vectors' fingerprint, against the entry's.
    fn check_file(dir: &Path, file: &Path, entry: &Value) -> std::result::Result<(), String> {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let bytes = std::fs::metadata(file)
            .map_err(|e| format!("file {name}: {e}"))?
            .len();
        if Some(bytes) != entry["bytes"].as_u64() {
            return Err(format!(
                "file {name} holds {bytes} bytes, the manifest says {} (truncated, or another file)",
                entry["bytes"]
            ));
        }
        let fingerprint = |path: &Path| {
            sampled_fingerprint(path)
                .map(|h| format!("{h:016x}"))
                .map_err(|e| e.to_string())
        };
        if entry["fingerprint"].as_str() != Some(fingerprint(file)?.as_str()) {
            return Err(format!(
                "file {name} is not the one this index built (its bytes differ)"
            ));
        }
        if entry["vectors_fingerprint"].as_str()
            != Some(fingerprint(&dir.join("vectors.npy"))?.as_str())
        {
            return Err("was built from other vectors than vectors.npy holds".into());
        }
        Ok(())
    }

    /// USearch's own header of the file against what the manifest says.
    fn check_header(
        path: &str,
        options: &AnnOptions,
        n: usize,
        dim: usize,
    ) -> std::result::Result<(), String> {
        let header =
            usearch::Index::metadata(path).map_err(|e| format!("header cannot be read ({e})"))?;
        let wanted = usearch_options(options, dim);
        let (got, want) = (
            (
                header.dimensions as usize,
                header.count_present as usize,
                header.quantization,
                header.metric,
                header.multi,
            ),
            (dim, n, wanted.quantization, wanted.metric, false),
        );
        if got != want {
            return Err(format!(
                "file's header says {} dimensions, {} vectors, {:?} {:?}, multi {}; the manifest {dim}, {n}, {:?} {:?}",
                got.0, got.1, got.2, got.3, got.4, want.2, want.3
            ));
        }
        Ok(())
    }

    /// How the graph holds its vectors.
    pub(super) fn options(&self) -> &AnnOptions {
        &self.options
    }

    /// The `count` nearest rows of each query (`queries (q, dim)`) by the graph, considering
    /// `ef` candidates (`None`: the graph's default; at least `count`).
    pub(super) fn candidates(
        &self,
        queries: &[f32],
        dim: usize,
        count: usize,
        ef: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>> {
        let default = self.options.expansion_search;
        let ef = ef.unwrap_or(default).max(count);
        let search = |query: &[f32]| -> Result<Vec<Hit>> {
            let matches = self.query(query).search(&self.graph, count)?;
            Ok(matches
                .keys
                .iter()
                .zip(&matches.distances)
                .map(|(&key, &distance)| Hit {
                    index: key as usize,
                    score: -distance,
                })
                .collect())
        };
        if ef == default {
            let _shared = self.expansion.read().unwrap_or_else(|e| e.into_inner());
            return queries.par_chunks(dim).map(search).collect();
        }
        // Another ef for this call: alone on the graph, then back to the default.
        let _alone = self.expansion.write().unwrap_or_else(|e| e.into_inner());
        self.graph.change_expansion_search(ef);
        let hits = queries.par_chunks(dim).map(search).collect();
        self.graph.change_expansion_search(default);
        hits
    }

    /// A query vector as the graph searches it.
    fn query(&self, query: &[f32]) -> Row {
        match (self.options.vectors, &self.calibration) {
            (VectorKind::F16, _) => Row::F16(
                query
                    .iter()
                    .map(|&x| half::f16::from_f32(x).to_bits() as i16)
                    .collect(),
            ),
            // Coded like the rows, which the metric weighs back into the vectors' space.
            (VectorKind::Int8 | VectorKind::Binary, Some(calibration)) => {
                Row::from_f32(query.to_vec(), Some(calibration))
            }
            _ => Row::F32(query.to_vec()),
        }
    }
}
