"""Data-parallel training for real: 2 CPU processes (gloo) launched by `accelerate launch` with
train/configs/accelerate_cpu_2proc.yaml, checked against 1-process runs on the same global batch."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import load_masked_faces
from unmask_hf.training.checkpoint import list_checkpoints
from unmask_hf.training.config import TrainConfig
from unmask_hf.training.data import PairedFaces, StreamedFaces

from .test_hub import built_dataset  # noqa: F401  (fixture)
from .test_train import ROOT, SMOKE, faces, vgg  # noqa: F401  (fixtures)

TWO_PROC = str(ROOT / "train" / "configs" / "accelerate_cpu_2proc.yaml")
AUDIT = ROOT / "tests" / "write_audit"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    """The smoke config without dropout (its noise is drawn per process, everything else per sample) and without
    the masked L1 and perceptual terms: they are normalised by the batch's mask area and feature magnitude, so a
    process's share of the batch weighs its samples slightly differently than one process on the whole batch
    (~1e-4 after a few steps; SSIM and the adversarial terms are per-sample means and agree to ~1e-8)."""
    values = yaml.safe_load(Path(SMOKE).read_text())
    for name in ("map_model", "edit_model"):
        values[name]["dropout"] = 0.0
    values["loss_weights"] = {"l1": 0.0, "perceptual": 0.0}
    path = tmp_path_factory.mktemp("config") / "smoke_no_dropout.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_global_batch_is_split_over_processes_and_accumulation():
    cfg = TrainConfig(global_batch_size=24, grad_accum=3)
    assert cfg.per_device_batch(1) == 8 and cfg.per_device_batch(2) == 4 and cfg.per_device_batch(8) == 1
    with pytest.raises(ValueError, match="does not divide over 3 processes x grad_accum 3: use a multiple of 9"):
        cfg.per_device_batch(3)
    assert TrainConfig(batch_size=5).per_device_batch(4) == 5  # without it, batch_size is per process


def command(config: str, *args: str, processes: int) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", TWO_PROC] if processes == 2 else [sys.executable]
    return [*launch, str(ROOT / "train" / "train.py"), "--config", config, *args]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **extra}


def run(config: str, *args: str, processes: int, check: bool = True, env: dict | None = None) -> str:
    result = subprocess.run(command(config, *args, processes=processes), capture_output=True, text=True,
                            env=env or environment(), timeout=300)
    log = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, log[-4000:]
    return log


def data_args(faces) -> list[str]:
    folder, identities = faces
    return ["--faces", str(folder), "--identities", str(identities), "--val-fraction", "0.2"]


def weights(checkpoint: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(checkpoint / name)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch(tmp_path, faces, config):  # noqa: F811
    """One map step on 2 processes × 4 samples: the ranks agree, and match 1 process × 8 samples to numerical noise
    (but not 1 process × 4: each rank saw its own shard). Only rank 0 writes, each file once; the run ends cleanly."""
    args = ["--stage", "map", *data_args(faces), "--max-steps", "1", "--sample-every", "1"]
    out2 = tmp_path / "two"
    audit = tmp_path / "audit"
    env = environment(PYTHONPATH=os.pathsep.join([str(AUDIT), os.environ.get("PYTHONPATH", "")]),
                      WRITE_AUDIT_ROOT=str(out2), WRITE_AUDIT_LOG=str(audit))
    log = run(config, *args, "--batch-size", "4", "--output-dir", str(out2), processes=2, env=env)
    assert "step 1: weights identical on all 2 processes" in log
    assert log.count("done: 1 steps") == 1
    run(config, *args, "--batch-size", "8", "--output-dir", str(tmp_path / "one"), processes=1)
    run(config, *args, "--batch-size", "4", "--output-dir", str(tmp_path / "half"), processes=1)
    two, one, half = (weights(tmp_path / d / "checkpoints" / "step_00000001") for d in ("two", "one", "half"))
    init = UnmaskPipeline.from_pretrained(tmp_path / "one" / "pipeline", device="cpu")  # (loads: the card is whole)
    assert init.info["steps"] == 1
    noise, other_batch = max_difference(two, one), max_difference(two, half)
    print(f"2 processes vs 1 on the same batch: {noise:.2g}; vs 1 on half the batch: {other_batch:.2g}")
    assert noise < 1e-6 and other_batch > 1e-5, (noise, other_batch)

    card = UnmaskPipeline.from_pretrained(out2 / "pipeline", device="cpu").info
    assert card["processes"] == 2 and card["hardware"] == "2× CPU" and card["global_batch"] == 8
    # each process saved its own RNG state; every other file was written by one process (rank 0), once
    assert sorted(p.name for p in (out2 / "checkpoints" / "step_00000001").glob("random_states_*")) == [
        "random_states_0.pkl", "random_states_1.pkl"]
    writers: dict[str, set[str]] = {}
    opened: Counter = Counter()
    for pid_log in audit.glob("*.log"):
        for path in pid_log.read_text().split():
            writers.setdefault(path, set()).add(pid_log.stem)
            opened[path] += 1
    assert any("samples/step_00000001.png" in p for p in writers) and any(p.endswith("pipeline.json") for p in writers)
    shared = {p: pids for p, pids in writers.items() if len(pids) > 1}
    assert not shared, shared
    rewritten = {p: n for p, n in opened.items() if n > 1 and "events.out.tfevents" not in p}  # TensorBoard appends
    assert not rewritten, rewritten
    assert len({pids.pop() for p, pids in writers.items() if ".write-test" not in p}) == 1  # all by one process


def edit_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Generator and both discriminators, and the EMA, of an edit-stage checkpoint."""
    found = {f"{name}/{k}": v for name in ("model", "model_1", "model_2")
             for k, v in weights(checkpoint, f"{name}.safetensors").items()}
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=True)
    return found | {f"ema/{k}": v for k, v in ema.items() if v.is_floating_point()}


