//! The library's arrows point down: each module of `src/` uses only the modules of the layers
//! below its own (the table of docs/DESIGN.md, "Layers"), never one beside or above it, and
//! nothing is reached through the crate root's re-exports. The command line (`src/bin/`) sits
//! on top and may use anything.

use std::path::Path;

/// The library's layers, lowest first (docs/DESIGN.md, "Layers").
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["io"],
    &["config", "checkpoint", "tokenizer"],
    &["model", "bench"],
    &["pooling", "quantize", "batching"],
    &["sentence_transformers", "pack"],
    &["encoder"],
    &["heads"],
    &["retrieval"],
    &["pipeline"],
    &["serve"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| {
            panic!("module {module} is in no layer of LAYERS (and of docs/DESIGN.md)")
        })
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without its comments (doc links may point anywhere).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate modules `code` names (`crate::name` and the names inside `use crate::{a, b}`), and
/// whether it reaches for a root re-export (`crate::Encoder`).
fn uses(code: &str) -> (Vec<String>, bool) {
    let mut modules = Vec::new();
    let mut root_reexport = false;
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or(""))
                .collect(),
            None => vec![rest
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or("")],
        };
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                root_reexport = true;
            } else {
                modules.push(name.to_string());
            }
        }
    }
    (modules, root_reexport)
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        checked += 1;
        let (used, root_reexport) = uses(&code_of(&std::fs::read_to_string(file).unwrap()));
        if root_reexport {
            wrong.push(format!(
                "{}: uses a crate-root re-export",
                relative.display()
            ));
        }
        for other in used.iter().filter(|m| **m != module) {
            if layer_of(other) >= layer_of(&module) {
                wrong.push(format!(
                    "{}: {module} (layer {}) uses {other} (layer {})",
                    relative.display(),
                    layer_of(&module),
                    layer_of(other)
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} files found under {}",
        src.display()
    );
    assert!(
        wrong.is_empty(),
        "arrows that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_table_is_the_one_the_design_notes_show() {
    let design =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DESIGN.md"))
            .unwrap();
    for (i, layer) in LAYERS.iter().enumerate() {
        let line = format!(
            "{i}. {}",
            layer
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(
            design.contains(&line),
            "docs/DESIGN.md lacks the layer line {line:?}"
        );
    }
}
