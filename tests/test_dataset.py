import json
import re
import runpy
from pathlib import Path

import datasets
import numpy as np
import pytest
import skimage.data
from PIL import Image

from unmask_hf import dataset as ds
from unmask_hf.dataset import FaceFolder, load_masked_faces, split_identities

BUILD = runpy.run_path(str(Path(__file__).resolve().parents[1] / "train" / "build_dataset.py"))["main"]
ASTRONAUT = Image.fromarray(skimage.data.astronaut()).crop((130, 20, 330, 220))


def write_faces(folder: Path, people: int = 4, each: int = 3, broken: bool = True) -> Path:
    """people×each small face images (the astronaut, tinted per person) + identities.csv (+ one broken file)."""
    folder.mkdir(parents=True)
    lines = ["file,identity"]
    for p in range(people):
        for k in range(each):
            tint = np.array([1.0, 0.8 + 0.1 * p, 1.0 - 0.05 * k])
            image = np.clip(np.asarray(ASTRONAUT.resize((72, 72))) * tint, 0, 255).astype(np.uint8)
            name = f"p{p}_{k}.png" if k % 2 else f"p{p}_{k}.jpg"
            Image.fromarray(image).save(folder / name)
            lines.append(f"{name},person{p}")
    if broken:
        (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder.parent / "identities.csv").write_text("\n".join(lines) + "\n")
    return folder.parent / "identities.csv"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small build through the CLI, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("build")
    identities = write_faces(root / "faces")
    out = root / "out"
    args = ["--faces", str(root / "faces"), "--identities", str(identities), "--out", str(out), "--size", "64",
            "--masks-per-face", "2", "--val-fraction", "0.25", "--test-fraction", "0.25", "--num-proc", "1",
            "--shard-size", "4", "--preview", str(root / "preview.png")]
    info = BUILD(args)
    return root, out, args, info


def test_face_folder(tmp_path):
    identities = write_faces(tmp_path / "faces", people=2, each=2)
    folder = FaceFolder(tmp_path / "faces", identities)
    assert len(folder) == 5
    assert folder.source_id(0) == "broken.jpg" and folder.identities[0] is None
    assert folder.identities[1:] == ["person0", "person0", "person1", "person1"]
    assert folder.load(1).mode == "RGB" and folder.load(1).size == (72, 72)
    with pytest.raises(ValueError):
        folder.load(0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        FaceFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        FaceFolder(tmp_path / "missing")


def test_split_identities_share_no_identity():
    rng = np.random.default_rng(0)
    identities = [f"id{rng.integers(30)}" for _ in range(300)] + [None] * 20
    splits = split_identities(identities, 0.1, 0.1, seed=1)
    assert sorted(i for s in splits.values() for i in s) == list(range(320))
    people = {name: {identities[i] for i in idx if identities[i] is not None} for name, idx in splits.items()}
    assert not people["train"] & people["validation"] and not people["train"] & people["test"]
    assert not people["validation"] & people["test"]
    for name in ("validation", "test"):
        assert 0.08 < len(splits[name]) / 320 < 0.25
    assert splits == split_identities(identities, 0.1, 0.1, seed=1)
    assert splits != split_identities(identities, 0.1, 0.1, seed=2)
    assert split_identities(["a", "a", "a"], 0.3, 0.3) == {"train": [0, 1, 2]}  # train keeps the only person


def test_build_writes_a_loadable_identity_disjoint_dataset(built):
    root, out, _, info = built
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert {name.split("-")[0] for name in shards} == {"train", "validation", "test"}
    assert all(re.fullmatch(r"(train|validation|test)-\d{5}-of-\d{5}\.parquet", name) for name in shards)
    summary = ds.summarize(info)
    assert sum(summary["rows"].values()) == 24  # 2 masks × 12 readable faces
    assert len(summary["skipped"]) == 1 and summary["skipped"][0].startswith("broken.jpg")
    card = (out / "README.md").read_text()
    assert "configs:" in card and "path: data/train-*" in card and f"num_examples: {summary['rows']['train']}" in card
    assert "identity-disjoint" in card and "| train |" in card

    everything = datasets.load_dataset(str(out))  # the plain datasets way reads it too
    assert set(everything) == {"train", "validation", "test"}
    people = {}
    for split in everything:
        rows = load_masked_faces(str(out), split)
        assert rows.column_names == ["image", "masked", "mask", "mask_style", "source_id", "identity"]
        people[split] = set(rows["identity"])
        for row in rows:
            image, masked, mask = (np.asarray(row[k]) for k in ("image", "masked", "mask"))
            assert image.shape == masked.shape == (64, 64, 3) and mask.shape == (64, 64)
            np.testing.assert_array_equal(mask == 255, (masked != image).any(2))
            assert row["source_id"].startswith(row["identity"].replace("person", "p"))
    assert not people["train"] & people["validation"] and not people["train"] & people["test"]
    assert not people["validation"] & people["test"]
    assert Image.open(root / "preview.png").size[0] > 3 * 64


def test_build_is_deterministic_and_resumes(built, tmp_path):
    root, out, args, _ = built
    shards = sorted((out / "data").iterdir())
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in shards}
    BUILD(args)  # same command again: nothing is redone
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in shards} == before

    copy = tmp_path / "copy"  # the same command elsewhere gives the same bytes; a lost shard is rebuilt alone
    args2 = [a if a != str(out) else str(copy) for a in args[:-2]]
    BUILD(args2)
    assert {p.name: p.read_bytes() for p in (copy / "data").iterdir()} == {k: v[1] for k, v in before.items()}
    lost = json.loads((copy / "build_info.json").read_text())["shards"][shards[0].name]["faces"]
    (copy / "data" / shards[0].name).unlink()
    info = BUILD(args2)
    assert info["faces_rendered"] == lost
    assert (copy / "data" / shards[0].name).read_bytes() == before[shards[0].name][1]


