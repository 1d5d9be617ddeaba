"""train/train.py end to end on CPU: a tiny generated face folder, the smoke config, a few steps."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from unmask_hf import UnmaskPipeline
from unmask_hf.models import LandmarkRefiner
from unmask_hf.synth import MASK_STYLES
from unmask_hf.training.checkpoint import is_complete, list_checkpoints
from unmask_hf.training.config import TrainConfig

from .test_losses import write_vgg
from .test_mobilefacenet import write_mobilefacenet

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "train" / "configs" / "smoke.yaml")


def make_face_folder(folder: Path, count: int = 24, size: int = 48) -> Path:
    """Simple drawn faces (head, eyes, mouth) with 3 images per identity; returns the identities CSV."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        s = size / 48
        draw.ellipse([8 * s, 4 * s, 40 * s, 46 * s], fill=tuple(int(v) for v in rng.integers(120, 240, 3)))
        draw.ellipse([15 * s, 18 * s, 20 * s, 22 * s], fill=(0, 0, 0))
        draw.ellipse([28 * s, 18 * s, 33 * s, 22 * s], fill=(0, 0, 0))
        draw.line([18 * s, 34 * s, 30 * s, 34 * s], fill=(150, 40, 40), width=2)
        image.save(folder / f"face{i:03d}.png")
        rows.append((f"face{i:03d}.png", f"person{i // 3}"))
    csv_path = folder.parent / "identities.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([("file", "identity"), *rows])
    return csv_path


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faces")
    return root / "faces", make_face_folder(root / "faces")


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> str:
    return write_vgg(tmp_path_factory.mktemp("vgg") / "vgg.safetensors", "D", 2)  # conv1_1, conv1_2: tiny


