//! Compressed vectors and approximate search against the exact search, on small collections
//! written straight into the documented index layout (as a user with vectors computed
//! elsewhere would): every storage kind and every graph kind finds exactly the exact search's
//! passages where the collection is smaller than what they examine (all candidates rescored,
//! the graph's expansion larger than the collection); a bad, foreign or lying graph file, and a
//! manifest with fields that cannot be trusted, are errors naming what is wrong; a graph build
//! killed at any point leaves the folder searchable.

mod common;

use common::cli::{densa, ok, s};
use densa::retrieval::{build_ann, write_codes, AnnOptions, Index, SearchOptions, VectorKind};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// A collection with structure: `n` unit vectors of `dim` values around 12 centres (a small
/// PRNG, so the test needs no data file), row 0 of each centre the centre itself.
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    (0..n)
        .flat_map(|i| {
            let centre = &centres[i % 12];
            let mut v: Vec<f32> = centre.iter().map(|c| c + 0.35 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// Writes an index folder in the documented layout: `vectors.npy`, `passages.jsonl`,
/// `passages.offsets`, `manifest.json` (the fields a user must give).
fn write_index(dir: &Path, data: &[f32], dim: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let n = data.len() / dim;
    let mut npy = Vec::new();
    densa::io::npy::write_f32_matrix(&mut npy, data, n, dim).unwrap();
    std::fs::write(dir.join("vectors.npy"), npy).unwrap();
    let (mut lines, mut offsets) = (Vec::new(), vec![0u64]);
    for i in 0..n {
        let line = format!("{}\n", json!({"id": i, "text": format!("passage {i}")}));
        lines.extend_from_slice(line.as_bytes());
        offsets.push(lines.len() as u64);
    }
    std::fs::write(dir.join("passages.jsonl"), lines).unwrap();
    let offsets: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    std::fs::write(dir.join("passages.offsets"), offsets).unwrap();
    let manifest =
        json!({"format": "densa-index", "version": 1, "dim": dim, "passages": n, "complete": true});
    write_manifest(dir, &manifest);
}

/// How many graph files (`*.usearch`, finished or not) the folder holds.
fn graph_files(dir: &Path) -> usize {
    let names = std::fs::read_dir(dir).unwrap();
    names
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".usearch")
        })
        .count()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, manifest: &Value) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}

/// Every hit list of `got` is `want`'s: the same rows, scores within `tolerance`.
fn same_hits(
    got: &[Vec<densa::SearchHit>],
    want: &[Vec<densa::SearchHit>],
    tolerance: f32,
    what: &str,
) {
    for (j, (got, want)) in got.iter().zip(want).enumerate() {
        let rows = |hits: &[densa::SearchHit]| hits.iter().map(|h| h.index).collect::<Vec<_>>();
        assert_eq!(rows(got), rows(want), "{what}: query {j}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g.score - w.score).abs() <= tolerance,
                "{what}: query {j}: {} vs {}",
                g.score,
                w.score
            );
        }
    }
}

const DIM: usize = 32;
const ROWS: usize = 600;