def test_bad_input_fails_before_work(built, tmp_path, capsys):
    root, out, args, _ = built
    with pytest.raises(SystemExit, match="already exists"):
        BUILD([a if a != "2" else "3" for a in args])  # different settings into the finished folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="No images"):
        BUILD(["--faces", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")])
    with pytest.raises(SystemExit, match="size must be between"):
        BUILD(["--faces", str(root / "faces"), "--out", str(tmp_path / "o2"), "--size", "16"])
    with pytest.raises(SystemExit, match="sum to less than 1"):
        BUILD(["--faces", str(root / "faces"), "--out", str(tmp_path / "o3"), "--val-fraction", "0.6",
               "--test-fraction", "0.5"])
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="--overwrite"):
        BUILD(["--faces", str(root / "faces"), "--out", str(tmp_path / "taken"), "--limit", "2", "--num-proc", "1"])
    BUILD(["--faces", str(root / "faces"), "--out", str(tmp_path / "taken"), "--limit", "2", "--num-proc", "1",
           "--val-fraction", "0", "--test-fraction", "0", "--overwrite"])
    assert not (tmp_path / "taken" / "notes.txt").exists()
    assert json.loads((tmp_path / "taken" / "build_info.json").read_text())["splits"] == {"train": 2}


def test_loader_errors_and_save_to_disk_round_trip(built, tmp_path):
    _, out, _, _ = built
    with pytest.raises(ValueError, match="no split 'dev'.*train"):
        load_masked_faces(str(out), "dev")
    with pytest.raises(ValueError, match="No such dataset folder"):
        load_masked_faces(str(tmp_path / "nowhere"), "train")

    train = load_masked_faces(str(out), "train")
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": train, "test": load_masked_faces(str(out), "test")}).save_to_disk(str(saved))
    again = load_masked_faces(str(saved), "train")
    assert again["source_id"] == train["source_id"]
    assert again[0]["masked"].tobytes() == train[0]["masked"].tobytes()
    streamed = next(iter(load_masked_faces(str(saved), "test", streaming=True)))
    assert streamed["mask"].mode == "L"
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_masked_faces(str(saved), "validation")

    broken = tmp_path / "broken"
    train.remove_columns(["mask_style"]).to_parquet(str(broken / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="missing column.*mask_style"):
        load_masked_faces(str(broken), "train")
    small = train.select([0]).map(lambda row: {"mask": row["mask"].resize((32, 32))})
    small.save_to_disk(str(tmp_path / "sizes"))
    with pytest.raises(ValueError, match="different sizes"):
        load_masked_faces(str(tmp_path / "sizes"), "train")


def test_hub_style_source_and_push(tmp_path, monkeypatch):
    write_faces(tmp_path / "faces", people=2, each=2, broken=False)  # a folder load_dataset reads as imagefolder
    out = tmp_path / "out"
    BUILD(["--source", str(tmp_path / "faces"), "--out", str(out), "--size", "64", "--num-proc", "1",
           "--val-fraction", "0", "--test-fraction", "0.25"])
    rows = load_masked_faces(str(out), "train")
    assert "identity" not in rows.column_names and rows[0]["source_id"].startswith("train/")

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["repo_type"]))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"], kwargs["folder_path"]))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert ds.push_to_hub(out, "org/masked-faces").endswith("org/masked-faces")
    assert calls == [("create_repo", "org/masked-faces", "dataset"),
                     ("upload_folder", "org/masked-faces", "dataset", str(out))]


def test_compact_faces_ships_only_some_people_of_one_split(tmp_path):
    """train/compact_faces.py --split train --max-identities: whole people of the training split only, and their
    identities beside them, so the copy is split by person again and the validation people never travel."""
    import csv
    import subprocess
    import sys

    faces = tmp_path / "faces"
    faces.mkdir()
    rows = [("file", "identity")]
    for i in range(60):
        Image.fromarray(np.full((24, 24, 3), 4 * i, np.uint8)).save(faces / f"{i:03d}.png")
        rows.append((f"{i:03d}.png", f"person{i // 3}"))
    table = tmp_path / "identities.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    script = Path(__file__).resolve().parents[1] / "train" / "compact_faces.py"
    subprocess.run([sys.executable, str(script), str(faces), str(tmp_path / "out"), "--size", "16", "--num-proc", "1",
                    "--identities", str(table), "--split", "train", "--max-identities", "4"], check=True)
    folder = FaceFolder(faces, table)
    train = {folder.files[i].stem for i in folder.split()["train"]}
    written = sorted(p.stem for p in (tmp_path / "out").iterdir())
    with open(tmp_path / "out-identities.csv", newline="") as f:
        shipped = list(csv.reader(f))[1:]
    people = {identity for _, identity in shipped}
    assert len(people) == 4 and len(written) == 12 and set(written) <= train  # 4 whole people, all from train
    assert sorted(Path(name).stem for name, _ in shipped) == written
    assert all(Image.open(tmp_path / "out" / f"{stem}.webp").size == (16, 16) for stem in written)
