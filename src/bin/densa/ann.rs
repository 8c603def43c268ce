//! `densa ann` (an HNSW graph for an index that exists) and the flags that build a graph or
//! search with one, shared by `index`, `search` and `serve`.

use crate::{advance, progress_bar};
use densa::retrieval::{build_ann, AnnOptions, SearchOptions, VectorKind};
use densa::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How an HNSW graph is built.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct GraphArgs {
    /// Links per node of the graph (HNSW's M).
    #[arg(long, default_value_t = AnnOptions::default().connectivity)]
    connectivity: usize,
    /// Candidates considered while linking each vector (efConstruction).
    #[arg(long, default_value_t = AnnOptions::default().expansion_add)]
    expansion_add: usize,
    /// Candidates considered while searching, by default (ef).
    #[arg(long, default_value_t = AnnOptions::default().expansion_search)]
    expansion_search: usize,
}

impl GraphArgs {
    pub(crate) fn options(&self, vectors: VectorKind) -> AnnOptions {
        AnnOptions {
            vectors,
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: self.expansion_search,
        }
    }
}

/// How a search runs over an index with a graph or codes.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct SearchFlags {
    /// Scan every vector exactly, even where the index has an HNSW graph (its graph is then
    /// not read at all).
    #[arg(long, conflicts_with = "ann")]
    exact: bool,
    /// Search the graph even for a small collection (by default the exact scan answers below
    /// 20,000 vectors, where it is as fast).
    #[arg(long)]
    ann: bool,
    /// Candidates the graph considers per query (HNSW's ef; default: as built).
    #[arg(long)]
    ef: Option<usize>,
    /// Over int8 or binary codes: candidates per result rescored against the float32
    /// vectors (default 4 for int8, 10 for binary).
    #[arg(long)]
    rescore: Option<usize>,
}

impl SearchFlags {
    pub(crate) fn options(&self) -> SearchOptions {
        SearchOptions {
            rescore: self.rescore,
            exact: match (self.exact, self.ann) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            ef: self.ef,
        }
    }

    /// Opens the index as these flags search it: without its graph for `--exact`.
    pub(crate) fn open(&self, dir: &Path) -> Result<densa::Index, Error> {
        match self.exact {
            true => densa::Index::open_exact(dir),
            false => densa::Index::open(dir),
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct AnnArgs {
    /// A complete index folder (densa index, or vectors written in its layout).
    #[arg(long)]
    index: PathBuf,
    /// How the graph holds the vectors: f32, f16, int8 (calibrated per dimension) or binary
    /// (sign bits, Hamming distance); candidates are rescored against the index's vectors.
    #[arg(long, value_parser = VectorKind::parse, default_value = "f32")]
    vectors: VectorKind,
    #[command(flatten)]
    graph: GraphArgs,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub(crate) fn ann(args: AnnArgs) -> Result<(), Error> {
    let options = args.graph.options(args.vectors);
    build_graph(&args.index, &options, args.threads)
}

/// Builds the graph of the index in `dir` on `threads` threads (0: one per core), with a
/// progress bar and a summary line.
pub(crate) fn build_graph(dir: &Path, options: &AnnOptions, threads: usize) -> Result<(), Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start {threads} threads: {e}")))?;
    let bar = progress_bar("vectors");
    let start = Instant::now();
    let report = pool.install(|| build_ann(dir, options, &advance(&bar)))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "densa: HNSW graph of {} {} vectors (M {}, efConstruction {}) in {seconds:.1} s ({:.0} vectors/s): {} ({} bytes)",
        report.vectors,
        options.vectors.name(),
        options.connectivity,
        options.expansion_add,
        report.vectors as f64 / seconds.max(1e-9),
        report.file.display(),
        report.bytes
    );
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct BenchSearchArgs {
    /// A complete index folder.
    #[arg(long)]
    index: PathBuf,
    /// Query vectors: a float32 .npy (questions, dim), e.g. from densa embed --output q.npy.
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// How the timed search runs (compared with the exact scan in the same run).
    #[command(flatten)]
    search: SearchFlags,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Time only the search asked for (no exact scan, no recall): its peak memory is then its
    /// own.
    #[arg(long)]
    skip_exact: bool,
}

/// `densa bench-search`: each query searched alone, the exact scan and the search the flags
/// ask for interleaved query by query; one JSON line with each one's p50 and p99 latency, the
/// speed-up, recall@k against the exact scan, and the process's peak resident memory.
pub(crate) fn bench_search(args: BenchSearchArgs) -> Result<(), Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start {} threads: {e}", args.threads)))?;
    let open = Instant::now();
    let index = args.search.open(&args.index)?;
    let open_ms = open.elapsed().as_secs_f64() * 1e3;
    let exact = match args.skip_exact {
        true => None,
        false => Some(densa::Index::open_exact(&args.index)?),
    };
    let queries =
        densa::io::mapped::MappedMatrix::open_as(&args.queries, &[densa::io::npy::Dtype::F32])?;
    if queries.cols() != index.dim() {
        return Err(Error::InvalidInput(format!(
            "{}: queries of {} values, the index holds {}-dimensional vectors",
            args.queries.display(),
            queries.cols(),
            index.dim()
        )));
    }
    let (k, options) = (args.top_k, args.search.options());
    let exact_options = densa::retrieval::SearchOptions {
        exact: Some(true),
        ..options
    };
    let (mut timed, mut reference, mut recall) = (Vec::new(), Vec::new(), 0.0);
    pool.install(|| -> Result<(), Error> {
        for query in queries.as_f32().chunks_exact(index.dim()) {
            let start = Instant::now();
            let got = index.search_with(query, k, &options)?;
            timed.push(start.elapsed().as_secs_f64() * 1e3);
            let Some(exact) = &exact else { continue };
            let start = Instant::now();
            let wanted = exact.search_with(query, k, &exact_options)?;
            reference.push(start.elapsed().as_secs_f64() * 1e3);
            let wanted: Vec<usize> = wanted[0].iter().map(|h| h.index).collect();
            let found = got[0].iter().filter(|h| wanted.contains(&h.index)).count();
            recall += found as f64 / wanted.len().max(1) as f64;
        }
        Ok(())
    })?;
    let percentile = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let n = queries.rows().max(1) as f64;
    let (p50, p99) = (percentile(&mut timed, 0.5), percentile(&mut timed, 0.99));
    let (exact_p50, exact_p99) = (
        percentile(&mut reference, 0.5),
        percentile(&mut reference, 0.99),
    );
    let line = serde_json::json!({
        "index": args.index, "passages": index.len(), "dim": index.dim(), "queries": queries.rows(),
        "top_k": k, "vectors": index.vector_kind().name(),
        "graph": index.ann_vectors().map(|v| v.name()), "ef": options.ef, "rescore": options.rescore,
        "p50_ms": p50, "p99_ms": p99, "exact_p50_ms": exact_p50, "exact_p99_ms": exact_p99,
        "speedup_p50": exact_p50 / p50.max(1e-9),
        "recall_at_k": exact.is_some().then_some(recall / n),
        "open_ms": open_ms, "threads": pool.current_num_threads(),
        "rss_mb": densa::bench::resident_megabytes(),
        "peak_rss_mb": densa::bench::peak_resident_megabytes(),
    });
    crate::print_stdout(&format!("{line}\n"))
}
