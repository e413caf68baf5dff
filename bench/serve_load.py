"""`lit_ft serve` under load, against a plain `transformers.pipeline` loop on the same export, in the same run.

Two models: the quickstart classifier (the packaged MiniLM fitted for a few steps on the quickstart data, then
exported) and a tiny chat SFT model (the tests' tiny Llama, fitted for two steps). For each, the server runs on a
free localhost port and 1, 8 and 32 concurrent clients (threads, keep-alive connections) send `POST /predict`
with one input each for a fixed duration, and one process runs `transformers.pipeline` on the same inputs one
after another for the same duration; in rounds, the baseline and the server settings interleaved. Everything is
bounded: localhost only, `--seconds` per setting and round, at most `--max_requests` requests each.

    python bench/serve_load.py                     # both models, 1/8/32 clients, 3 rounds of 8 s each
    python bench/serve_load.py --seconds 3 --rounds 1 --models classifier --clients 1 8     # a quick look

Figures per setting: requests/s, p50/p95/p99 latency, failed requests. Targets (classifier): at 32 clients
>= 3x the pipeline loop's requests/s with p99 < 1 s; zero failed requests in every setting. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEXTS = [line.strip().strip('"') for line in (REPO / "lit_ft" / "resources" / "quickstart" / "predict.csv")
         .read_text().splitlines()[1:] if line.strip()]
PROMPTS = [f"what is {i} plus one?" for i in range(20)]
SPEEDUP, P99_S = 3.0, 1.0


def lit_ft(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "lit_ft", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def classifier_export(work: Path, steps: int) -> Path:
    run = work / "quickstart"
    lit_ft("fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(run),
           "--trainer.logger", "false", "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "1",
           "--trainer.enable_progress_bar", "false", cwd=work)
    return run / "export"


def sft_export(work: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from sft_fixtures import chat_rows, make_causal_lm, write_jsonl

    llama = make_causal_lm(work / "llama")
    train = write_jsonl(chat_rows(12), work / "chat.jsonl")
    run = work / "sft_chat"
    lit_ft("fit", "--config", str(REPO / "configs" / "sft_chat.yaml"), "--model.backbone", str(llama),
           "--data.init_args.source.train", train, "--model.task_options.max_new_tokens", "8",
           "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(run),
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", cwd=work)
    return run / "export"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, export: Path, max_batch_size: int) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lit_ft", "serve", str(export), "--port", str(self.port), "--max_batch_size",
             str(max_batch_size), "--batch_timeout", "0.005"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"lit_ft serve exited {self.process.returncode}")
            try:
                if post(http.client.HTTPConnection("127.0.0.1", self.port, timeout=5), "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("lit_ft serve did not come up")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def post(connection: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def load(port: int, clients: int, inputs: list[str], seconds: float, max_requests: int) -> dict[str, Any]:
    """`clients` threads posting one input each, back to back, for `seconds` (or `max_requests` in all)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop_at:
            with lock:
                if len(latencies) + failures[0] >= max_requests:
                    return
            start = time.perf_counter()
            try:
                status, _ = post(connection, "POST", "/predict", {"inputs": inputs[i % len(inputs)]})
            except OSError:
                status = 0
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            took = time.perf_counter() - start
            with lock:
                if status == 200:
                    latencies.append(took)
                else:
                    failures[0] += 1
            i += clients

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, failures[0], time.monotonic() - started)


def summary(latencies: list[float], failed: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies) or [float("nan")]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests": len(latencies), "failed": failed, "rps": len(latencies) / elapsed, "p50": pct(0.50),
            "p95": pct(0.95), "p99": pct(0.99), "latencies": latencies, "elapsed": elapsed}


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one setting: latencies pooled, requests/s the median of the rounds' (robust to a round that
    another job slowed)."""
    figures = summary([x for r in rounds for x in r["latencies"]], sum(r["failed"] for r in rounds),
                      sum(r["elapsed"] for r in rounds))
    figures["rps"] = statistics.median(r["rps"] for r in rounds)
    return figures


def pipeline_loop(export: Path, task: str, inputs: list[str], seconds: float, max_requests: int) -> dict[str, Any]:
    """The baseline: one process, one `transformers.pipeline` call per input, one after another."""
    code = f"""
