"""Load test of the app: `python app.py` on 127.0.0.1, many `gradio_client` users at once, and a soak.

    python benchmarks/load.py                          # 1, 4, 16 and 32 clients × 4 /unmask requests each
    python benchmarks/load.py --clients 16 --requests 8
    nice -n 10 python benchmarks/load.py --soak-minutes 30   # 8 clients, good photos and bad files mixed

Levels: at each number of clients, that many users (each its own `gradio_client.Client`, downloading every output as
a browser would) start at the same instant and send `--requests` photos one after the other (the repo's public-domain
astronaut examples, resized to mixed sizes). Per level: requests per second, latency p50/p95/p99 of the served ones,
how many were refused because the queue was full ("busy": gradio's "Queue is full! Please try again."), errors
(anything else: a dropped connection, a timeout, a wrong result), the server's peak RSS (psutil, sampled every 50 ms,
children included) and its RSS after the level, and the load average (the machine may be shared). Up to the queue
(`--queue-size` waiting + `--concurrency` running: 17 with the app's defaults) nobody may be refused; past it, every
request is served or refused at once, never dropped.

Soak (`--soak-minutes`): `--soak-clients` users for that long, each sending a good photo three times out of four and
a file from tests/corpus.py (broken, hostile or odd files) otherwise; a good photo must be served, a corpus file
served or refused with a message as the corpus expects. Every minute: the server's RSS and its cache files. At the end:
memory at the start, at `--soak-baseline-minutes` and at the end, and the upload and result files older than the app's clean-up age plus one
clean-up period (they should have been deleted).

The server inherits this environment. With glibc's default malloc settings the server's RSS crept up round after round
(8 rounds of 32: +25%); with MALLOC_ARENA_MAX=2 it levelled off (+6%), so the growth looks like memory held in
per-thread malloc arenas, not a leak. `MALLOC_ARENA_MAX=2 python benchmarks/load.py` measures that setting.
Prints markdown tables; exits 1 when a target is missed.
"""

import argparse
import itertools
import os
import runpy
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: the app server and the bad-file corpus
from tests.app_server import EXAMPLES, serve_app  # noqa: E402
from tests.corpus import Case, corpus  # noqa: E402
from tests.hub_server import free_port  # noqa: E402

CLEANUP_EVERY, CLEANUP_AGE = runpy.run_path(str(ROOT / "app.py"), run_name="settings")["CACHE_CLEANUP"]


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


def make_photos(folder: Path, sizes: list[int]) -> list[Path]:
    """The examples resized so their long side is each of `sizes`, as JPEG files (what users upload)."""
    paths = []
    for size in sizes:
        for example in sorted(EXAMPLES.glob("*.jpg")):
            image = Image.open(example).convert("RGB")
            scale = size / max(image.size)
            path = folder / f"{example.stem}_{size}.jpg"
            image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC).save(path, quality=90)
            paths.append(path)
    return paths


def unmask(client: Client, path: Path) -> tuple:
    return client.predict(handle_file(str(path)), "", False, 0.45, api_name="/unmask")


def served_whole(out: tuple) -> None:
    """The downloaded result decodes (a connection dropped mid-file would leave it short or missing)."""
    Image.open(out[0]).load()


def outcome(client: Client, path: Path, case: Case | None = None) -> str:
    """One request → 'served', 'refused' (a bad file, with a message), 'busy' (the queue was full) or 'error: ...'."""
    try:
        served_whole(unmask(client, path))
        return "served" if case is None or case.expect != "error" else f"error: {case.name} accepted"
    except QueueError:
        return "busy"
    except AppError as e:
        return "refused" if case is not None and case.expect in ("error", "any") else f"error: {path.name}: {e}"
    except Exception as e:  # noqa: BLE001  (every other failure is counted and reported, whatever its type)
        return f"error: {type(e).__name__}: {e}"[:200]


