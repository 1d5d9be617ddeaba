"""The app under load, started as the README does (`python app.py`, its defaults): many users at once after a battery
of bad files, and hostile clients (uploads cut off mid-transfer, a client that leaves while its request runs, the
same file 50 times at once) that must not disturb anyone else's request. Timings are in benchmarks/load.py."""

import runpy
import socket
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from gradio import processing_utils, route_utils
from PIL import Image

from .app_server import APP, EXAMPLES, RunningApp, serve_app
from .corpus import corpus
from .hub_server import free_port

PHOTO = EXAMPLES / "astronaut_surgical.jpg"
ARGS = (handle_file(str(PHOTO)), "", False, 0.45)
QUEUE = 16 + 1  # app.py's defaults: 16 requests may wait, 1 runs


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[RunningApp]:
    """`python app.py` with no arguments: the port comes from GRADIO_SERVER_PORT (a free one), the rest as shipped."""
    tmp = tmp_path_factory.mktemp("load")
    port = free_port()
    with serve_app(tmp, {"GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(tmp / "cache")}, port) as running:
        yield running


def client(app: RunningApp, folder: Path) -> Client:
    return Client(app.url, verbose=False, download_files=str(folder))  # downloads every output, as a user would


def check_result(out: tuple) -> None:
    """Every output file arrived whole: the result PNG decodes at the photo's size and says it is a prediction."""
    result = Image.open(out[0])
    result.load()
    assert result.size == (512, 512) and "1 face(s) unmasked" in out[6]
    for item in out[3]:  # the per-face gallery
        Image.open(item["image"]).load()


def check_log(app: RunningApp) -> None:
    log = app.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def test_cached_images_are_never_seen_half_written(tmp_path):
    """The cause of the dropped connections, on its own: while other threads save the same image (identical outputs
    of concurrent requests), every read of the cached file gets all of it. gradio 6.31's own version truncated the
    file on each save: most reads here got 0 bytes."""
    runpy.run_path(str(APP))  # app.py puts its save_pil_to_cache into gradio, as the server does on start
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    path = Path(processing_utils.save_pil_to_cache(image, str(tmp_path)))
    stop = threading.Event()

    def save_again() -> None:
        while not stop.is_set():
            processing_utils.save_pil_to_cache(image, str(tmp_path))

    writers = [threading.Thread(target=save_again) for _ in range(2)]
    for t in writers:
        t.start()
    sizes = {len(path.read_bytes()) for _ in range(3000)}
    stop.set()
    for t in writers:
        t.join()
    assert sizes == {path.stat().st_size}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging files left


def test_clean_up_survives_files_added_meanwhile(tmp_path):
    """gradio's clean-up walks its sets of files in a worker thread while requests add to them; gradio 6.31's own
    version then raised "Set changed size during iteration" and its clean-up task ended for good. The app's runs on
    copies: no error, the old files are deleted and forgotten, the files added meanwhile stay tracked."""
    runpy.run_path(str(APP))  # app.py puts its clean-up into gradio, as the server does on start
    old = {str(tmp_path / f"old{i}") for i in range(3000)}
    for path in old:
        Path(path).touch()
    tracked = set(old)
    blocks = types.SimpleNamespace(blocks={}, temp_file_sets=[tracked])
    stop, added = threading.Event(), []

    def add() -> None:
        while not stop.is_set():
            added.append(str(tmp_path / f"new{len(added)}"))
            tracked.add(added[-1])

    adder = threading.Thread(target=add)
    adder.start()
    try:
        route_utils.delete_files_created_by_app(blocks, age=None)  # as on exit: everything it tracked then
    finally:
        stop.set()
        adder.join()
    assert not any(Path(path).exists() for path in old)
    assert tracked == set(added) and blocks.temp_file_sets == [tracked]


def test_16_users_after_a_bad_file_battery(app, tmp_path):
    """All the bad files first, then 16 concurrent users × 4 requests with one photo: every request served whole.
    Identical photos give byte-identical outputs that gradio caches under one name, so this is where a file being
    rewritten while it was sent dropped connections (app.save_pil_to_cache)."""
    battery = client(app, tmp_path / "battery")
    for case in corpus():
        path = tmp_path / case.name
        path.write_bytes(case.data)
        try:
            battery.predict(handle_file(str(path)), "", False, 0.45, api_name="/unmask")
        except AppError:
            pass  # a clear refusal; what it says is tests/test_bad_input.py's business

    def user(i: int) -> list[str]:
        me, failures = client(app, tmp_path / f"user{i}"), []
        for _ in range(4):
            try:
                check_result(me.predict(*ARGS, api_name="/unmask"))
            except Exception as e:  # noqa: BLE001  (any failure, whatever its type, is what this test counts)
                failures.append(f"{type(e).__name__}: {e}")
        return failures

    with ThreadPoolExecutor(16) as pool:
        failures = [f for fs in pool.map(user, range(16)) for f in fs]
    assert failures == [], failures
    check_log(app)


def cut_off_upload(port: int, size: int = 2**20) -> None:
    """A multipart upload announcing `size` bytes of photo; the client sends half of them and hangs up."""
    boundary = "cutoffboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="cut.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n".encode() + head + bytes(size // 2))


def upload(api: str, data: bytes) -> str:
    reply = httpx.post(f"{api}/upload", files={"files": ("same.jpg", data, "image/jpeg")}, timeout=120)
    reply.raise_for_status()
    return reply.json()[0]


def leave_while_running(api: str, path: str) -> None:
    """Start /unmask over the plain HTTP API, read the first event of its stream, then drop the connection."""
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "", False, 0.45]
    event = httpx.post(f"{api}/call/unmask", json={"data": data}, timeout=60).json()["event_id"]
    with httpx.stream("GET", f"{api}/call/unmask/{event}", timeout=60) as stream:
        next(stream.iter_lines())


def same_file(api: str, path: str) -> str:
    """/unmask on an uploaded file: 'served', or 'busy' (refused at once because the queue is full)."""
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "", False, 0.45]
    posted = httpx.post(f"{api}/call/unmask", json={"data": data}, timeout=60)
    if posted.status_code == 503:
        assert "Queue is full" in posted.text, posted.text
        return "busy"
    posted.raise_for_status()
    reply = httpx.get(f"{api}/call/unmask/{posted.json()['event_id']}", timeout=300).text
    assert "event: complete" in reply, reply[:500]
    return "served"


