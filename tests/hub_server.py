"""A local Hugging Face Hub for tests: `olah` (a Hub mirror) serving git repos from a temp folder, offline.

`olah_server` (session) starts olah on a free 127.0.0.1 port; `hub` (per test) points huggingface_hub and
datasets at it with a fresh HF_HOME, so the real client code paths (snapshot_download, load_dataset, ...)
run over HTTP. Repos are plain git repos on branch `main`; olah serves only committed files.

    def test_x(hub):
        sha = hub.commit("org/name", folder)                  # create the repo or add a commit
        UnmaskPipeline.from_pretrained("org/name")
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Where olah would go for anything it does not mirror: a loopback address nothing listens on.
UNUSED_UPSTREAM = "127.0.0.9:9"
HEALTH_REPO = "olah-test/health"
TYPE_FOLDERS = {"model": "models", "dataset": "datasets"}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost"}


class LocalHub:
    """A running olah server and the git repos it mirrors (`mirrors/{models,datasets}/ORG/NAME`)."""

    def __init__(self, url: str, mirrors: Path):
        self.url, self.mirrors = url, mirrors

    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        return self.mirrors / TYPE_FOLDERS[repo_type] / repo_id

    def commit(self, repo_id: str, folder: str | Path, repo_type: str = "model", message: str = "upload") -> str:
        """Make the repo's tree exactly `folder`'s files (creating the repo on first use); returns the commit sha."""
        repo = self.repo_path(repo_id, repo_type)
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True, exist_ok=True)
            _git(repo, "init", "-q", "-b", "main")
        for entry in repo.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        shutil.copytree(folder, repo, dirs_exist_ok=True)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        return _git(repo, "rev-parse", "HEAD")


def _git(repo: Path, *args: str) -> str:
    # Plain git blobs, no LFS: olah serves them as regular files. Ignore the user's git config entirely.
    env = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@pytest.fixture(scope="session")
def olah_server(tmp_path_factory) -> Iterator[LocalHub]:
    """olah on a free loopback port, offline, mirroring the git repos under a temp folder."""
    pytest.importorskip("olah", reason="olah (requirements-dev.txt) runs the local Hub")
    if shutil.which("git") is None:
        pytest.skip("git is needed for the local Hub's repos")
    root = tmp_path_factory.mktemp("olah")
    port = free_port()
    hub = LocalHub(f"http://127.0.0.1:{port}", root / "mirrors")
    health = root / "health"
    health.mkdir()
    (health / "README.md").write_text("health check\n")
    hub.commit(HEALTH_REPO, health)
    # mirrors-path and offline exist only in the TOML config, not as command-line flags.
    (root / "olah.toml").write_text(f"""[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{root / 'cache'}"
mirrors-path = ["{hub.mirrors}"]
hf-scheme = "http"
hf-netloc = "{UNUSED_UPSTREAM}"
hf-lfs-netloc = "{UNUSED_UPSTREAM}"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"

[accessibility]
offline = true
""")
    log = open(root / "olah.out", "w")
    process = subprocess.Popen([sys.executable, "-c", "from olah.server import cli; cli()", "--config", str(root / "olah.toml"),
                                "--log-path", str(root / "logs")], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        # GET / answers 500 on olah; a mirrored repo's refs is the first thing that really works.
        while http_status(f"{hub.url}/api/models/{HEALTH_REPO}/refs") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"olah did not start:\n{(root / 'olah.out').read_text()[-3000:]}")
            time.sleep(0.1)
        yield hub
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def hub(olah_server: LocalHub, tmp_path: Path, monkeypatch) -> Iterator[LocalHub]:
    """The local Hub, with huggingface_hub and datasets pointed at it and a fresh HF_HOME for this test.

    Subprocesses read the environment; this process's libraries read it at import, so their constants are
    patched too (HfApi() and HfFileSystem() take the endpoint from them when called).
    """
    import datasets
    import huggingface_hub
    from huggingface_hub import constants

    home, url = tmp_path / "hf_home", olah_server.url
    env = {"HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1,localhost"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HF_HUB_CACHE", "HF_XET_CACHE", "HF_DATASETS_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    patches = [
        (constants, "ENDPOINT", url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_HOME", str(home)),
        (constants, "HF_HUB_CACHE", str(home / "hub")),
        (constants, "HF_XET_CACHE", str(home / "xet")),
        (constants, "HF_TOKEN_PATH", str(home / "token")),
        (constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
        (constants, "HF_HUB_OFFLINE", False),
        (huggingface_hub.hf_api.api, "endpoint", url),  # the module-level HfApi behind huggingface_hub.model_info & co.
        (datasets.config, "HF_ENDPOINT", url),
        (datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (datasets.config, "HF_CACHE_HOME", str(home)),
        (datasets.config, "HF_DATASETS_CACHE", home / "datasets"),
        (datasets.config, "HF_MODULES_CACHE", home / "modules"),
        (datasets.config, "DOWNLOADED_DATASETS_PATH", home / "datasets" / "downloads"),
        (datasets.config, "EXTRACTED_DATASETS_PATH", home / "datasets" / "downloads" / "extracted"),
        (datasets.config, "HF_HUB_OFFLINE", False),
        (datasets.config, "HF_DATASETS_OFFLINE", False),
    ]
    for target, name, value in patches:
        monkeypatch.setattr(target, name, value)
    huggingface_hub.HfFileSystem.clear_instance_cache()  # cached instances keep their endpoint and listings
    yield olah_server
    huggingface_hub.HfFileSystem.clear_instance_cache()
