"""The app as a real server for tests: `python app.py --port <free>` on 127.0.0.1, started once per test module.

    from .app_server import running_app  # noqa: F401  (the fixture)

    def test_x(running_app):
        Client(running_app.url).predict(handle_file("photo.png"), api_name="/unmask")
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .hub_server import free_port, http_status

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
EXAMPLES = ROOT / "examples"


@dataclass
class RunningApp:
    url: str
    log: Path  # the server's stdout and stderr
    pid: int


@contextmanager
def serve_app(workdir: Path, env: dict[str, str], port: int, args: list[str] = ()) -> Iterator[RunningApp]:
    """`python app.py *args` in `workdir`, our environment plus `env`, until it answers on `port`; stopped on exit."""
    log = workdir / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, str(APP), *args], cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", **env})
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
        while http_status(url) != 200:
            assert app.poll() is None and time.monotonic() < deadline, f"app did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.25)
        yield RunningApp(url, log, app.pid)
        assert app.poll() is None, f"the app stopped while serving:\n{log.read_text()[-3000:]}"
    finally:
        app.terminate()
        app.wait(timeout=20)


@pytest.fixture(scope="module")
def running_app(tmp_path_factory) -> Iterator[RunningApp]:
    """The app serving the embedded weights, with its own gradio cache; stopped after the module."""
    tmp = tmp_path_factory.mktemp("app")
    port = free_port()
    with serve_app(tmp, {"GRADIO_TEMP_DIR": str(tmp / "cache"), "UNMASK_MODEL": ""}, port,
                   ["--host", "127.0.0.1", "--port", str(port)]) as app:
        yield app