def keep_until(run_dir: Path, copy: Path, step: int) -> None:
    """Copy a run as if it had been stopped right after its step-`step` checkpoint."""
    shutil.copytree(run_dir, copy)
    for folder in list_checkpoints(copy / "checkpoints"):
        if int(folder.name.removeprefix("step_")) > step:
            shutil.rmtree(folder)


@pytest.mark.slow
def test_edit_stage_resumes_across_world_sizes(tmp_path, faces, vgg, config):  # noqa: F811
    """Edit stage (generator, two discriminators, EMA): 1 process to step 2, then 2 processes to step 4, then 1
    process to step 6 ends where 1 process all along does, to numerical noise: the sample stream continued
    across the world sizes without repeating or skipping a sample."""
    args = ["--stage", "edit", *data_args(faces), "--perceptual-weights", vgg, "--adv-start-step", "0",
            "--ema-decay", "0.5", "--global-batch-size", "8", "--max-steps", "6", "--val-every", "100",
            "--sample-every", "100"]
    straight = tmp_path / "straight"
    run(config, *args, "--output-dir", str(straight), processes=1)
    keep_until(straight, tmp_path / "a", 2)
    log = run(config, *args, "--output-dir", str(tmp_path / "a"), "--resume", processes=2)
    assert "at step 2, sample 16" in log and "step 6: weights identical on all 2 processes" in log
    keep_until(tmp_path / "a", tmp_path / "b", 4)
    log = run(config, *args, "--output-dir", str(tmp_path / "b"), "--resume", processes=1)
    assert "at step 4, sample 32" in log
    final = edit_state(straight / "checkpoints" / "step_00000006")
    for resumed in ("a", "b"):
        noise = max_difference(final, edit_state(tmp_path / resumed / "checkpoints" / "step_00000006"))
        print(f"edit stage, resumed across world sizes ({resumed}): {noise:.2g}")
        assert noise < 1e-6, (resumed, noise)