TRAIN_CONFIGS = sorted(p for p in (ROOT / "train" / "configs").glob("*.yaml") if not p.name.startswith("accelerate"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads(path):
    """A typo in a shipped config (an unknown key or loss name, a bad value) fails here, not an hour into a chunk."""
    cfg = TrainConfig.from_yaml(path)
    assert cfg.edit_loss_weights.rc > 0


def test_a_config_says_only_what_it_changes_from_its_base(tmp_path):
    (tmp_path / "a.yaml").write_text("batch_size: 8\nmap_model: {base_channels: 16, depth: 4}\n"
                                     "loss_weights: {l1: 2.0, mask: 0.1}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nmap_model: {base_channels: 24}\nloss_weights: {mask: 0.5}\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\nbatch_size: 4\n")
    cfg = TrainConfig.from_yaml(tmp_path / "c.yaml", {"lr_g": 1e-3})
    assert cfg.batch_size == 4 and cfg.lr_g == 1e-3  # the file over its bases, CLI flags over the file
    assert cfg.map_model == {"base_channels": 24, "depth": 4}  # nested values merged key by key
    assert cfg.loss_weights == {"l1": 2.0, "mask": 0.5}
    (tmp_path / "a.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ValueError, match="its own base"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")


def train(*args: str, launcher: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "train" / "configs" / "accelerate_cpu.yaml")] if launcher else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = subprocess.run([*prefix, str(ROOT / "train" / "train.py"), "--config", SMOKE, *args],
                            capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_smoke_map_then_edit_through_accelerate_launch(tmp_path, faces, vgg):
    folder, identities = faces
    data = ["--faces", str(folder), "--identities", str(identities), "--val-fraction", "0.2"]
    train("--stage", "map", *data, "--output-dir", str(tmp_path / "map"), launcher=True)
    train("--stage", "edit", *data, "--output-dir", str(tmp_path / "edit"), "--init", str(tmp_path / "map" / "pipeline"),
          "--perceptual-weights", vgg, launcher=True)
    edit = tmp_path / "edit"
    assert [p.name for p in list_checkpoints(edit / "checkpoints")] == ["step_00000004", "step_00000002"]
    assert sorted(p.name for p in (edit / "samples").glob("*.png")) == ["step_00000002.png", "step_00000004.png"]
    assert list((edit / "unmask-hf").rglob("events.out.tfevents.*")), "no TensorBoard events written"
    pipe = UnmaskPipeline.from_pretrained(edit / "pipeline", device="cpu")
    assert pipe.image_size == 32 and pipe.info["status"] == "trained" and pipe.info["steps"] == 4
    assert len(pipe.info["commands"]) == 2  # the map stage's command is carried into the edit stage's card
    assert pipe.info["map_training_styles"] == list(MASK_STYLES)  # so is what the map module saw
    assert "--stage edit" in (edit / "pipeline" / "README.md").read_text()
    # the map module came from the map stage unchanged
    map_stage = UnmaskPipeline.from_pretrained(tmp_path / "map" / "pipeline", device="cpu")
    for a, b in zip(map_stage.map_generator.state_dict().values(), pipe.map_generator.state_dict().values()):
        assert torch.equal(a, b)
    validation = UnmaskPipeline.from_pretrained(edit / "best", device="cpu").info["validation"]
    assert validation["psnr"] > 0 and validation["detail"] >= 0  # detail: the fill's Laplacian spread over the truth's
    result = pipe(np.asarray(Image.open(next(folder.iterdir()))), aligned=True)
    assert result.image.size == (48, 48)
    # joint: the editor fine-tuned on the map module's own predictions; the map module stays as it was, and so
    # does the --init pipeline's landmark refiner
    pipe.landmark_refiner = LandmarkRefiner(size=32, width=8)
    pipe.save_pretrained(tmp_path / "edit_aligned")
    train("--stage", "joint", *data, "--output-dir", str(tmp_path / "joint"), "--init", str(tmp_path / "edit_aligned"),
          "--perceptual-weights", vgg, "--max-steps", "2")
    joint = UnmaskPipeline.from_pretrained(tmp_path / "joint" / "pipeline", device="cpu")
    assert joint.info["steps"] == 2 and len(joint.info["commands"]) == 3
    assert isinstance(joint.landmark_refiner, LandmarkRefiner)
    for a, b in zip(pipe.landmark_refiner.state_dict().values(), joint.landmark_refiner.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(pipe.map_generator.state_dict().values(), joint.map_generator.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(pipe.edit_generator.state_dict().values(),
                                                      joint.edit_generator.state_dict().values()))


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tmp_path, faces, vgg):
    """Resuming from the step-2 checkpoint reaches step 4 with the same counter and optimiser state, and the
    saved record holds both segments' commands."""
    folder, identities = faces
    run = tmp_path / "full"
    args = ["--stage", "edit", "--faces", str(folder), "--identities", str(identities), "--val-fraction", "0.2",
            "--perceptual-weights", vgg, "--adv-start-step", "0"]
    train(*args, "--output-dir", str(run))
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000004")  # as if killed right after step 2's checkpoint
    out = train(*args, "--output-dir", str(resumed), "--resume")
    assert "resumed from" in out.stdout + out.stderr and "at step 2" in out.stdout + out.stderr
    a, b = run / "checkpoints" / "step_00000004", resumed / "checkpoints" / "step_00000004"
    assert is_complete(b)
    for name in ("optimizer.bin", "optimizer_1.bin"):
        sa, sb = (torch.load(p / name, weights_only=True)["state"] for p in (a, b))
        assert sa.keys() == sb.keys()
        for key in sa:
            for field in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(sa[key][field], sb[key][field]), (name, key, field)
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    state = torch.load(b / "custom_checkpoint_0.pkl", weights_only=True)
    assert state["step"] == 4
    # the record keeps the first segment's command before the resuming one
    commands = UnmaskPipeline.from_pretrained(resumed / "pipeline", device="cpu").info["commands"]
    assert len(commands) == 2 and "--resume" not in commands[0] and commands[1].endswith("--resume")


@pytest.mark.slow
def test_edit_stage_with_identity_loss(tmp_path, faces, vgg):
    folder, _ = faces
    config = tmp_path / "identity.yaml"
    config.write_text(Path(SMOKE).read_text() + "loss_weights: {identity: 0.5}\n")
    base = ["--config", str(config), "--stage", "edit", "--faces", str(folder), "--perceptual-weights", vgg,
            "--max-steps", "2"]
    weights = write_mobilefacenet(tmp_path / "mfn.safetensors")
    train(*base, "--output-dir", str(tmp_path / "edit"), "--identity-weights", weights)
    assert UnmaskPipeline.from_pretrained(tmp_path / "edit" / "pipeline", device="cpu").info["steps"] == 2
    missing = train(*base, "--output-dir", str(tmp_path / "o2"), check=False)
    assert missing.returncode != 0 and "identity network" in missing.stderr and "--identity-weights" in missing.stderr


@pytest.mark.slow
def test_map_stage_adds_face_features_to_an_init_map_module(tmp_path, faces):
    """map_model.face_features on a map chunk from --init: the pretrained trunk (--identity-weights) is added to the
    init's map module and saved with it; without the weights file the run stops before training."""
    folder, _ = faces
    config = tmp_path / "face.yaml"  # face features need depth 5: 64 px
    config.write_text(Path(SMOKE).read_text().replace("image_size: 32", "image_size: 64")
                      .replace("map_model: {base_channels: 4, max_channels: 8, depth: 3",
                               "map_model: {base_channels: 4, max_channels: 8, depth: 5"))
    base = ["--config", str(config), "--stage", "map", "--faces", str(folder), "--max-steps", "2"]
    train(*base, "--output-dir", str(tmp_path / "plain"))
    with_features = config.read_text().replace("depth: 5, dropout: 0.1}", "depth: 5, dropout: 0.1, face_features: true}", 1)
    config.write_text(with_features)
    weights = write_mobilefacenet(tmp_path / "mfn.safetensors")
    init = ["--init", str(tmp_path / "plain" / "pipeline")]
    train(*base, *init, "--output-dir", str(tmp_path / "face"), "--identity-weights", weights)
    pipe = UnmaskPipeline.from_pretrained(tmp_path / "face" / "pipeline", device="cpu")
    trunk = pipe.map_generator.face_trunk.state_dict()
    assert all(torch.equal(trunk[k], v) for k, v in load_file(weights).items() if k in trunk)
    missing = train(*base, *init, "--output-dir", str(tmp_path / "o2"), check=False)
    assert missing.returncode != 0 and "face_features" in missing.stderr and "--identity-weights" in missing.stderr


def test_new_editor_of_another_design_beside_an_init_map_module(tmp_path, faces, vgg):
    """--new-editor: the init's map module is kept exactly, the editor is a new one of the config's design (here
    gated), saved as that design; without --init, or for the map stage, the run stops with a clear error."""
    folder, _ = faces
    base = ["--faces", str(folder), "--max-steps", "2", "--perceptual-weights", vgg]
    train("--stage", "map", *base, "--output-dir", str(tmp_path / "map"))
    config = tmp_path / "gated.yaml"
    config.write_text(Path(SMOKE).read_text().replace("edit_model: {base_channels: 4, max_channels: 8, depth: 3",
                                                      "edit_model: {base_channels: 4, max_channels: 8, depth: 3, block: gated"))
    init = UnmaskPipeline.from_pretrained(tmp_path / "map" / "pipeline", device="cpu")
    train("--config", str(config), "--stage", "edit", *base, "--init", str(tmp_path / "map" / "pipeline"),
          "--new-editor", "--output-dir", str(tmp_path / "gated"))
    pipe = UnmaskPipeline.from_pretrained(tmp_path / "gated" / "pipeline", device="cpu")
    assert pipe.edit_generator.unet.config.block == "gated" and init.edit_generator.unet.config.block == "single"
    kept = init.map_generator.state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in pipe.map_generator.state_dict().items())
    assert any("--new-editor" in c for c in pipe.info["commands"])
    for bad in (["--stage", "edit"], ["--stage", "map", "--init", str(tmp_path / "map" / "pipeline")]):
        result = train(*bad, *base, "--new-editor", "--output-dir", str(tmp_path / "bad"), check=False)
        assert result.returncode != 0 and "--new-editor" in result.stderr

    # --editor-from: another pipeline's trained editor (here the map run's single-conv one) beside --init's map,
    # unchanged at learning rate 0, its commands recorded after the init's.
    train("--stage", "edit", *base, "--init", str(tmp_path / "gated" / "pipeline"), "--editor-from",
          str(tmp_path / "map" / "pipeline"), "--lr-g", "0", "--output-dir", str(tmp_path / "from"))
    moved = UnmaskPipeline.from_pretrained(tmp_path / "from" / "pipeline", device="cpu")
    donor = init.edit_generator.state_dict()
    assert moved.edit_generator.unet.config.block == "single"
    assert all(torch.equal(v, donor[k]) for k, v in moved.edit_generator.state_dict().items())
    assert all(torch.equal(v, kept[k]) for k, v in moved.map_generator.state_dict().items())
    commands = moved.info["commands"]
    assert any(c.startswith("# --editor-from") for c in commands) and "--editor-from" in commands[-1]
    result = train("--stage", "edit", *base, "--editor-from", str(tmp_path / "map" / "pipeline"),
                   "--output-dir", str(tmp_path / "bad"), check=False)
    assert result.returncode != 0 and "--editor-from" in result.stderr


@pytest.mark.slow
def test_edit_stage_with_the_loss_on_the_pasted_region_and_rims(tmp_path, faces, vgg):
    folder, _ = faces
    config = tmp_path / "paste.yaml"
    config.write_text(Path(SMOKE).read_text() + "loss_on_paste: true\nrim_fraction: 0.5\n")
    train("--config", str(config), "--stage", "edit", "--faces", str(folder), "--perceptual-weights", vgg,
          "--max-steps", "2", "--output-dir", str(tmp_path / "edit"))
    assert UnmaskPipeline.from_pretrained(tmp_path / "edit" / "pipeline", device="cpu").info["steps"] == 2
    checkpoint = list_checkpoints(tmp_path / "edit" / "checkpoints")[0]
    saved = json.loads((checkpoint / "run.json").read_text())["config"]
    assert saved["loss_on_paste"] is True and saved["rim_fraction"] == 0.5


@pytest.mark.slow
def test_joint_stage_with_map_growth_saves_it(tmp_path, faces, vgg):
    folder, _ = faces
    train("--config", SMOKE, "--stage", "map", "--faces", str(folder), "--max-steps", "1",
          "--output-dir", str(tmp_path / "map"))
    config = tmp_path / "growth.yaml"
    config.write_text(Path(SMOKE).read_text() + "map_growth: 1\n")
    train("--config", str(config), "--stage", "joint", "--faces", str(folder), "--perceptual-weights", vgg,
          "--max-steps", "2", "--init", str(tmp_path / "map" / "pipeline"), "--output-dir", str(tmp_path / "joint"))
    assert UnmaskPipeline.from_pretrained(tmp_path / "joint" / "pipeline", device="cpu").map_growth == 1


def test_maps_grow_randomly_up_to_the_limit():
    from unmask_hf.training.data import grow_randomly

    torch.manual_seed(0)
    mask = torch.zeros(64, 1, 32, 32)
    mask[:, :, 12:20, 12:20] = 1
    grown = grow_randomly(mask, 2)
    sides = torch.sqrt(grown.sum(dim=(1, 2, 3)))
    assert set(sides.tolist()) == {8.0, 10.0, 12.0}  # 0, 1 and 2 px on every side, each drawn
    assert (grown >= mask).all() and torch.equal(grow_randomly(mask, 0), mask)
    with pytest.raises(ValueError, match="map_growth"):
        TrainConfig(map_growth=-1)


def test_rims_are_painted_only_just_outside_the_map():
    from unmask_hf.models import grow_map
    from unmask_hf.training.data import paint_rims

    torch.manual_seed(0)
    mask = torch.zeros(64, 1, 32, 32)
    mask[:, :, 12:20, 12:20] = 1
    mask[0] = 0  # a sample shown without a mask gets no rim
    masked = torch.rand(64, 3, 32, 32) * 2 - 1
    painted, ring = paint_rims(masked, mask, 0.5, 2)
    changed = (painted != masked).any(dim=1, keepdim=True).float()
    assert (changed <= grow_map(mask, 2) - mask).all()  # never inside the map, never beyond 2 px of it
    assert torch.equal(changed, ring)  # the ring returned (the map stage's extra target) is what was painted
    rings = changed.sum(dim=(1, 2, 3))
    assert rings[0] == 0 and set(rings.tolist()) == {0.0, 36.0, 80.0}  # none, 1 px or 2 px all round
    assert 16 < (rings > 0).sum() < 48 and painted.abs().max() <= 1
    unpainted, no_ring = paint_rims(masked, mask, 0.0, 2)
    assert torch.equal(unpainted, masked) and not no_ring.any()
    with pytest.raises(ValueError, match="loss_on_paste"):
        TrainConfig(rim_fraction=0.5)
    with pytest.raises(ValueError, match="rim_fraction"):
        TrainConfig(rim_fraction=1.5, loss_on_paste=True)


def test_bad_inputs_fail_before_training(tmp_path, faces, vgg):
    folder, identities = faces
    base = ["--faces", str(folder), "--output-dir", str(tmp_path / "out")]
    missing = train("--stage", "edit", *base, "--perceptual-weights", str(tmp_path / "nope.safetensors"), check=False)
    assert missing.returncode != 0 and "perceptual" in missing.stderr and "nope.safetensors" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_faces = train("--stage", "map", "--faces", str(empty), "--output-dir", str(tmp_path / "o2"), check=False)
    assert no_faces.returncode != 0 and "No images" in no_faces.stderr
    locked = tmp_path / "locked"
    locked.write_text("a file, not a folder")
    unwritable = train("--stage", "map", "--faces", str(folder), "--output-dir", str(locked / "sub"), check=False)
    assert unwritable.returncode != 0 and "not writable" in unwritable.stderr
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("batch_sise: 4\n")
    bad = subprocess.run([sys.executable, str(ROOT / "train" / "train.py"), "--config", str(bad_key), "--stage", "map",
                          *base], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "batch_sise" in bad.stderr
    no_init = train("--stage", "joint", *base, "--perceptual-weights", vgg, check=False)
    assert no_init.returncode != 0 and "--init" in no_init.stderr
    no_hub_id = train("--stage", "map", *base, "--init-revision", "v1", check=False)
    assert no_hub_id.returncode != 0 and "--init-revision pins a Hub model" in no_hub_id.stderr


def test_no_mask_samples_are_bare_faces(faces):
    from unmask_hf.training.data import PairedFaces

    folder, _ = faces
    files = sorted(folder.iterdir())
    plain = PairedFaces(files, 32, seed=3, augment=True)
    mixed = PairedFaces(files, 32, seed=3, augment=True, no_mask_fraction=0.5)
    bare = [i for i in range(40) if not mixed[i]["mask"].any()]
    assert 5 < len(bare) < 35  # about half
    for i in bare:
        assert torch.equal(mixed[i]["masked"], mixed[i]["image"])
    assert all(plain[i]["mask"].any() for i in range(40))  # the renderer always draws a mask


def test_synth_options_reach_the_renderer(faces):
    from unmask_hf.training.config import TrainConfig
    from unmask_hf.training.data import PairedFaces

    folder, _ = faces
    files = sorted(folder.iterdir())
    plain = PairedFaces(files, 32, seed=3)
    options = TrainConfig(mask_styles=["respirator"], hard_negative_fraction=1.0).synth_options
    world = PairedFaces(files, 32, seed=3, synth_options=options)
    for i in range(4):
        a, b = plain[i], world[i]
        assert not torch.equal(a["mask"], b["mask"])  # another style drawn from the same seed
        assert torch.equal(b["masked"] * (1 - b["mask"]), b["image"] * (1 - b["mask"]))  # the pair agrees outside


def test_alignment_jitter_moves_photo_and_map_together():
    from unmask_hf.training.data import jitter_alignment

    mask = np.zeros((64, 64), bool)
    mask[20:40, 24:44] = True
    image = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, 2)  # the map painted into the photo
    moved_any = False
    for seed in range(8):
        (moved,), moved_mask = jitter_alignment([image], mask, np.random.default_rng(seed), 1.0)
        assert moved.shape == image.shape and moved_mask.dtype == bool
        # The same warp: the moved map is exactly where the moved photo is at least half "mask"; no ring grown.
        assert np.array_equal(moved_mask, moved[..., 0] >= 128)
        moved_any |= not np.array_equal(moved_mask, mask)
    assert moved_any
    (still,), still_mask = jitter_alignment([image], mask, np.random.default_rng(0), 0.0)
    assert np.array_equal(still, image) and np.array_equal(still_mask, mask)


def test_a_close_up_window_keeps_its_pixels_and_mirrors_the_rest():
    from unmask_hf.training.data import tight_photo

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = rng.random((64, 64)) > 0.5
    for seed in range(8):
        (cut,), cut_mask = tight_photo([image], mask, np.random.default_rng(seed))
        assert cut.shape == image.shape and cut_mask.shape == mask.shape and cut_mask.dtype == bool
        kept = (cut == image).all(2) & (cut_mask == mask)  # the window: the photo itself, photo and map alike
        ys, xs = np.nonzero(kept)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert 0.4 * 64 <= y1 - y0 and 0.4 * 64 <= x1 - x0 and kept[y0:y1, x0:x1].all()
        assert (y1 - y0) * (x1 - x0) < 64 * 64  # and something outside it is the mirror, not the photo
        if x1 < 64:  # the column past the window's right edge mirrors the one before its last
            assert np.array_equal(cut[y0:y1, x1], image[y0:y1, x1 - 2])
            assert np.array_equal(cut_mask[y0:y1, x1], mask[y0:y1, x1 - 2])


def test_alignment_jitter_in_training_samples(faces):
    from unmask_hf.training.data import PairedFaces

    folder, _ = faces
    files = sorted(folder.iterdir())
    plain = PairedFaces(files, 32, seed=3, augment=True, hflip=False, color_jitter=0.0)
    jittered = PairedFaces(files, 32, seed=3, augment=True, hflip=False, color_jitter=0.0, align_jitter=1.0)
    assert any(not torch.equal(plain[i]["mask"], jittered[i]["mask"]) for i in range(4))
    for i in range(4):
        a, b = jittered[i], jittered[i]
        assert all(torch.equal(a[k], b[k]) for k in a)  # seeded by the sample index: reproducible
        assert torch.equal(a["masked"] * (1 - a["mask"]), a["image"] * (1 - a["mask"]))  # the pair agrees outside


def test_several_face_folders_are_split_each_as_alone(tmp_path):
    import argparse

    from unmask_hf.training.sources import open_sources

    first = make_face_folder(tmp_path / "a" / "faces")
    make_face_folder(tmp_path / "b" / "faces", count=9)
    shutil.copy(first, tmp_path / "ids.csv")  # one identities file for both (the second folder's names repeat)
    args = lambda *folders: argparse.Namespace(dataset=None, faces=list(folders), identities=tmp_path / "ids.csv",
                                               val_fraction=0.2)
    alone = [open_sources(args(tmp_path / x / "faces")) for x in "ab"]
    train_set, val_set, description = open_sources(args(tmp_path / "a" / "faces", tmp_path / "b" / "faces"))
    assert train_set == alone[0][0] + alone[1][0] and val_set == alone[0][1] + alone[1][1]
    assert description.count("identity-disjoint train split") == 2
