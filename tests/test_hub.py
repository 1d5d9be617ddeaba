"""The Hub round trip over HTTP: a local olah server (tests/hub_server.py) stands in for huggingface.co.

Downloads run the real huggingface_hub / datasets code paths against it; uploads (olah takes none) are
captured at `HfApi.create_repo` / `HfApi.upload_folder`, which see exactly the files that would be sent.
"""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard, HfApi, ModelCard, RepoUrl, constants
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects
from PIL import Image

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import load_masked_faces

from .conftest import make_tiny_pipeline
from .app_server import serve_app
from .hub_server import UNUSED_UPSTREAM, free_port
from .test_train import make_face_folder

ROOT = Path(__file__).resolve().parents[1]
BUILD = runpy.run_path(str(ROOT / "train" / "build_dataset.py"))["main"]
MODULE_FILES = {f"{m}/{f}" for m in ("map", "edit") for f in ("config.json", "model.safetensors")}
MODEL_FILES = MODULE_FILES | {"pipeline.json", "README.md"}


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts}


def save_model(folder: Path, seed: int) -> Path:
    make_tiny_pipeline(seed=seed).save_pretrained(folder)
    return folder


def load(model_id, **kwargs) -> UnmaskPipeline:
    with pytest.warns(UserWarning, match="untrained"):  # tiny test weights are saved as untrained
        return UnmaskPipeline.from_pretrained(model_id, device="cpu", **kwargs)


def same_weights(a: UnmaskPipeline, b: UnmaskPipeline) -> bool:
    pairs = [(a.map_generator, b.map_generator), (a.edit_generator, b.edit_generator)]
    return all(all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), n.state_dict().values())) for m, n in pairs)


# ---------------------------------------------------------------- models: download

def test_from_pretrained_over_http_is_bit_identical(hub, tmp_path, astronaut_rgb):
    folder = save_model(tmp_path / "model", seed=0)
    sha = hub.commit("org/name", folder)
    remote, local = load("org/name"), load(folder)
    snapshot = Path(constants.HF_HUB_CACHE) / "models--org--name" / "snapshots" / sha
    assert files(snapshot) == MODEL_FILES == files(folder)  # both modules came over HTTP, into the fresh cache
    assert same_weights(remote, local)
    a, b = remote(astronaut_rgb, aligned=True), local(astronaut_rgb, aligned=True)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(np.asarray(a.mask), np.asarray(b.mask))


def test_revision_pins_a_commit(hub, tmp_path):
    first = hub.commit("org/pinned", save_model(tmp_path / "v1", seed=1), message="first weights")
    second = hub.commit("org/pinned", save_model(tmp_path / "v2", seed=2), message="second weights")
    v1, v2 = load(tmp_path / "v1"), load(tmp_path / "v2")
    assert not same_weights(v1, v2)
    assert same_weights(load("org/pinned"), v2)  # main is the latest commit
    assert same_weights(load("org/pinned", revision=first), v1)
    assert same_weights(load("org/pinned", revision=second), v2)


def test_missing_repo_file_or_revision_is_named(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="'org/no-such-model'"):
        UnmaskPipeline.from_pretrained("org/no-such-model", device="cpu")
    folder = save_model(tmp_path / "model", seed=0)
    (folder / "edit" / "model.safetensors").unlink()
    hub.commit("org/no-edit-weights", folder)
    with pytest.raises(FileNotFoundError, match=r"'org/no-edit-weights'.* edit/model\.safetensors"):
        UnmaskPipeline.from_pretrained("org/no-edit-weights", device="cpu")
    for revision in ("v9", "0" * 40):  # no such branch; no such commit
        with pytest.raises(FileNotFoundError, match=rf"'org/no-edit-weights' \(revision {revision}\)"):
            UnmaskPipeline.from_pretrained("org/no-edit-weights", revision=revision, device="cpu")


# ---------------------------------------------------------------- the dataset: download and train from it

@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory) -> Path:
    """A tiny masked-face dataset made by train/build_dataset.py from generated faces (train + validation)."""
    root = tmp_path_factory.mktemp("dataset")
    identities = make_face_folder(root / "faces", count=12)
    BUILD(["--faces", str(root / "faces"), "--identities", str(identities), "--out", str(root / "out"), "--size", "64",
           "--val-fraction", "0.25", "--test-fraction", "0", "--shard-size", "4", "--num-proc", "1"])
    return root / "out"