import json, sys, time
from transformers import pipeline
pipe = pipeline({task!r}, model={str(export)!r}, device="cpu")
inputs = json.loads(sys.argv[1])
kwargs = {{"max_new_tokens": 8, "do_sample": False}} if {task!r} == "text-generation" else {{}}
pipe(inputs[0], **kwargs)
latencies, start = [], time.monotonic()
while time.monotonic() - start < {seconds} and len(latencies) < {max_requests}:
    t = time.perf_counter(); pipe(inputs[len(latencies) % len(inputs)], **kwargs)
    latencies.append(time.perf_counter() - t)
print(json.dumps({{"latencies": latencies, "elapsed": time.monotonic() - start}}))
"""
    done = subprocess.run([sys.executable, "-c", code, json.dumps(inputs)], capture_output=True, text=True,
                          check=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return summary(found["latencies"], 0, found["elapsed"])


def row(name: str, figures: dict[str, Any], base: dict[str, Any] | None) -> str:
    ratio = f"{figures['rps'] / base['rps']:.2f}x" if base else ""
    return (f"| {name} | {figures['requests']} | {figures['failed']} | {figures['rps']:.1f} | {ratio} | "
            f"{figures['p50'] * 1000:.0f} | {figures['p95'] * 1000:.0f} | {figures['p99'] * 1000:.0f} |")


def bench(name: str, export: Path, task: str, inputs: list[str], args: argparse.Namespace) -> bool:
    """`--rounds` rounds, each the pipeline loop then every client count, so the baseline and the server meet the
    machine's busy and quiet moments alike."""
    server = Server(export, args.max_batch_size)
    runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], **{str(c): [] for c in args.clients}}
    try:
        load(server.port, 4, inputs, 2.0, 200)  # warm-up, not counted
        for _ in range(args.rounds):
            runs["pipeline"].append(pipeline_loop(export, task, inputs, args.seconds, args.max_requests))
            for clients in args.clients:
                runs[str(clients)].append(load(server.port, clients, inputs, args.seconds, args.max_requests))
    finally:
        code = server.stop()
    base = pooled(runs["pipeline"])
    print(f"\n{name}: {export} ({args.rounds} rounds of {args.seconds:g} s per setting)\n")
    print("| setting | requests | failed | requests/s (median of rounds) | vs pipeline | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("transformers.pipeline loop", base, None))
    ok = code == 0
    for clients in args.clients:
        figures = pooled(runs[str(clients)])
        print(row(f"lit_ft serve, {clients} clients", figures, base))
        ok &= figures["failed"] == 0
        if name == "classifier" and clients == 32:
            met = figures["rps"] >= SPEEDUP * base["rps"] and figures["p99"] < P99_S
            verdict = "PASS" if met else "FAIL"
            print(f"\ntarget (32 clients >= {SPEEDUP}x the pipeline loop, p99 < {P99_S} s): {verdict}")
            ok &= met
    print(f"server exit status on SIGTERM: {code}", flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=("classifier", "sft"), default=["classifier", "sft"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each setting in each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every setting, interleaved")
    parser.add_argument("--max_requests", type=int, default=20000, help="cap on requests per setting")
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--fit_steps", type=int, default=30, help="optimizer steps of the quickstart fit")
    args = parser.parse_args()
    print(f"CPU threads: {os.cpu_count()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        work = Path(tmp)
        if "classifier" in args.models:
            ok &= bench("classifier", classifier_export(work, args.fit_steps), "text-classification", TEXTS, args)
        if "sft" in args.models:
            ok &= bench("sft", sft_export(work), "text-generation", PROMPTS, args)
    print(f"\nall targets: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