#[test]
fn every_storage_and_graph_kind_finds_the_exact_passages_on_a_small_collection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    let data = vectors(ROWS, DIM, 1);
    write_index(&root, &data, DIM);
    let queries = vectors(8, DIM, 2);
    let (k, all) = (
        10,
        SearchOptions {
            rescore: Some(ROWS),
            exact: None,
            ef: None,
        },
    );
    let exact = Index::open(&root).unwrap().search(&queries, k).unwrap();
    // Hand-checked: the first query's best passage is the row of highest inner product.
    let best = (0..ROWS)
        .max_by(|&a, &b| {
            let dot = |r: usize| -> f32 { (0..DIM).map(|i| data[r * DIM + i] * queries[i]).sum() };
            dot(a).total_cmp(&dot(b))
        })
        .unwrap();
    assert_eq!(exact[0][0].index, best);
    for kind in VectorKind::ALL {
        // Storage: f16 rewrites vectors.npy as float16; int8 and binary add codes.
        let folder = dir.path().join(kind.name());
        write_index(&folder, &data, DIM);
        if kind == VectorKind::F16 {
            let bits: Vec<u8> = data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
                .collect();
            let mut npy = Vec::new();
            densa::io::npy::write_header(&mut npy, densa::io::npy::Dtype::F16, ROWS, DIM).unwrap();
            npy.extend_from_slice(&bits);
            std::fs::write(folder.join("vectors.npy"), npy).unwrap();
        }
        if kind.code_files(&folder).is_some() {
            write_codes(&folder, kind).unwrap();
        }
        let mut m = manifest(&folder);
        m["vectors"] = json!(kind.name());
        write_manifest(&folder, &m);
        let index = Index::open(&folder).unwrap();
        assert_eq!(index.vector_kind(), kind);
        let got = index.search_with(&queries, k, &all).unwrap();
        // f16 vectors score within their rounding (2^-11 relative per value).
        let tolerance = if kind == VectorKind::F16 { 2e-3 } else { 0.0 };
        same_hits(&got, &exact, tolerance, &format!("{} storage", kind.name()));
        // A graph of each kind over the float32 folder, its expansion past the collection.
        let options = AnnOptions {
            vectors: kind,
            expansion_search: 2 * ROWS,
            ..AnnOptions::default()
        };
        build_ann(&root, &options, &|_, _| {}).unwrap();
        let index = Index::open(&root).unwrap();
        assert_eq!(index.ann_vectors(), Some(kind));
        let through_graph = SearchOptions {
            exact: Some(false),
            ..all
        };
        let got = index.search_with(&queries, k, &through_graph).unwrap();
        same_hits(&got, &exact, 0.0, &format!("{} graph", kind.name()));
        // The same through a smaller expansion per call: still valid hits, exact scores.
        let narrow = SearchOptions {
            ef: Some(k),
            ..through_graph
        };
        for (hits, want) in index
            .search_with(&queries, k, &narrow)
            .unwrap()
            .iter()
            .zip(&exact)
        {
            assert_eq!(hits.len(), k);
            assert!(hits[0].score <= want[0].score);
        }
    }
    // Only the last graph's file remains.
    assert_eq!(graph_files(&root), 1);
}

/// The graph's file is checked before USearch reads it.
#[test]
fn bad_or_foreign_graph_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (main, other) = (dir.path().join("main"), dir.path().join("other"));
    write_index(&main, &vectors(ROWS, DIM, 3), DIM);
    write_index(&other, &vectors(ROWS, DIM, 4), DIM);
    let options = AnnOptions::default();
    for folder in [&main, &other] {
        build_ann(folder, &options, &|_, _| {}).unwrap();
    }
    let graph = |folder: &Path| folder.join(manifest(folder)["ann"]["file"].as_str().unwrap());
    let pristine = std::fs::read(graph(&main)).unwrap();
    let refused = |needle: &str, what: &str| {
        let e = Index::open(&main)
            .err()
            .unwrap_or_else(|| panic!("{what}: opened"));
        let message = e.to_string();
        assert!(message.contains(needle), "{what}: {message}");
        assert!(message.contains("densa ann --index"), "{what}: {message}");
        // The exact scan still works.
        Index::open_exact(&main)
            .unwrap()
            .search(&vectors(1, DIM, 5), 3)
            .unwrap();
    };
    // Truncated.
    std::fs::write(graph(&main), &pristine[..pristine.len() / 2]).unwrap();
    refused("truncated", "a truncated file");
    // Another index's graph under this one's name (made the same size).
    let mut foreign = std::fs::read(graph(&other)).unwrap();
    foreign.resize(pristine.len(), 0);
    std::fs::write(graph(&main), &foreign).unwrap();
    refused("is not the one this index built", "another index's file");
    // A header that lies about the dimensions, with a manifest rewritten to match the bytes.
    let mut lying = pristine.clone();
    let at = lying
        .windows(8)
        .position(|w| w == (DIM as u64).to_le_bytes())
        .expect("the header's dimensions");
    lying[at..at + 8].copy_from_slice(&(2 * DIM as u64).to_le_bytes());
    std::fs::write(graph(&main), &lying).unwrap();
    let mut m = manifest(&main);
    let fingerprint = |bytes: &[u8]| {
        let path = dir.path().join("probe");
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let probe = fingerprint(&lying);
    m["ann"]["fingerprint"] = json!(densa_fingerprint(&probe));
    write_manifest(&main, &m);
    refused("header", "a lying header");
    // A graph of another dimension: the manifest says so.
    std::fs::write(graph(&main), &pristine).unwrap();
    let mut m = manifest(&main);
    m["ann"]["fingerprint"] = json!(densa_fingerprint(&graph(&main)));
    m["ann"]["dim"] = json!(DIM / 2);
    write_manifest(&main, &m);
    refused("was built over", "another dimension");
    // Vectors replaced after the graph was built.
    let mut m = manifest(&main);
    m["ann"]["dim"] = json!(DIM);
    write_manifest(&main, &m);
    Index::open(&main).unwrap();
    let mut npy = Vec::new();
    densa::io::npy::write_f32_matrix(&mut npy, &vectors(ROWS, DIM, 6), ROWS, DIM).unwrap();
    std::fs::write(main.join("vectors.npy"), npy).unwrap();
    refused("other vectors", "replaced vectors");
    // Missing.
    std::fs::remove_file(graph(&main)).unwrap();
    refused("No such file", "a missing file");
}