@pytest.mark.slow
def test_joint_stage_at_two_processes_matches_one(tmp_path, faces, vgg, config):  # noqa: F811
    """Joint stage (the editor on the map module's own maps, discriminators on), 2 accumulation steps per update
    (DDP's no_sync on the first): 2 processes = 1 process on the same global batch."""
    from unmask_hf.models import EditGenerator, MapGenerator

    cfg = yaml.safe_load(Path(config).read_text())
    torch.manual_seed(0)
    start = tmp_path / "start"
    # Masked losses are normalised by each process's own mask pixels, so 2 processes equal 1 only where every map
    # has the same size: a map module that marks the whole crop (below the pipeline's eye-line cut, MAP_TOP).
    map_generator = MapGenerator(image_size=32, **cfg["map_model"])
    with torch.no_grad():
        map_generator.unet.final.weight.zero_()
        map_generator.unet.final.bias.fill_(10.0)
    UnmaskPipeline(map_generator, EditGenerator(image_size=32, **cfg["edit_model"]), device="cpu").save_pretrained(start)
    args = ["--stage", "joint", *data_args(faces), "--init", str(start), "--perceptual-weights", vgg,
            "--adv-start-step", "0", "--ema-decay", "0.5", "--global-batch-size", "8", "--grad-accum", "2", "--max-steps", "2"]
    log = run(config, *args, "--output-dir", str(tmp_path / "two"), processes=2)
    assert "step 2: weights identical on all 2 processes" in log
    run(config, *args, "--output-dir", str(tmp_path / "one"), processes=1)
    two, one = (edit_state(tmp_path / d / "checkpoints" / "step_00000002") for d in ("two", "one"))
    noise = max_difference(two, one)
    print(f"joint stage, 2 processes vs 1: {noise:.2g}")
    assert noise < 1e-6
    start_editor = UnmaskPipeline.from_pretrained(start, device="cpu").edit_generator.state_dict()
    assert max_difference(weights(tmp_path / "two" / "checkpoints" / "step_00000002"), start_editor) > 1e-5  # it trained


@pytest.mark.slow
def test_bad_launches_fail_before_training(tmp_path, faces, config):  # noqa: F811
    """A global batch that 2 processes cannot share, and a launch that asked for 2 processes but started 1
    (accelerate's `--cpu --num_processes 2`): clear errors, no training step."""
    args = ["--stage", "map", *data_args(faces), "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(command(config, *args, "--global-batch-size", "5", processes=2), capture_output=True,
                            text=True, env=environment(), timeout=300)
    assert result.returncode != 0
    assert "global_batch_size 5 does not divide over 2 processes" in result.stderr and "multiple of 2" in result.stderr
    one_started = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                                  str(ROOT / "train" / "train.py"), "--config", config, *args], capture_output=True,
                                 text=True, env=environment(), timeout=300)
    assert one_started.returncode != 0 and "asked for several processes" in one_started.stderr
    assert "accelerate_cpu_2proc.yaml" in one_started.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.slow
def test_resume_with_another_config_is_refused(tmp_path, faces, config):  # noqa: F811
    args = ["--stage", "map", *data_args(faces), "--max-steps", "1", "--output-dir", str(tmp_path / "out")]
    run(config, *args, processes=1)
    other = yaml.safe_load(Path(config).read_text())
    other["map_model"]["base_channels"] = 8
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    log = run(str(other_path), *args, "--resume", processes=1, check=False)
    assert "cannot resume: the checkpoint was made with another config; map_model" in log
    log = run(config, *args, "--resume", "--seed", "3", processes=1, check=False)
    assert "seed: checkpoint 0, now 3" in log


