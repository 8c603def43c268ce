//! Nothing a user owns is destroyed, through the command line: outputs that are devices,
//! FIFOs, symbolic links or standard output; a quantized copy written over its own model; an
//! index folder holding files of the user's; an index build killed (SIGKILL) during its final
//! assembly or just after it, or run twice at once; limits that must be refused. Each test is
//! one finding of docs/RELIABILITY.md.

mod common;

use common::cli::{densa, fails, names, ok, s, tree, Tree};
use common::{copy_folder, model_dir, read_npy};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "dpr-ctx-tiny";

fn model() -> PathBuf {
    model_dir(MODEL)
}

/// Embeds "hola\n" (and a second line) to `output`, with `umask` set for the process.
fn embed_to(output: &Path, umask: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_densa"))
        .args(["embed", "--model", s(&model()), "--output", s(output)])
        .arg("--input")
        .arg(s(&write_texts(output.parent().unwrap())))
        .output()
        .unwrap()
}

fn write_texts(dir: &Path) -> PathBuf {
    let path = dir.join("texts-input.txt");
    std::fs::write(&path, "hola\nadiós\n").unwrap();
    path
}

/// The JSON lines `densa embed` prints for the same two texts on standard output.
fn expected_json_lines(dir: &Path) -> String {
    let input = write_texts(dir);
    ok(&densa(
        &["embed", "--model", s(&model()), "--input", s(&input)],
        None,
    ))
}

#[test]
fn a_device_node_is_written_through_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("null");
    // A character device of our own (the null device's numbers), never the system's.
    let made = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        // mknod needs CAP_MKNOD (root, as in CI); a FIFO below covers the same path.
        eprintln!("RELIABILITY: mknod not permitted here; device test skipped");
        return;
    }
    let out = embed_to(&node, "022");
    ok(&out);
    let meta = std::fs::symlink_metadata(&node).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "the device node was replaced by a {:?}",
        meta.file_type()
    );
    assert_eq!(
        names(&tree(dir.path())),
        ["null", "texts-input.txt"],
        "no temporary left"
    );
}