/// The fingerprint the manifest records, recomputed by the library's own rule (FNV-1a of the
/// size, the first and last MiB, and 64 bytes at 4,096 evenly spread places).
fn densa_fingerprint(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let fnv = |data: &[u8], mut hash: u64| {
        for &b in data {
            hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        hash
    };
    const MIB: usize = 1 << 20;
    let len = bytes.len();
    let mut hash = fnv(&(len as u64).to_le_bytes(), 0xcbf2_9ce4_8422_2325);
    hash = fnv(&bytes[..len.min(MIB)], hash);
    hash = fnv(&bytes[len.saturating_sub(MIB)..], hash);
    for at in (0..len).step_by((len / 4096).max(64)) {
        hash = fnv(&bytes[at..(at + 64).min(len)], hash);
    }
    format!("{hash:016x}")
}

/// A manifest field the index cannot trust is an error naming it, never a crash.
#[test]
fn untrustworthy_manifests_are_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    write_index(&root, &vectors(50, 8, 7), 8);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("passages", json!("many"), "passages"),
        ("passages", json!(51), "passages"),
        ("dim", json!(-8), "dim"),
        ("vectors", json!("int4"), "vectors"),
        ("vectors", json!("int8"), "vectors.int8.npy"),
        ("ann", json!({"file": "../../etc/passwd"}), "names no file"),
        (
            "ann",
            json!({"file": "x.usearch", "vectors": "f32"}),
            "metric",
        ),
        (
            "ann",
            json!({"file": "x.usearch", "vectors": "int8", "metric": "1 - a.b"}),
            "metric",
        ),
        (
            "ann",
            json!({"file": "x.usearch", "vectors": "f32", "metric": "1 - a.b"}),
            "connectivity",
        ),
        (
            "shard",
            json!({"index": 2, "count": 2, "passages": 50}),
            "shard",
        ),
        ("shard", json!({"index": 0, "count": 2}), "shard"),
        (
            "shard",
            json!({"index": 0, "count": 2, "passages": 40}),
            "chunk_size",
        ),
    ];
    for (key, value, needle) in cases {
        let mut m = manifest(&root);
        let pristine = m.clone();
        m[key] = value.clone();
        write_manifest(&root, &m);
        let e = Index::open(&root)
            .err()
            .unwrap_or_else(|| panic!("{key} = {value}: opened"));
        assert!(e.to_string().contains(needle), "{key} = {value}: {e}");
        write_manifest(&root, &pristine);
    }
    // Offsets that run backwards or past the file.
    let mut offsets = std::fs::read(root.join("passages.offsets")).unwrap();
    offsets[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(root.join("passages.offsets"), &offsets).unwrap();
    let e = Index::open(&root).err().unwrap();
    assert!(e.to_string().contains("passages.offsets"), "{e}");
}

/// `densa ann` killed after saving its graph, before the manifest names it: the folder opens
/// and searches as before, and the next build removes the orphan.
#[test]
fn a_killed_graph_build_leaves_the_folder_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    write_index(&root, &vectors(ROWS, DIM, 8), DIM);
    let args = ["ann", "--index", s(&root), "--threads", "1"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(args)
        .env("DENSA_FAILPOINT", "ann-saved")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reached = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("failpoint ann-saved"));
    assert!(reached, "the build reaches its failpoint");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        manifest(&root)["ann"].is_null(),
        "the manifest does not name the unfinished graph"
    );
    assert_eq!(graph_files(&root), 1, "the orphan graph");
    let query = vectors(1, DIM, 9);
    Index::open(&root).unwrap().search(&query, 3).unwrap();
    ok(&densa(&args, None));
    assert_eq!(
        graph_files(&root),
        1,
        "the orphan removed, the new graph named"
    );
    assert!(!manifest(&root)["ann"].is_null());
    Index::open(&root).unwrap().search(&query, 3).unwrap();
}
