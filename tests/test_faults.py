"""SIGKILL train/train.py at seeded random points (mid-step and mid-checkpoint-write), damage a checkpoint, then
`--resume`: each run continues from the newest complete checkpoint, damaged ones are skipped with a message, and the
finished run is bit-identical to one that was never interrupted."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unmask_hf import UnmaskPipeline
from unmask_hf.training.checkpoint import is_complete, list_checkpoints

from .test_train import ROOT, SMOKE, faces, vgg  # noqa: F401  (fixtures)

STEPS = 10


def edit_args(faces, vgg, out: Path) -> list[str]:
    folder, identities = faces
    return ["--stage", "edit", "--faces", str(folder), "--identities", str(identities), "--val-fraction", "0.2",
            "--perceptual-weights", vgg, "--adv-start-step", "0", "--max-steps", str(STEPS), "--checkpoint-every", "1",
            "--output-dir", str(out)]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(ROOT / "train" / "train.py"), "--config", SMOKE, *args],
                                stdout=f, stderr=subprocess.STDOUT, env=env)


def kill_when(proc: subprocess.Popen, ready, delay: float = 0.0, timeout: float = 60.0) -> None:
    """Poll (about every millisecond) until `ready()`, wait `delay` s, then SIGKILL the run; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before the kill point"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.001)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def newest(root: Path) -> int:
    """Step of the newest checkpoint that is really there; it must be complete, whatever moment the kill hit."""
    folders = list_checkpoints(root, verify=False)
    if not folders:
        return 0
    assert is_complete(folders[0]), f"{folders[0]} was left damaged by the kill"
    return int(folders[0].name.removeprefix("step_"))


def step_done(root: Path, step: int):
    return lambda: (root / f"step_{step:08d}").is_dir()


def writing_checkpoint(root: Path, after: int):
    """True while a checkpoint past step `after` is being written (its temporary folder exists)."""
    return lambda: any(int(p.name.removeprefix(".tmp-step_")) > after for p in root.glob(".tmp-step_*"))


def resumed_at(log: Path) -> int:
    found = re.search(r"resumed from \S+step_(\d+) at step (\d+)", log.read_text())
    assert found and int(found[1]) == int(found[2]), log.read_text()[-2000:]
    return int(found[1])


@pytest.mark.slow
def test_sigkill_and_damage_then_resume(tmp_path, faces, vgg):  # noqa: F811
    rng = random.Random(9)
    out = tmp_path / "killed"
    ckpts = out / "checkpoints"
    args = edit_args(faces, vgg, out)
    reference = start(edit_args(faces, vgg, tmp_path / "uninterrupted"), tmp_path / "uninterrupted.log")

    # 1. A fresh run killed at a random moment after a random checkpoint (a step takes about 0.1 s).
    target = rng.randint(1, 3)
    kill_when(start(args, tmp_path / "1.log"), step_done(ckpts, target), delay=rng.uniform(0.0, 0.15))
    last = newest(ckpts)
    assert last >= target

    # 2. Resumed, then killed while its next checkpoint is being written: the half-written one is ignored.
    proc = start(args + ["--resume"], tmp_path / "2.log")
    kill_when(proc, writing_checkpoint(ckpts, last))
    assert resumed_at(tmp_path / "2.log") == last
    partial = sorted(ckpts.glob(".tmp-step_*"))
    assert partial, "the kill did not land inside a checkpoint write"
    last = newest(ckpts)

    # 3. Resumed, killed after a random later checkpoint plus a random delay, and then the newest checkpoint's
    #    weights are damaged on disk: the next resume must skip it, say so, and use the one before.
    proc = start(args + ["--resume"], tmp_path / "3.log")
    target = rng.randint(last + 1, STEPS - 2)
    kill_when(proc, step_done(ckpts, target), delay=rng.uniform(0.0, 0.15))
    assert resumed_at(tmp_path / "3.log") == last
    damaged = list_checkpoints(ckpts, verify=False)[0]
    data = bytearray((damaged / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "model.safetensors").write_bytes(bytes(data))
    assert not is_complete(damaged)
    previous = list_checkpoints(ckpts)[0]

    # 4. Resumed to the end.
    proc = start(args + ["--resume"], tmp_path / "4.log")
    assert proc.wait(timeout=120) == 0, (tmp_path / "4.log").read_text()[-3000:]
    log = (tmp_path / "4.log").read_text()
    assert f"skipping damaged checkpoint {damaged}" in log
    assert resumed_at(tmp_path / "4.log") == int(previous.name.removeprefix("step_"))
    assert f"done: {STEPS} steps" in log
    assert not list(ckpts.glob(".tmp-step_*")), "a half-written checkpoint was left behind"
    assert all(is_complete(p) for p in list_checkpoints(ckpts, verify=False))
    pipe = UnmaskPipeline.from_pretrained(out / "pipeline", device="cpu")
    assert pipe.info["steps"] == STEPS

    # Nothing was lost or corrupted on the way: the same weights and optimiser state as the run never killed.
    assert reference.wait(timeout=120) == 0, (tmp_path / "uninterrupted.log").read_text()[-3000:]
    a, b = tmp_path / "uninterrupted" / "checkpoints" / f"step_{STEPS:08d}", ckpts / f"step_{STEPS:08d}"
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    for name in ("optimizer.bin", "optimizer_1.bin"):
        sa, sb = (torch.load(p / name, weights_only=True)["state"] for p in (a, b))
        assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa), name
    final = UnmaskPipeline.from_pretrained(tmp_path / "uninterrupted" / "pipeline", device="cpu")
    for x, y in zip(final.edit_generator.state_dict().values(), pipe.edit_generator.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_resume_after_the_last_checkpoint_trains_no_further(tmp_path, faces, vgg):  # noqa: F811
    out = tmp_path / "run"
    args = edit_args(faces, vgg, out)
    assert start(args, tmp_path / "1.log").wait(timeout=120) == 0
    shutil.rmtree(out / "pipeline")  # as if killed while the final pipeline was being written
    assert start(args + ["--resume"], tmp_path / "2.log").wait(timeout=120) == 0
    assert UnmaskPipeline.from_pretrained(out / "pipeline", device="cpu").info["steps"] == STEPS
    assert newest(out / "checkpoints") == STEPS
