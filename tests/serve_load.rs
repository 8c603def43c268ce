//! `densa serve` under concurrency: requests merged into one pass with vectors bitwise equal
//! to each text embedded alone, the queue's bound (429), the request timeout (503, the work
//! withdrawn), clients that go away, SIGTERM with requests in flight, the metrics and the log,
//! and a bounded load test (64 clients, 2,000 requests).

mod common;

use common::cli::s;
use common::http::{request, Served};
use common::model_dir;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The vectors of `texts`, each embedded alone by the library (the CLI's and the server's
/// encoder: same folder, same options; checked against transformers elsewhere).
fn alone(model: &str, texts: &[String], normalize: bool) -> Vec<Vec<u32>> {
    let options = densa::Options {
        normalize,
        ..densa::Options::default()
    };
    let encoder = densa::Encoder::from_dir(model_dir(model), options).unwrap();
    texts
        .iter()
        .map(|t| {
            let e = encoder.embed(&[t.as_str()]).unwrap();
            e.row(0).iter().map(|v| v.to_bits()).collect()
        })
        .collect()
}

fn vector_bits(row: &Value) -> Vec<u32> {
    row.as_array()
        .unwrap()
        .iter()
        .map(|v| (v.as_f64().unwrap() as f32).to_bits())
        .collect()
}

/// A metric's value in `/metrics` text (the first line that starts with `series `).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Texts of 1 to `max_words` words from a small Spanish vocabulary (a fixed LCG).
fn texts(n: usize, max_words: usize, seed: u64) -> Vec<String> {
    let words = [
        "el",
        "museo",
        "del",
        "prado",
        "está",
        "en",
        "madrid",
        "quién",
        "escribió",
        "quijote",
        "cervantes",
        "barcelona",
        "río",
        "montaña",
        "ciudad",
        "año",
        "guerra",
        "rey",
        "agua",
        "ñandú",
        "canción",
        "señal",
        "corazón",
        "1605",
    ];
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = 1 + next() % max_words;
            (0..len)
                .map(|_| words[next() % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn concurrent_requests_share_one_pass_and_keep_their_vectors() {
    // A long wait for company: the three requests, sent together, run as one pass.
    let served = Arc::new(Served::start(&[
        "--model",
        s(&model_dir("bert-tiny")),
        "--max-wait-us",
        "500000",
    ]));
    let groups: Vec<Vec<String>> = (0..3).map(|i| texts(2 + i, 12, i as u64)).collect();
    let handles: Vec<_> = groups
        .iter()
        .cloned()
        .map(|group| {
            let served = served.clone();
            std::thread::spawn(move || served.post_ok("/embed", &json!({ "inputs": group })))
        })
        .collect();
    let replies: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (group, reply) in groups.iter().zip(&replies) {
        let got: Vec<Vec<u32>> = reply.as_array().unwrap().iter().map(vector_bits).collect();
        assert_eq!(got, alone("bert-tiny", group, true));
    }
    let metrics = served.call("GET", "/metrics", "").text();
    assert_eq!(
        metric(&metrics, "densa_batches_total{queue=\"embed\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "densa_batched_inputs_total{queue=\"embed\"}"),
        9.0
    );
    assert_eq!(
        metric(
            &metrics,
            "densa_batch_size_bucket{queue=\"embed\",le=\"8\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "densa_batch_size_bucket{queue=\"embed\",le=\"16\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "densa_requests_total{route=\"/embed\",status=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "densa_request_duration_seconds_count{route=\"/embed\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(&metrics, "densa_request_inputs_total{route=\"/embed\"}"),
        9.0
    );
    assert_eq!(metric(&metrics, "densa_queue_calls{queue=\"embed\"}"), 0.0);
    // One log line per request, with its facts.
    let logged: Vec<Value> = served
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["route"] == "/embed")
        .collect();
    assert_eq!(logged.len(), 3, "{:?}", served.log_lines());
    for line in &logged {
        assert_eq!(line["status"], 200);
        assert!(line["tokens"].as_u64().unwrap() > 0 && line["inputs"].as_u64().unwrap() >= 2);
        assert!(line["compute_ms"].as_f64().unwrap() > 0.0);
        assert!(line["queue_ms"].as_f64().unwrap() <= line["total_ms"].as_f64().unwrap());
    }
}

/// A server with `limit` 1 and a 400 ms wait for company: one request waits in it while a
/// second (`body` on `route`) is sent; the second's reply (the first must succeed).
fn refused_while_one_waits(limit: &str, route: &str, body: Value) -> common::http::Reply {
    let folder = model_dir("bert-tiny");
    let args = ["--model", s(&folder), "--max-wait-us", "400000", limit, "1"];
    let served = Arc::new(Served::start(&args));
    let first = {
        let served = served.clone();
        std::thread::spawn(move || {
            served.call("POST", "/embed", &json!({ "inputs": "uno" }).to_string())
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    let refused = served.call("POST", route, &body.to_string());
    assert_eq!(first.join().unwrap().status, 200);
    refused
}

#[test]
fn a_full_queue_answers_429_and_a_slow_request_503() {
    // The first request waits 400 ms for company and holds the queue's only token.
    let refused =
        refused_while_one_waits("--max-queued-tokens", "/embed", json!({ "inputs": "dos" }));
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error_type"], "overloaded");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("limit of 1"));

    // One request at a time: a second one is refused at the door (503), not queued.
    let body = json!({ "input": "dos" });
    let refused = refused_while_one_waits("--max-concurrent-requests", "/v1/embeddings", body);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));

    // A request that cannot finish in time: 503, and its queued work withdrawn.
    let served = Served::start(&[
        "--model",
        s(&model_dir("bert-tiny")),
        "--max-wait-us",
        "400000",
        "--request-timeout-ms",
        "50",
    ]);
    let late = served.call(
        "POST",
        "/v1/embeddings",
        &json!({ "input": "tres" }).to_string(),
    );
    assert_eq!(late.status, 503, "{}", late.text());
    assert_eq!(late.json()["error"]["code"], "timeout");
    std::thread::sleep(Duration::from_millis(600));
    let metrics = served.call("GET", "/metrics", "").text();
    assert_eq!(
        metric(&metrics, "densa_withdrawn_total{queue=\"embed\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "densa_batches_total{queue=\"embed\"}"),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "densa_errors_total{route=\"/v1/embeddings\",kind=\"timeout\"}"
        ),
        1.0
    );
}

#[test]
fn clients_that_go_away_leave_the_server_serving() {
    // Each request waits up to 1 s for company: time for the abandoned one to be withdrawn.
    let served = Served::start(&[
        "--model",
        s(&model_dir("bert-tiny")),
        "--max-wait-us",
        "1000000",
    ]);
    // A body cut short, then the connection closed.
    let mut cut = TcpStream::connect(&served.addr).unwrap();
    let head = "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": \"ho";
    cut.write_all(head.as_bytes()).unwrap();
    drop(cut);
    // A whole request, abandoned while it waits in the queue.
    let mut gone = TcpStream::connect(&served.addr).unwrap();
    let body = json!({ "inputs": "adiós" }).to_string();
    let head = format!("POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    gone.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(gone);
    // Bytes that are not HTTP.
    let mut junk = TcpStream::connect(&served.addr).unwrap();
    junk.write_all(b"\x00\x01\x02 not http\r\n\r\n").unwrap();
    drop(junk);
    std::thread::sleep(Duration::from_millis(1200));
    let reply = served.post_ok("/embed", &json!({ "inputs": ["hola", "adiós"] }));
    let got: Vec<Vec<u32>> = reply.as_array().unwrap().iter().map(vector_bits).collect();
    let want = alone("bert-tiny", &["hola".into(), "adiós".into()], true);
    assert_eq!(got, want);
    assert_eq!(served.call("GET", "/health", "").status, 200);
    // The abandoned request never ran: its call was withdrawn from the queue.
    let metrics = served.call("GET", "/metrics", "").text();
    assert_eq!(
        metric(&metrics, "densa_withdrawn_total{queue=\"embed\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "densa_batches_total{queue=\"embed\"}"),
        1.0,
        "{metrics}"
    );
}

#[test]
fn sigterm_finishes_the_requests_in_flight_then_exits_0() {
    let mut served = Served::start(&[
        "--model",
        s(&model_dir("bert-tiny")),
        "--max-wait-us",
        "500000",
    ]);
    let addr = served.addr.clone();
    let in_flight = std::thread::spawn(move || {
        request(
            &addr,
            "POST",
            "/embed",
            &[],
            json!({ "inputs": ["uno", "dos"] }).to_string().as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(150));
    let pid = served.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let want = alone("bert-tiny", &["uno".into(), "dos".into()], true);
    let got: Vec<Vec<u32>> = reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(vector_bits)
        .collect();
    assert_eq!(got, want);
    let exit = served.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{:?}", served.log_lines());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        served.log_lines().iter().any(|l| l.contains("stopped")),
        "{:?}",
        served.log_lines()
    );
    assert!(
        TcpStream::connect(&served.addr).is_err(),
        "still accepting after SIGTERM"
    );
}

/// 64 clients, 2,000 requests of 1 to 8 texts of 1 to 60 words: no 5xx, every vector bitwise
/// the text's alone, and the resident memory after warm-up flat (within 32 MiB: a leak of one
/// request's tokens or vectors per request would pass it).
#[test]
fn load_64_clients_2000_requests() {
    let served = Arc::new(Served::start(&[
        "--model",
        s(&model_dir("bert-tiny")),
        "--quiet",
    ]));
    let pool = texts(400, 60, 7);
    let reference = Arc::new(alone("bert-tiny", &pool, true));
    let pool = Arc::new(pool);
    let (clients, requests) = (64, 2000);
    let run = |first: usize, count: usize| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (served, pool, reference) = (served.clone(), pool.clone(), reference.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    let mut r = first + c;
                    while r < first + count {
                        let n = 1 + (r * 7) % 8;
                        let picks: Vec<usize> =
                            (0..n).map(|j| (r * 31 + j * 17) % pool.len()).collect();
                        let inputs: Vec<&str> = picks.iter().map(|&i| pool[i].as_str()).collect();
                        let reply = served.call(
                            "POST",
                            "/embed",
                            &json!({ "inputs": inputs, "truncate": true }).to_string(),
                        );
                        if reply.status != 200 {
                            failures.push(format!(
                                "request {r}: {} {}",
                                reply.status,
                                reply.text()
                            ));
                        } else {
                            let rows = reply.json();
                            for (k, &i) in picks.iter().enumerate() {
                                if vector_bits(&rows[k]) != reference[i] {
                                    failures
                                        .push(format!("request {r}: text {i} differs from alone"));
                                }
                            }
                        }
                        r += clients;
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(
            failures.is_empty(),
            "{} failures, first: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    };
    run(0, 400);
    let warm = served.rss_kib();
    run(400, requests - 400);
    let end = served.rss_kib();
    eprintln!("load test: RSS after warm-up {warm} KiB, after {requests} requests {end} KiB");
    assert!(
        end < warm + 32 * 1024,
        "RSS grew from {warm} KiB to {end} KiB"
    );
    let metrics = served.call("GET", "/metrics", "").text();
    assert_eq!(
        metric(
            &metrics,
            "densa_requests_total{route=\"/embed\",status=\"200\"}"
        ),
        requests as f64
    );
}
