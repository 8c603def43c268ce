#!/usr/bin/env python3
"""Requests per second and p50/p99 latency of embedding servers, on one machine, in one run.

    python3 tools/make_bench_model.py /tmp/bert-st-base-random --family bert-st
    cargo build --release
    python3 -m venv --system-site-packages /tmp/infvenv
    /tmp/infvenv/bin/pip install "infinity-emb[server]==0.0.78" "transformers<4.52" "sentence-transformers<4" "numpy<2"
    python3 tools/bench_serve.py /tmp/bert-st-base-random --rounds 3 \\
        --peer "infinity:/tmp/infvenv/bin/infinity_emb v2 --model-id {model} --engine torch --device cpu --port {port} --url-prefix /v1 --no-model-warmup"

Each server is started on a free loopback port with the same model folder, waited for, and
driven through OpenAI's `POST /v1/embeddings` by C client threads (keep-alive connections), for
C in --clients (default 1 8 64) and two kinds of request: one question (8-16 words) and 32
passages (40-60 words each). Servers are interleaved: round by round, kind by kind, level by
level, each server in turn. Prints one JSON line per (round, server, kind, clients) with
requests_per_s, p50_ms, p99_ms, errors and the server's RSS (VmRSS of its process) after the
level. Client and servers share the machine (the same for every server).
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

WORDS = ("el museo del prado está en madrid quién escribió quijote cervantes barcelona río montaña "
         "ciudad año guerra rey agua canción señal corazón historia pintura siglo reino puerto "
         "isla norte sur universidad biblioteca catedral plaza mercado").split()


def texts(rng, n, lo, hi):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """VmRSS of the process and its children (infinity runs its model in a child process)."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name, command, model):
        self.name = name
        self.port = free_port()
        argv = command.format(model=model, port=self.port).split()
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                status, _ = post(self.connection(), "/v1/embeddings", {"input": ["hola"], "model": "m"})
                if status == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"{name} exited with {self.process.returncode}")
            time.sleep(0.5)
        raise SystemExit(f"{name} did not start")

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def post(connection, path, body):
    data = json.dumps(body)
    connection.request("POST", path, data, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    if response.status == 200:
        embeddings = json.loads(payload)["data"]
        assert len(embeddings) == len(body["input"]), payload[:200]
    return response.status, payload


def drive(server, bodies, clients):
    """Sends `bodies` over `clients` threads; latencies (s), errors and wall time."""
    latencies, errors = [], []
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def client():
        connection = server.connection()
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop()
            start = time.perf_counter()
            try:
                status, payload = post(connection, "/v1/embeddings", body)
            except (OSError, http.client.HTTPException) as e:
                status, payload = 0, str(e).encode()
                connection = server.connection()
            elapsed = time.perf_counter() - start
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(f"{status} {payload[:120]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - start


def percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--densa", default="target/release/densa serve --model {model} --port {port} --threads 2 --quiet")
    ap.add_argument("--peer", action="append", default=[], help="NAME:COMMAND with {model} and {port}")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--kinds", nargs="+", default=["question", "passages32"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--question-requests", type=int, default=10, help="requests per client (at least 60 in all)")
    ap.add_argument("--passage-requests", type=int, default=2, help="requests per client (at least 8 in all)")
    args = ap.parse_args()
    specs = [("densa", args.densa)] + [tuple(p.split(":", 1)) for p in args.peer]
    servers = [Server(name, command, args.model) for name, command in specs]
    rng = random.Random(0)
    try:
        for round_ in range(1, args.rounds + 1):
            for kind in args.kinds:
                for clients in args.clients:
                    if kind == "question":
                        n = max(60, args.question_requests * clients)
                        bodies = [{"input": texts(rng, 1, 8, 16), "model": "m"} for _ in range(n)]
                    else:
                        n = max(8, args.passage_requests * clients)
                        bodies = [{"input": texts(rng, 32, 40, 60), "model": "m"} for _ in range(n)]
                    for server in servers:
                        # A short warm-up at this level, untimed.
                        drive(server, bodies[: min(len(bodies), clients)], clients)
                        latencies, errors, wall = drive(server, bodies, clients)
                        print(json.dumps({
                            "round": round_, "server": server.name, "kind": kind, "clients": clients,
                            "requests": len(bodies), "requests_per_s": round(len(latencies) / wall, 2),
                            "p50_ms": round(percentile(latencies, 0.5) * 1e3, 1) if latencies else None,
                            "p99_ms": round(percentile(latencies, 0.99) * 1e3, 1) if latencies else None,
                            "errors": len(errors), "first_error": errors[0] if errors else None,
                            "rss_mib": round(rss_kib(server.process.pid) / 1024, 1),
                        }), flush=True)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