def test_hostile_clients_do_not_disturb_other_users(app, tmp_path):
    """Users already waiting in the queue get their results while others cut uploads off, leave mid-request and
    send the same file 50 times at once; those 50 are served or refused with 'Queue is full', never dropped; no
    partial upload is left behind; and the server serves the next user as usual."""
    port, api = int(app.url.rsplit(":", 1)[1].strip("/")), app.url + "gradio_api"
    cache = app.log.parent / "cache"
    before = {p for p in cache.rglob("*") if p.is_file()}
    users = [client(app, tmp_path / f"user{i}") for i in range(3)]
    waiting = [u.submit(*ARGS, api_name="/unmask") for u in users]
    while any(job.status().code in (Status.STARTING, Status.JOINING_QUEUE) for job in waiting):
        time.sleep(0.1)  # all three are in the queue before the hostile clients start

    for _ in range(5):
        cut_off_upload(port)
    leavers = [threading.Thread(target=leave_while_running, args=(api, upload(api, PHOTO.read_bytes())))
               for _ in range(3)]
    for t in leavers:
        t.start()
    for t in leavers:
        t.join()
    data = PHOTO.read_bytes()
    with ThreadPoolExecutor(50) as pool:
        paths = list(pool.map(lambda _: upload(api, data), range(50)))
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == data  # 50 uploads of one file: one whole copy
    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(lambda p: same_file(api, p), paths))
    assert outcomes.count("served") >= 1 and outcomes.count("served") + outcomes.count("busy") == 50

    for job in waiting:
        check_result(job.result(timeout=300))
    check_result(users[0].predict(*ARGS, api_name="/unmask"))
    partial = [p for p in cache.rglob("*") if p.is_file() and p not in before and p.suffix not in (".png", ".webp")
               and p.read_bytes() != data]
    assert partial == [], partial  # the cut-off uploads left nothing behind (results are PNG or WebP)
    check_log(app)
