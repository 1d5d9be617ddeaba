"""Checkpoints that survive being killed at any moment.

`accelerator.save_state` writes into `.tmp-step_N/`; a `COMPLETE` manifest (every file's size and SHA-256)
is written last, then the folder is renamed to `step_N/` in one atomic `os.replace`. So a `step_N/` folder is
always whole. On resume, folders whose manifest is missing or does not match are skipped with a message and
the previous checkpoint is used. `run.json` records what made the checkpoint (stage, config, processes), so a
resume with settings it cannot continue is refused before anything is loaded.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator

MANIFEST = "COMPLETE"
PREFIX = "step_"
RUN_FILE = "run.json"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, list]:
    return {str(p.relative_to(folder)): [p.stat().st_size, _digest(p)]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int = 3, run: dict | None = None) -> Path:
    """Save the full training state as `root/step_<step>` atomically; keep only the newest `keep`.

    Every process takes part (each saves its RNG state); only the main process writes the rest and `run`
    (to `run.json`)."""
    final, tmp = root / f"{PREFIX}{step:08d}", root / f".tmp-{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / RUN_FILE).write_text(json.dumps(run or {}, indent=2) + "\n")
        manifest = tmp / MANIFEST
        with open(manifest, "w") as f:
            json.dump({"step": step, "files": _manifest(tmp)}, f)
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(root, verify=False)[keep:]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def is_complete(folder: Path) -> bool:
    """True when the folder's manifest exists and every file still has its recorded size and digest."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return recorded == _manifest(folder)


def list_checkpoints(root: Path, verify: bool = True) -> list[Path]:
    """Checkpoint folders under `root`, newest first (only verified-complete ones when `verify`)."""
    found = sorted((p for p in Path(root).glob(f"{PREFIX}*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    return [p for p in found if not verify or is_complete(p)]


def resume_from(accelerator: Accelerator, target: str | Path, root: Path,
                check: Callable[[dict], None] | None = None) -> Path | None:
    """Load `target` (a checkpoint folder), or with target 'latest' the newest complete one under `root`.

    Damaged checkpoints are reported and skipped. `check` gets the chosen checkpoint's `run.json` ({} for older
    checkpoints) before anything is loaded, and raises to refuse it. Returns the folder loaded, or None.
    """
    if str(target) != "latest":
        folder = Path(target)
        if not is_complete(folder):
            raise ValueError(f"Checkpoint {folder} is missing or damaged (no valid {MANIFEST} manifest)")
        candidates = [folder]
    else:
        candidates = list_checkpoints(root, verify=False)
    for folder in candidates:
        if not is_complete(folder):
            accelerator.print(f"skipping damaged checkpoint {folder} (manifest missing or files changed)")
            continue
        if check is not None:
            check(json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {})
        accelerator.load_state(str(folder))
        return folder
    return None


def record_validation(accelerator: Accelerator, history: list[dict], scores: dict, out: Path) -> None:
    """Append a checkpoint's validation scores to the run's `history`, print them as one JSON line and rewrite
    OUT/history.json (main process), so a long run can be watched."""
    history.append(scores)
    accelerator.print(json.dumps(scores), flush=True)
    if accelerator.is_main_process:
        (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