@pytest.mark.slow
def test_a_dying_rank_stops_the_job(tmp_path, faces, config):  # noqa: F811
    """SIGKILL rank 1 mid-run: the launcher stops rank 0 and names the dead rank, well before any timeout."""
    out = tmp_path / "out"
    proc = subprocess.Popen(command(config, "--stage", "map", *data_args(faces), "--max-steps", "100000",
                                    "--checkpoint-every", "100000", "--output-dir", str(out), processes=2),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment())
    try:
        deadline = time.monotonic() + 180
        while not (out / "samples").is_dir():  # training is under way on both ranks (samples every 2 steps)
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended or never started"
            time.sleep(0.2)
        ranks = {int(p.environ().get("RANK", -1)): p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "train.py" in " ".join(p.cmdline())}
        ranks[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        log, _ = proc.communicate(timeout=120)
        stopped_after = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not ranks[0].is_running()
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", log) and "Signal 9 (SIGKILL)" in log, log[-3000:]
    print(f"rank 0 stopped {stopped_after:.1f} s after rank 1 was killed")
    assert stopped_after < 60


# ---------------------------------------------------------------- streaming: a built dataset read as a stream

@pytest.mark.slow
def test_streamed_shares_are_disjoint_and_resume_where_they_stopped(built_dataset):
    """Each rank streams its own rows; a share restarted at a sample count continues the same sequence.
    (Slow for its size: `datasets` sleeps 5 s at the end of each streamed epoch, an Arrow shutdown workaround.)"""
    stream = load_masked_faces(str(built_dataset), "train", streaming=True)
    pairs = PairedFaces([], 32, seed=0)  # no augmentation: a sample's image tells which row it came from

    def take(rank: int, start: int, count: int) -> list[bytes]:
        share = StreamedFaces(stream, pairs, batch_size=2, start=start, rank=rank, world=2)
        return [sample["image"].numpy().tobytes() for sample in islice(share, count)]

    rows = {PairedFaces(load_masked_faces(str(built_dataset), "train"), 32)[i]["image"].numpy().tobytes()
            for i in range(9)}
    first, second = take(0, 0, 8), take(1, 0, 4)
    assert set(first) <= rows and set(second) <= rows
    assert not set(first[:4]) & set(second)  # the first epoch: no row on both ranks
    assert take(0, 8, 4) == first[4:]  # 2 processes × 2 batches × 2 samples consumed, across the epoch's end

    def load(start: int, count: int) -> list[bytes]:  # 1 process, 2 DataLoader workers taking turns
        share = StreamedFaces(stream, pairs, batch_size=2, start=start)
        batches = DataLoader(share, batch_size=2, num_workers=2, multiprocessing_context="fork")
        return [image.numpy().tobytes() for batch in islice(batches, count // 2) for image in batch["image"]]

    both = load(0, 6)  # worker 0 streams shards 0 and 2 (6 rows), worker 1 shard 1 (3 rows): 4 + 2 samples
    assert len(set(both)) == 6 and set(both) <= rows  # the workers split the rows, none read twice
    assert load(4, 2) == both[4:]


@pytest.mark.slow
def test_streaming_from_the_hub_at_one_and_two_processes(hub, built_dataset, tmp_path, config):  # noqa: F811
    hub.commit("org/masked-faces", built_dataset, repo_type="dataset")
    args = ["--stage", "map", "--dataset", "org/masked-faces", "--streaming", "--max-steps", "2"]
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        log = run(config, *args, "--output-dir", str(out), processes=processes)
        assert (processes == 1) != ("step 2: weights identical on all 2 processes" in log)
        card = UnmaskPipeline.from_pretrained(out / "pipeline", device="cpu").info
        assert card["processes"] == processes and card["data"] == "org/masked-faces (train split, streamed)"
        assert card["validation"]["iou"] >= 0  # validation rows were streamed too
    cached = [p.name for p in Path(os.environ["HF_HOME"]).rglob("*") if p.suffix in (".parquet", ".arrow")]
    assert not cached, cached  # streamed: no shard was downloaded whole, no Arrow copy was made