def level(url: str, photos: list[Path], clients: int, requests: int, downloads: Path) -> dict:
    """`clients` users released together, `requests` photos each → outcomes, served latencies, wall seconds."""
    users = [Client(url, verbose=False, download_files=str(downloads / f"c{clients}-{i}")) for i in range(clients)]
    barrier, lock, results = threading.Barrier(clients), threading.Lock(), []

    def user(i: int) -> None:
        barrier.wait()
        for r in range(requests):
            start = time.perf_counter()
            what = outcome(users[i], photos[(i + r) % len(photos)])
            with lock:
                results.append((what, time.perf_counter() - start))

    start = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "seconds": time.perf_counter() - start}


def cache_files(folder: Path, older_than: float | None = None) -> list[Path]:
    """Files under `folder`, or those whose ctime (what gradio's clean-up ages by) is over `older_than` s ago."""
    now = time.time()
    return [p for p in folder.rglob("*") if p.is_file() and (older_than is None or now - p.stat().st_ctime > older_than)]


def run_levels(args: argparse.Namespace, url: str, photos: list[Path], memory: MemorySampler, work: Path) -> list[str]:
    capacity = args.queue_size + args.concurrency
    print(f"Load: clients {args.clients} × {args.requests} /unmask requests each, photos {args.sizes} px (long side), "
          f"app --concurrency {args.concurrency} --queue-size {args.queue_size} (capacity {capacity}); "
          f"{os.cpu_count()} CPUs, MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}\n")
    print("| clients | requests | served | busy | errors | requests/s | p50 s | p95 s | p99 s | peak RSS MB "
          "| RSS after MB | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    misses = []
    for clients in [int(c) for c in args.clients.split(",")]:
        memory.reset()
        done = level(url, photos, clients, args.requests, work / "downloads")
        latencies = [s for what, s in done["results"] if what == "served"]
        busy = sum(what == "busy" for what, _ in done["results"])
        errors = sorted({what for what, _ in done["results"] if what.startswith("error")})
        error_count = sum(what.startswith("error") for what, _ in done["results"])
        q = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
        print(f"| {clients} | {len(done['results'])} | {len(latencies)} | {busy} | {error_count} | "
              f"{len(latencies) / done['seconds']:.2f} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} | "
              f"{memory.peak / 2**20:,.0f} | {memory.rss() / 2**20:,.0f} | {os.getloadavg()[0]:.1f} |", flush=True)
        for message in errors[:5]:
            print(f"  {clients} clients: {message}")
        if error_count:
            misses.append(f"{error_count} errors at {clients} clients")
        if busy and clients <= capacity:
            misses.append(f"{busy} refused at {clients} clients (within the queue's capacity)")
    return misses


def run_soak(args: argparse.Namespace, url: str, photos: list[Path], memory: MemorySampler, work: Path) -> list[str]:
    bad = work / "bad"
    bad.mkdir()
    cases = corpus()
    for case in cases:
        (bad / case.name).write_bytes(case.data)
    # Three good photos for every corpus file, in a fixed order every client walks through from its own offset.
    good = itertools.cycle([(p, None) for p in photos])
    mix = [item for c in cases for item in (next(good), next(good), next(good), (bad / c.name, c))]
    cache, deadline = work / "cache", time.monotonic() + 60 * args.soak_minutes
    counts, errors, lock = {}, [], threading.Lock()
    start_rss = memory.rss()
    timeline = [(0.0, start_rss, len(cache_files(cache)))]

    def user(i: int) -> None:
        me = Client(url, verbose=False, download_files=str(work / "downloads" / f"soak{i}"))
        for n in itertools.count():
            if time.monotonic() > deadline:
                return
            path, case = mix[(i * 7 + n) % len(mix)]
            what = outcome(me, path, case)
            key = "error" if what.startswith("error") else what
            with lock:
                counts[key] = counts.get(key, 0) + 1
                if what.startswith("error") or what == "busy":
                    errors.append(what)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(args.soak_clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() - began >= 60 * len(timeline):
            timeline.append(((time.monotonic() - began) / 60, memory.rss(), len(cache_files(cache))))
    end_rss = memory.rss()
    # Memory is judged from the baseline minute on: by then every kind of request has been served (the first
    # minutes grow the allocator's arenas and gradio's caches).
    base_minute, base_rss, _ = min(timeline, key=lambda point: abs(point[0] - args.soak_baseline_minutes))
    growth = end_rss / base_rss - 1
    # gradio keeps its copies of the app's example photos (cached at start-up, before any request) on purpose.
    examples = {p.name for p in EXAMPLES.glob("*.jpg")}
    stale = [p for p in cache_files(cache, older_than=CLEANUP_AGE + CLEANUP_EVERY) if p.name not in examples]
    print(f"Soak: {args.soak_minutes:g} min, {args.soak_clients} clients, {len(photos)} photos ({args.sizes} px) and "
          f"{len(cases)} corpus files, 3 : 1; app --concurrency {args.concurrency} --queue-size {args.queue_size}, "
          f"clean-up every {CLEANUP_EVERY} s of files over {CLEANUP_AGE} s old; {os.cpu_count()} CPUs, "
          f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}, load avg {os.getloadavg()[0]:.1f}\n")
    print("| minute | server RSS MB | cache files |\n|---|---|---|")
    step = max(1, len(timeline) // 10)
    for minute, rss, files in timeline[::step] + ([timeline[-1]] if (len(timeline) - 1) % step else []):
        print(f"| {minute:.0f} | {rss / 2**20:,.0f} | {files} |")
    print(f"\nRequests: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; server RSS "
          f"{start_rss / 2**20:,.0f} MB after the warm-up request, {base_rss / 2**20:,.0f} MB at minute "
          f"{base_minute:.0f}, {end_rss / 2**20:,.0f} MB at the end ({growth:+.1%} from minute {base_minute:.0f}), "
          f"peak {memory.peak / 2**20:,.0f} MB; {len(stale)} cache files older than {CLEANUP_AGE + CLEANUP_EVERY} s "
          f"({len(cache_files(cache))} in all, the app's example photos not counted as stale).")
    for path in stale[:5]:
        print(f"  stale: {path.relative_to(cache)}")
    for message in sorted(set(errors))[:5]:
        print(f"  soak: {message}")
    return [what for what, bad in [(f"{len(errors)} errors", errors), (f"{len(stale)} stale cache files", stale),
                                   (f"memory grew {growth:+.1%}", growth > args.growth_limit)] if bad]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,4,16,32", help="levels: concurrent clients, comma-separated")
    p.add_argument("--requests", type=int, default=4, help="requests per client at each level")
    p.add_argument("--sizes", default="256,512,1024", help="long sides of the photos, comma-separated")
    p.add_argument("--queue-size", type=int, default=16, help="the app's --queue-size (requests that may wait)")
    p.add_argument("--concurrency", type=int, default=1, help="the app's --concurrency (model runs at once)")
    p.add_argument("--soak-minutes", type=float, default=0, help="instead of the levels: a soak this long")
    p.add_argument("--soak-clients", type=int, default=8)
    p.add_argument("--soak-baseline-minutes", type=float, default=5, help="soak: memory growth is measured from here")
    p.add_argument("--growth-limit", type=float, default=0.10, help="soak: allowed RSS growth, end over baseline")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = make_photos(work, [int(s) for s in args.sizes.split(",")])
        port = free_port()
        # serve_app gives the tests' servers one thread; here the app gets torch's default, one per core.
        threads = os.environ.get("OMP_NUM_THREADS") or str(psutil.cpu_count(logical=False) or 1)
        env = {"GRADIO_TEMP_DIR": str(work / "cache"), "OMP_NUM_THREADS": threads}
        with serve_app(work, env, port, ["--host", "127.0.0.1", "--port", str(port), "--queue-size",
                                         str(args.queue_size), "--concurrency", str(args.concurrency)]) as app:
            memory = MemorySampler(app.pid)
            try:
                unmask(Client(app.url, verbose=False, download_files=str(work / "downloads" / "warm-up")), photos[0])
                misses = (run_soak if args.soak_minutes else run_levels)(args, app.url, photos, memory, work)
                served_whole(unmask(Client(app.url, verbose=False, download_files=str(work / "downloads" / "after")),
                                    photos[0]))
            finally:
                memory.stop()
        log = app.log.read_text()  # after the server stopped: with what it printed on its way out
    misses += ["tracebacks in the server log"] if "Traceback" in log else []
    print("Targets: " + ("all met." if not misses else "MISSED: " + ", ".join(misses)))
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
