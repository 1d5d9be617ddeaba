"""space_config/deploy.py: what it would create and upload, captured at HfApi (no network), and that it runs."""

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, RepoUrl, SpaceCard, constants
from packaging.requirements import Requirement
from packaging.version import Version

from .hub_server import UNUSED_UPSTREAM

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = runpy.run_path(str(ROOT / "space_config" / "deploy.py"))


@pytest.fixture
def hub_calls(monkeypatch, tmp_path) -> list[dict]:
    """Record HfApi.create_repo / add_space_variable / upload_folder (upload_folder: a copy of the folder it got)."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, **kwargs})
        return RepoUrl(f"{self.endpoint}/spaces/{repo_id}", endpoint=self.endpoint)

    def add_space_variable(self, repo_id, key, value, **kwargs):
        calls.append({"call": "add_space_variable", "repo_id": repo_id, "key": key, "value": value})

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        copy = shutil.copytree(folder_path, tmp_path / "uploaded")  # the folder is temporary
        calls.append({"call": "upload_folder", "repo_id": repo_id, "folder": copy, **kwargs})
        return f"{self.endpoint}/spaces/{repo_id}/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "add_space_variable", add_space_variable)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://{UNUSED_UPSTREAM}")  # any other call fails right here
    return calls


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_deploy_creates_a_gradio_space_and_uploads_the_app(hub_calls):
    assert DEPLOY["main"](["org/unmask-space", "--model", "org/unmask-weights", "--revision", "v1"]) == 0
    create, *variables, upload = hub_calls
    assert create == {"call": "create_repo", "repo_id": "org/unmask-space", "repo_type": "space", "space_sdk": "gradio",
                      "private": False, "exist_ok": True}
    assert {v["key"]: v["value"] for v in variables if v["repo_id"] == "org/unmask-space"} == {
        "UNMASK_MODEL": "org/unmask-weights", "UNMASK_REVISION": "v1", "UNMASK_LOCK_MODEL": "1"}
    assert upload["repo_id"] == "org/unmask-space" and upload["repo_type"] == "space" and upload["delete_patterns"] == "*"

    uploaded = files(upload["folder"])
    assert uploaded == set(DEPLOY["space_files"]())
    assert {"app.py", "README.md", "requirements.txt", "unmask_hf/__init__.py", "unmask_hf/pipeline.py",
            "unmask_hf/weights/default/pipeline.json", "unmask_hf/weights/default/map/model.safetensors",
            "unmask_hf/weights/default/edit/model.safetensors", "unmask_hf/weights/mtcnn/mtcnn.safetensors",
            "unmask_hf/weights/mtcnn/LICENSE", "examples/astronaut_surgical.jpg"} <= uploaded
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in uploaded)
    assert (upload["folder"] / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()

    card = SpaceCard.load(upload["folder"] / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.python_version == "3.11"
    assert card.data.models == ["org/unmask-weights"] and card.data.license == "apache-2.0"
    assert card.data.title and card.data.emoji and len(card.data.short_description) <= 60
    gradio_range = next(Requirement(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
                        if line.startswith("gradio"))
    assert Version(card.data.sdk_version) in gradio_range.specifier  # the Space runs a gradio the app supports
    requirements = [line for line in (upload["folder"] / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    assert any(line.startswith("torch") for line in requirements)
    assert not any(line.startswith("gradio") for line in requirements)  # the Space's sdk_version installs it

    # The uploaded folder is self-contained: its own unmask_hf (not the installed one) loads the embedded weights.
    check = ("import unmask_hf, pathlib; assert pathlib.Path(unmask_hf.__file__).parent == pathlib.Path.cwd() / "
             "'unmask_hf', unmask_hf.__file__; unmask_hf.UnmaskPipeline.from_pretrained(device='cpu')")
    subprocess.run([sys.executable, "-c", check], cwd=upload["folder"], check=True)


def test_deploy_without_a_model_keeps_the_embedded_weights(hub_calls):
    assert DEPLOY["main"](["org/unmask-space", "--private", "--model-box"]) == 0
    assert [c["call"] for c in hub_calls] == ["create_repo", "add_space_variable", "upload_folder"]
    assert hub_calls[0]["private"] is True and hub_calls[1]["key"] == "UNMASK_LOCK_MODEL" and hub_calls[1]["value"] == "0"
    assert SpaceCard.load(hub_calls[2]["folder"] / "README.md").data.models == []


def test_dry_run_lists_the_files_and_uploads_nothing(hub_calls, capsys):
    assert DEPLOY["main"](["org/unmask-space", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert hub_calls == [] and all(name in out for name in DEPLOY["space_files"]())


def test_revision_needs_a_model(hub_calls):
    with pytest.raises(SystemExit):
        DEPLOY["main"](["org/unmask-space", "--revision", "v1"])
    assert hub_calls == []