def test_dataset_over_http(hub, built_dataset):
    hub.commit("org/masked-faces", built_dataset, repo_type="dataset")
    remote = datasets.load_dataset("org/masked-faces")
    assert set(remote) == {"train", "validation"}
    for split in remote:
        local = load_masked_faces(str(built_dataset), split)
        assert remote[split].features == local.features and len(remote[split]) == len(local)
        assert remote[split][0]["source_id"] == local[0]["source_id"]
        assert np.array_equal(np.asarray(remote[split][0]["masked"]), np.asarray(local[0]["masked"]))
    train = load_masked_faces("org/masked-faces", "train")
    assert len(train) == len(remote["train"]) and train[0]["mask"].mode == "L"
    with pytest.raises(ValueError, match="no split 'test'"):
        load_masked_faces("org/masked-faces", "test")


def test_train_from_hub_dataset_and_pinned_hub_weights(hub, built_dataset, tmp_path):
    hub.commit("org/masked-faces", built_dataset, repo_type="dataset")
    make_tiny_pipeline(image_size=32, seed=1).save_pretrained(tmp_path / "v1")
    pinned = hub.commit("org/start", tmp_path / "v1")
    make_tiny_pipeline(image_size=32, seed=2).save_pretrained(tmp_path / "v2")
    hub.commit("org/start", tmp_path / "v2")
    out = tmp_path / "run"
    # A fresh process reads HF_ENDPOINT / HF_HOME from the environment the `hub` fixture set.
    result = subprocess.run([sys.executable, str(ROOT / "train" / "train.py"), "--config",
                             str(ROOT / "train" / "configs" / "smoke.yaml"), "--stage", "map",
                             "--dataset", "org/masked-faces", "--init", "org/start", "--init-revision", pinned,
                             "--output-dir", str(out), "--max-steps", "2"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert files(out / "pipeline") >= MODEL_FILES
    assert "org/masked-faces" in (out / "pipeline" / "README.md").read_text()
    assert (Path(os.environ["HF_HOME"]) / "hub" / "datasets--org--masked-faces").is_dir()  # it came over HTTP
    # The map stage trained the map module; the editor is the pinned commit's, untouched.
    trained, start = UnmaskPipeline.from_pretrained(out / "pipeline", device="cpu"), load(tmp_path / "v1")
    assert all(torch.equal(a, b) for a, b in zip(trained.edit_generator.state_dict().values(),
                                                 start.edit_generator.state_dict().values()))


# ---------------------------------------------------------------- the app, with its model from the Hub

def test_app_serves_a_pinned_hub_model_and_only_that(hub, tmp_path, astronaut_rgb):
    """`UNMASK_MODEL=org/name UNMASK_REVISION=<sha> UNMASK_LOCK_MODEL=1 python app.py` downloads that commit over
    HTTP, answers with it, and refuses visitors' other model ids (the port comes from GRADIO_SERVER_PORT)."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    pinned = hub.commit("org/name", save_model(tmp_path / "v1", seed=0))
    newer = hub.commit("org/name", save_model(tmp_path / "v2", seed=1))
    port = free_port()
    env = {"UNMASK_MODEL": "org/name", "UNMASK_REVISION": pinned, "UNMASK_LOCK_MODEL": "1",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    with serve_app(tmp_path, env, port) as app:
        client = Client(app.url, verbose=False)
        photo = tmp_path / "photo.png"
        Image.fromarray(astronaut_rgb).save(photo)
        result = client.predict(handle_file(str(photo)), "org/name", True, 0.45, api_name="/unmask")
        assert Image.open(result[0]).size == (512, 512)
        assert np.array_equal(np.asarray(Image.open(result[0])),  # the pinned commit's weights made it
                              np.asarray(load(tmp_path / "v1")(astronaut_rgb, aligned=True).image))
        snapshots = Path(os.environ["HF_HOME"]) / "hub" / "models--org--name" / "snapshots"
        assert (snapshots / pinned).is_dir() and not (snapshots / newer).exists(), app.log.read_text()
        with pytest.raises(AppError, match="runs only its own model"):
            client.predict(handle_file(str(photo)), "org/other", True, 0.45, api_name="/unmask")


# ---------------------------------------------------------------- uploads: exactly what would be sent

@pytest.fixture
def uploads(monkeypatch, tmp_path) -> list[dict]:
    """Replace HfApi.create_repo / upload_folder: record each call and copy the files upload_folder would send."""
    calls = []

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, "repo_type": repo_type, "private": private,
                      "exist_ok": exist_ok})
        return RepoUrl(f"{self.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}", endpoint=self.endpoint)

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, allow_patterns=None, ignore_patterns=None,
                      **kwargs):
        # The same selection upload_folder makes: the caller's patterns plus the library's defaults (.git, ...).
        ignore = ([ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or []))
        names = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        kept = list(filter_repo_objects(names, allow_patterns=allow_patterns, ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS))
        copy = tmp_path / f"upload{len(calls)}"
        for name in kept:  # copied now: the pipeline uploads from a temp folder that is gone afterwards
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(folder_path) / name, copy / name)
        calls.append({"call": "upload_folder", "repo_id": repo_id, "repo_type": repo_type, "folder": copy,
                      "files": set(kept), **kwargs})
        return f"{self.endpoint}/{repo_id}/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://{UNUSED_UPSTREAM}")  # any other call fails right here
    return calls


def test_pipeline_push_to_hub_uploads_weights_and_card(uploads, astronaut_rgb):
    pipe = make_tiny_pipeline(seed=3)
    pipe.push_to_hub("org/unmask", private=True)
    create, upload = uploads
    assert create == {"call": "create_repo", "repo_id": "org/unmask", "repo_type": None, "private": True, "exist_ok": True}
    assert upload["call"] == "upload_folder" and upload["repo_id"] == "org/unmask" and upload["repo_type"] is None
    assert upload["files"] == MODEL_FILES
    card = ModelCard.load(upload["folder"] / "README.md")
    assert card.data.library_name == "unmask-hf" and card.data.pipeline_tag == "image-to-image"
    assert card.data.license == "apache-2.0" and {"unmask-hf", "face-mask-removal"} <= set(card.data.tags)
    uploaded = load(upload["folder"])  # what lands on the Hub loads back to the same model
    assert same_weights(uploaded, pipe)
    assert np.array_equal(np.asarray(uploaded(astronaut_rgb, aligned=True).image),
                          np.asarray(pipe(astronaut_rgb, aligned=True).image))


def test_dataset_push_to_hub_uploads_shards_and_card(uploads, built_dataset, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built_dataset, out)
    (out / ".build_info.json.partial").write_text("{}")  # a leftover of an interrupted build is not uploaded
    BUILD(["--faces", str(built_dataset.parent / "faces"), "--identities", str(built_dataset.parent / "identities.csv"),
           "--out", str(out), "--size", "64", "--val-fraction", "0.25", "--test-fraction", "0", "--shard-size", "4",
           "--num-proc", "1", "--push-to-hub", "org/masked-faces"])  # the same settings: resumes, renders nothing
    create, upload = uploads
    assert create["repo_id"] == "org/masked-faces" and create["repo_type"] == "dataset" and create["private"] is False
    assert upload["repo_id"] == "org/masked-faces" and upload["repo_type"] == "dataset"
    shards = {f"data/{p.name}" for p in (built_dataset / "data").glob("*.parquet")}
    assert {name.split("-")[0] for name in shards} == {"data/train", "data/validation"}
    assert upload["files"] == shards | {"README.md", "build_info.json"}
    card = DatasetCard.load(upload["folder"] / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["default"]
    assert {s["split"]: s["path"] for s in card.data.configs[0]["data_files"]} == {"train": "data/train-*",
                                                                                   "validation": "data/validation-*"}
    assert "image-to-image" in card.data.task_categories
    # What lands on the Hub loads as the same dataset.
    uploaded = datasets.load_dataset(str(upload["folder"]), cache_dir=str(tmp_path / "cache"))
    original = datasets.load_dataset(str(built_dataset), cache_dir=str(tmp_path / "cache"))
    assert {split: rows.num_rows for split, rows in uploaded.items()} == {split: rows.num_rows for split, rows in original.items()}
