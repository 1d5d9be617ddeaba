"""Load test of the app: `python app.py` on 127.0.0.1, many `gradio_client` users at once, then a burst past the queue.

    python benchmarks/load.py                             # 3 rounds of 200 /unmask requests from 16 clients
    python benchmarks/load.py --requests 48 --rounds 3    # smaller, for a 2-core CPU machine

Each round sends `--requests` calls from `--clients` concurrent clients (each its own `gradio_client.Client`, one
request at a time), photos of mixed sizes (the repo's public-domain astronaut examples, resized). Per round: requests
per second, latency p50/p95/p99, errors, the server's peak RSS (psutil, sampled every 50 ms) and its RSS and cache
files after the round. One untimed request warms the server up first. Memory is bounded when no round's peak is more
than `--growth-limit` above the first round's. Last, a burst of `--burst` simultaneous requests (fresh clients): those
beyond the queue (`--queue-size` waiting + `--concurrency` running) must be refused at once with gradio's "Queue is
full" message, not left to time out. Prints markdown tables; exits 1 when a target is missed.

The server inherits this environment. With glibc's default malloc settings the server's RSS crept up round after round
(8 rounds of 32: +25%); with MALLOC_ARENA_MAX=2 it levelled off (+6%), so the growth looks like memory held in
per-thread malloc arenas, not a leak. `MALLOC_ARENA_MAX=2 python benchmarks/load.py` measures that setting.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workdir: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(workdir / "cache")}
    log = open(workdir / "app.log", "w")
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                               "--queue-size", str(args.queue_size), "--concurrency", str(args.concurrency)],
                              cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            sys.exit(f"the app did not start:\n{(workdir / 'app.log').read_text()[-3000:]}")
        time.sleep(0.5)


class MemorySampler:
    """Peak resident memory of a process and its children, sampled in a background thread."""

    def __init__(self, pid: int, every: float = 0.05):
        self.process, self.every, self.peak = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        try:
            return sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.rss())

    def reset(self) -> None:
        self.peak = self.rss()

    def stop(self) -> None:
        self._stop.set()


def make_photos(folder: Path, sizes: list[int]) -> list[str]:
    """The examples resized so their long side is each of `sizes`, as JPEG files (what users upload)."""
    paths = []
    for size in sizes:
        for example in EXAMPLES:
            image = Image.open(example).convert("RGB")
            scale = size / max(image.size)
            path = folder / f"{example.stem}_{size}.jpg"
            image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC).save(path, quality=90)
            paths.append(str(path))
    return paths


def unmask(client: Client, photo: str) -> None:
    client.predict(handle_file(photo), "", False, 0.45, api_name="/unmask")


def run_round(clients: list[Client], photos: list[str], requests: int) -> tuple[list[float], list[str], float]:
    """`requests` calls spread over the clients (each does one at a time); latencies, error messages, wall seconds."""
    latencies, errors, lock = [], [], threading.Lock()
    jobs = iter(range(requests))

    def worker(client: Client) -> None:
        while True:
            with lock:
                i = next(jobs, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                unmask(client, photos[i % len(photos)])
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as e:  # noqa: BLE001  (every failure is counted and reported, whatever its type)
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:200])

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - start


def burst(url: str, photo: str, count: int) -> list[tuple[str, float]]:
    """`count` requests released at the same instant from fresh clients → (outcome, seconds) each."""
    clients = [Client(url, verbose=False, download_files=False) for _ in range(count)]
    barrier, results, lock = threading.Barrier(count), [], threading.Lock()

    def one(client: Client) -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            unmask(client, photo)
            outcome = "served"
        except Exception as e:  # noqa: BLE001
            outcome = "refused: queue full" if "queue is full" in str(e).lower() else f"failed: {type(e).__name__}: {e}"[:200]
        with lock:
            results.append((outcome, time.perf_counter() - start))

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cache_files(folder: Path) -> tuple[int, float]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200, help="requests per round")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="256,512,1024", help="long sides of the photos, comma-separated")
    p.add_argument("--queue-size", type=int, default=16, help="the app's --queue-size (requests that may wait)")
    p.add_argument("--concurrency", type=int, default=1, help="the app's --concurrency (model runs at once)")
    p.add_argument("--burst", type=int, default=40, help="simultaneous requests for the queue-full check")
    p.add_argument("--growth-limit", type=float, default=0.10, help="allowed peak-RSS growth over the first round")
    args = p.parse_args()
    if not EXAMPLES:
        sys.exit(f"no example photos in {ROOT / 'examples'}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        photos = make_photos(workdir, [int(s) for s in args.sizes.split(",")])
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = start_server(port, workdir, args)
        memory = MemorySampler(server.pid)
        try:
            clients = [Client(url, verbose=False, download_files=False) for _ in range(args.clients)]
            unmask(clients[0], photos[0])  # warm-up: the face detector loads on first use
            rows, peaks = [], []
            for r in range(1, args.rounds + 1):
                memory.reset()
                latencies, errors, seconds = run_round(clients, photos, args.requests)
                files, megabytes = cache_files(workdir / "cache")
                peaks.append(memory.peak)
                q = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
                rows.append(f"| {r} | {args.requests} | {len(errors)} | {len(latencies) / seconds:.2f} | {q[0]:.2f} | "
                            f"{q[1]:.2f} | {q[2]:.2f} | {memory.peak / 2**20:.0f} | {memory.rss() / 2**20:.0f} | "
                            f"{files} ({megabytes:.1f} MB) |")
                for message in sorted(set(errors))[:5]:
                    print(f"round {r} error: {message}")
            outcomes = burst(url, photos[0], args.burst)
            alive = server.poll() is None
            if alive:
                unmask(clients[0], photos[0])  # still serving after the burst
        finally:
            memory.stop()
            server.terminate()
            server.wait(timeout=30)

        log = (workdir / "app.log").read_text()
    print(f"\nLoad: {args.rounds} rounds × {args.requests} /unmask requests from {args.clients} concurrent clients, "
          f"photos {args.sizes} px (long side), app --concurrency {args.concurrency} --queue-size {args.queue_size}; "
          f"{os.cpu_count()} CPUs, MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}\n")
    print("| round | requests | errors | requests/s | p50 s | p95 s | p99 s | peak RSS MB | RSS after MB | cache files |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    refused = [s for o, s in outcomes if o == "refused: queue full"]
    served = [s for o, s in outcomes if o == "served"]
    failed = sorted({o for o, _ in outcomes if o.startswith("failed")})
    print(f"\nBurst of {args.burst} simultaneous requests: {len(served)} served (slowest {max(served, default=0):.1f} s), "
          f"{len(refused)} refused with 'Queue is full' (slowest refusal {max(refused, default=0):.2f} s), "
          f"{len(outcomes) - len(served) - len(refused)} other failures{': ' + '; '.join(failed) if failed else ''}; "
          f"server {'still serving' if alive else 'DOWN'} afterwards.")
    growth = max(peaks) / peaks[0] - 1
    print(f"Memory: peak RSS {peaks[0] / 2**20:.0f} MB in round 1, {max(peaks) / 2**20:.0f} MB at most "
          f"({growth:+.1%}; limit {args.growth_limit:+.0%}).")
    total_errors = sum(int(row.split("|")[3]) for row in rows)
    misses = [what for what, bad in [("errors during the rounds", total_errors > 0),
                                     ("memory grew", growth > args.growth_limit),
                                     ("the queue never refused", not refused),
                                     ("a refusal took over 10 s", max(refused, default=0) > 10),
                                     ("burst requests failed otherwise", bool(failed)),
                                     ("tracebacks in the server log", "Traceback" in log),
                                     ("the server went down", not alive)] if bad]
    print("Targets: " + ("all met." if not misses else "MISSED: " + ", ".join(misses)))
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