#[test]
fn a_fifo_is_written_through_to_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let expected = expected_json_lines(dir.path());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    ok(&embed_to(&fifo, "022"));
    assert_eq!(
        reader.join().unwrap(),
        expected,
        "the reader got the vectors"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn a_symlink_is_followed_to_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_json_lines(dir.path());
    // A link to an existing file, and a dangling link (its target is created).
    let target = dir.path().join("target.jsonl");
    std::fs::write(&target, "old content\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink("target.jsonl", &link).unwrap();
    ok(&embed_to(&link, "022"));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), expected);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a replaced file keeps its permissions");

    let dangling = dir.path().join("dangling.npy");
    std::os::unix::fs::symlink("sub-target.npy", &dangling).unwrap();
    ok(&embed_to(&dangling, "022"));
    let (n, dim, _) = read_npy(&dir.path().join("sub-target.npy"));
    assert_eq!((n, dim), (2, 32));
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn new_outputs_get_the_umask_and_odd_names_work() {
    let dir = tempfile::tempdir().unwrap();
    // A new file: 0666 less the umask.
    let file = dir.path().join("vectors.NPY");
    ok(&embed_to(&file, "027"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // X.NPY is a .npy file.
    assert_eq!(read_npy(&file).0, 2);
    // `--output -` is standard output, not a file named "-".
    let expected = expected_json_lines(dir.path());
    let input = write_texts(dir.path());
    let out = densa(
        &[
            "embed",
            "--model",
            s(&model()),
            "--input",
            s(&input),
            "--output",
            "-",
        ],
        None,
    );
    assert_eq!(ok(&out), expected);
    assert!(!Path::new("-").exists());
    // A folder is refused.
    let out = embed_to(dir.path(), "022");
    assert!(fails(&out).contains("is a folder"));
}

#[test]
fn quantize_never_writes_over_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    copy_folder(&model_dir("dpr-question-tiny"), &src);
    let before = tree(&src);
    for output in [src.clone(), src.join("inside"), src.join(".")] {
        let out = densa(
            &["quantize", "--model", s(&src), "--output", s(&output)],
            None,
        );
        let stderr = fails(&out);
        assert!(
            stderr.contains("is the model folder") && stderr.contains("or inside it"),
            "{stderr}"
        );
        assert!(tree(&src) == before, "the model folder changed");
    }
    // Through a symbolic link to the model folder, too.
    let alias = dir.path().join("alias");
    std::os::unix::fs::symlink(&src, &alias).unwrap();
    let out = densa(
        &["quantize", "--model", s(&src), "--output", s(&alias)],
        None,
    );
    assert!(fails(&out).contains("is the model folder"));
    assert!(tree(&src) == before);

    // A new folder: complete, files readable by others (umask 022 in CI), nothing else.
    let q = dir.path().join("q");
    ok(&densa(
        &["quantize", "--model", s(&src), "--output", s(&q)],
        None,
    ));
    let mode = std::fs::metadata(q.join("model.safetensors"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o044, 0o044 & !umask_of_this_process(), "{mode:o}");
    assert_eq!(
        names(&tree(dir.path()))
            .iter()
            .filter(|n| n.contains("densa-tmp"))
            .count(),
        0
    );
    // An existing folder holding those files: refused, unless --force.
    std::fs::write(q.join("notes.txt"), "mine").unwrap();
    let first = tree(&q);
    let out = densa(&["quantize", "--model", s(&src), "--output", s(&q)], None);
    let stderr = fails(&out);
    assert!(
        stderr.contains("already holds") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(tree(&q) == first);
    ok(&densa(
        &["quantize", "--model", s(&src), "--output", s(&q), "--force"],
        None,
    ));
    assert!(tree(&q) == first, "the same files, the user's kept");
}

fn umask_of_this_process() -> u32 {
    let out = Command::new("sh").args(["-c", "umask"]).output().unwrap();
    u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).unwrap()
}

/// A small collection: 40 passages, 4 chunks of 10.
fn collection(dir: &Path) -> PathBuf {
    let path = dir.join("passages.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"id": i, "title": format!("Título {i}"), "text": format!("El pasaje número {i} habla de la biblioteca y del río.")})
            )
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

fn index_args<'a>(passages: &'a Path, output: &'a Path) -> Vec<String> {
    [
        "index",
        "--model",
        s(&model()),
        "--passages",
        s(passages),
        "--output",
        s(output),
        "--chunk-size",
        "10",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

fn build(passages: &Path, output: &Path) -> String {
    let args = index_args(passages, output);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = densa(&refs, None);
    ok(&out);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts an index build that stops at `failpoint` and returns once it is there.
fn build_until(passages: &Path, output: &Path, failpoint: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(index_args(passages, output))
        .env("DENSA_FAILPOINT", failpoint)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("failpoint") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the build reaches its failpoint");
    assert!(line.contains(failpoint), "{line}");
    child
}

/// A collection in `dir` and the files of its uninterrupted index (built in `dir/reference`).
fn collection_and_reference_build(dir: &Path) -> (PathBuf, Tree) {
    let passages = collection(dir);
    let reference_dir = dir.join("reference");
    build(&passages, &reference_dir);
    (passages, tree(&reference_dir))
}

/// SIGKILL: no clean-up of any kind.
fn kill_9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn index_removes_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let (passages, reference) = collection_and_reference_build(dir.path());
    assert_eq!(
        names(&reference),
        [
            "manifest.json",
            "passages.jsonl",
            "passages.offsets",
            "vectors.npy"
        ]
    );

    // A chunks/ folder of the user's, with a file in it and another build's chunk name.
    let index = dir.path().join("index");
    std::fs::create_dir_all(index.join("chunks")).unwrap();
    std::fs::write(index.join("chunks/mine.txt"), "keep me").unwrap();
    std::fs::write(index.join("chunks/000000-00000000.npy"), "not densa's").unwrap();
    build(&passages, &index);
    let mut expected = reference.clone();
    expected.push(("chunks".into(), None));
    expected.push((
        "chunks/000000-00000000.npy".into(),
        Some(b"not densa's".to_vec()),
    ));
    expected.push(("chunks/mine.txt".into(), Some(b"keep me".to_vec())));
    expected.sort();
    assert!(tree(&index) == expected, "{:?}", names(&tree(&index)));
}

#[test]
fn index_killed_during_assembly_or_after_completion_resumes_to_an_uninterrupted_build() {
    let dir = tempfile::tempdir().unwrap();
    let (passages, reference) = collection_and_reference_build(dir.path());

    for failpoint in ["index-assembly", "index-complete"] {
        let index = dir.path().join(failpoint);
        kill_9(build_until(&passages, &index, failpoint));
        let left = names(&tree(&index));
        if failpoint == "index-assembly" {
            // The half-written vectors are a temporary, never vectors.npy.
            assert!(
                left.iter()
                    .any(|n| n.starts_with(".vectors.npy.") && n.ends_with(".densa-tmp")),
                "{left:?}"
            );
            assert!(!index.join("vectors.npy").exists());
            assert!(densa::Index::open(&index).is_err());
        } else {
            // Complete and usable, with the chunks still there.
            assert!(left.iter().any(|n| n.starts_with("chunks/")), "{left:?}");
            densa::Index::open(&index).unwrap();
        }
        let log = build(&passages, &index);
        assert!(log.contains("encoded 0 of 40"), "nothing re-encoded: {log}");
        assert!(
            tree(&index) == reference,
            "after {failpoint}: {:?}",
            names(&tree(&index))
        );
    }
}

#[test]
fn a_second_concurrent_index_build_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (passages, reference) = collection_and_reference_build(dir.path());
    let index = dir.path().join("index");
    // The first build holds the folder (stopped at its assembly).
    let first = build_until(&passages, &index, "index-assembly");
    let args = index_args(&passages, &index);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = densa(&refs, None);
    let stderr = fails(&out);
    assert!(
        stderr.contains("another densa process is building an index in this folder"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(60), "it did not wait");
    kill_9(first);
    // The lock dies with its process: the next run completes the build.
    build(&passages, &index);
    assert!(tree(&index) == reference);
}

#[test]
fn max_length_below_what_an_input_needs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let long_text = "palabra ".repeat(1000);
    let input = dir.path().join("pairs.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n",
            serde_json::json!({"title": "Un título", "text": long_text})
        ),
    )
    .unwrap();
    let embed = |max_length: &str| {
        densa(
            &[
                "embed",
                "--model",
                s(&model()),
                "--input",
                s(&input),
                "--max-length",
                max_length,
            ],
            None,
        )
    };
    let stderr = fails(&embed("2"));
    assert!(
        stderr.contains("max_length 2 is shorter than the 3 special tokens a pair of texts gets"),
        "{stderr}"
    );
    // 3 holds the special tokens: the 1,000-word passage is cut, not refused.
    let out = embed("3");
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 1 inputs were truncated to 3"));
    // Single texts need 2; 1 is refused when the encoder opens.
    let stderr = embed_hola_fails(&["--max-length", "1"]);
    assert!(
        stderr.contains("max_length 1 must be at least 2"),
        "{stderr}"
    );
}

/// `densa embed` of "hola" with `flags` that must fail: its standard error.
fn embed_hola_fails(flags: &[&str]) -> String {
    let model = model();
    let mut args = vec!["embed", "--model", s(&model)];
    args.extend_from_slice(flags);
    fails(&densa(&args, Some(b"hola\n")))
}

#[test]
fn threads_are_bounded() {
    let stderr = embed_hola_fails(&["--threads", "10000"]);
    assert!(
        stderr.contains("10000 threads is more than 4 per core"),
        "{stderr}"
    );
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.jsonl");
    let bom = dir.path().join("bom.jsonl");
    let body =
        "{\"title\": \"Cervantes\", \"text\": \"Escribió el Quijote.\"}\n{\"text\": \"hola\"}\n";
    std::fs::write(&plain, body).unwrap();
    std::fs::write(&bom, format!("\u{feff}{body}")).unwrap();
    let embed = |input: &Path| {
        ok(&densa(
            &["embed", "--model", s(&model()), "--input", s(input)],
            None,
        ))
    };
    assert_eq!(embed(&bom), embed(&plain));
    let text_bom = dir.path().join("bom.txt");
    std::fs::write(&text_bom, "\u{feff}hola\n").unwrap();
    assert_eq!(embed(&text_bom), expected_first_line_of("hola"));
}

fn expected_first_line_of(text: &str) -> String {
    ok(&densa(
        &["embed", "--model", s(&model())],
        Some(format!("{text}\n").as_bytes()),
    ))
}

#[test]
fn an_unknown_kernel_path_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_densa"))
        .args(["embed", "--model", s(&model())])
        .env("DENSA_ISA", "avx9000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = fails(&out);
    assert!(
        stderr.contains(
            "DENSA_ISA=\"avx9000\" is not a kernel path: use one of scalar, avx2, avx512"
        ),
        "{stderr}"
    );
}
