"""Train the landmark refiner (`LandmarkRefiner`): a masked face's landmarks, corrected from the face itself.

    # 1. render masked faces once, with the clean photo's landmarks as the truth (validation: other people, and
    #    the detector's own landmarks on the masked photo as the baseline)
    python train/train_aligner.py render --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --split train --masks-per-face 2 --out .data/align/celeba.npz
    python train/train_aligner.py render --faces ../shared/data/ffhq-256 --split train --masks-per-face 2 --out .data/align/ffhq.npz
    python train/train_aligner.py render --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --split validation --limit 300 --detect \
        --seed 500000 --out .data/align/val.npz
    # 2. train on crops thrown off as a masked face's detection is; writes OUTPUT/pipeline and OUTPUT/best
    #    (the --init pipeline with the landmark refiner in align/)
    accelerate launch --config_file train/configs/accelerate_cpu.yaml train/train_aligner.py fit \
        --faces .data/align/celeba.npz .data/align/ffhq.npz --val .data/align/val.npz --output-dir runs/align --max-minutes 20

Loss: smooth L1 between the predicted and the true landmarks, in crop pixels. Validation: the alignment error
(`training.align_data.alignment_error`: how far the working crop lands from the one the clean face gives, in
crop pixels at 128) of the detector's landmarks on the masked validation faces, and of those landmarks refined;
`best` is the step with the lowest mean.
"""

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm import tqdm

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import FaceFolder
from unmask_hf.models import LandmarkRefiner
from unmask_hf.training.align_data import load_align_faces, refined_errors, render_align_faces, sample_batch
from unmask_hf.training.checkpoint import record_validation


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render masked faces with the clean photo's landmarks")
    render.add_argument("--faces", required=True, help="folder of clean face photos")
    render.add_argument("--identities", help="CSV file,identity for the split (unlisted faces: one person each)")
    render.add_argument("--split", choices=["train", "validation", "test"], default="train")
    render.add_argument("--masks-per-face", type=int, default=1)
    render.add_argument("--photo-size", type=int, default=192, help="side the photos are rendered at")
    render.add_argument("--bare-fraction", type=float, default=0.1, help="share of faces left without a mask")
    render.add_argument("--detect", action="store_true", help="also store the detector's landmarks on the masked photo")
    render.add_argument("--limit", type=int, help="only the first N faces")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--out", required=True, help=".npz to write")
    fit = commands.add_parser("fit", help="train the landmark refiner on rendered faces")
    fit.add_argument("--faces", required=True, nargs="+", help=".npz files from `render` (training)")
    fit.add_argument("--val", required=True, help=".npz from `render --detect` (validation: other people)")
    fit.add_argument("--init", default=None, help="pipeline the refiner is added to (default: embedded weights); "
                                                  "its landmark refiner, if it has one, is the starting point")
    fit.add_argument("--output-dir", required=True)
    fit.add_argument("--max-minutes", type=float, default=20.0)
    fit.add_argument("--max-steps", type=int, default=100_000)
    fit.add_argument("--batch-size", type=int, default=64)
    fit.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, cosine-decayed over --max-minutes")
    fit.add_argument("--size", type=int, default=64, help="crop side of a new refiner")
    fit.add_argument("--width", type=int, default=32, help="channels of a new refiner's first stage")
    fit.add_argument("--tight-share", type=float, default=0.5,
                     help="share of training photos first cut to a close-up around the face (align_data.tight_window)")
    fit.add_argument("--val-every", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--save-dtype", choices=["fp32", "fp16"], default="fp16")
    return parser.parse_args(argv)


def render(args: argparse.Namespace) -> None:
    folder = FaceFolder(args.faces, args.identities)
    paths = [folder.files[i] for i in folder.split()[args.split]][: args.limit]
    faces = render_align_faces(paths, args.masks_per_face, args.photo_size, seed=args.seed,
                               bare_fraction=args.bare_fraction, detect=args.detect)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **faces)
    print(f"{len(faces['images'])} faces from {len(paths)} photos ({args.split} split) -> {args.out}")


def validate(refiner: LandmarkRefiner, val: dict[str, np.ndarray]) -> dict[str, float]:
    errors = refined_errors(refiner, val)
    return {f"{name}_{stat}": round(float(value), 3) for name, e in errors.items()
            for stat, value in (("mean", e.mean()), ("median", np.median(e)), ("over_8px", (e > 8).mean()))}


def fit(args: argparse.Namespace) -> None:
    accelerator = Accelerator()
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = UnmaskPipeline.from_pretrained(args.init, device="cpu")
    refiner = pipe.landmark_refiner or LandmarkRefiner(size=args.size, width=args.width)
    template, size = refiner.crop_template(), refiner.size  # read before accelerate wraps the module
    parts = [load_align_faces(path) for path in args.faces]
    faces = {key: np.concatenate([p[key] for p in parts]) for key in ("images", "landmarks")}
    val = load_align_faces(args.val)
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=args.lr, weight_decay=1e-4)
    refiner, optimizer = accelerator.prepare(refiner, optimizer)
    rng = np.random.default_rng([args.seed, accelerator.process_index])
    history, best, start = [], None, time.time()

    def checkpoint(step: int) -> None:
        nonlocal best
        model = accelerator.unwrap_model(refiner).eval()
        scores = {"step": step, "minutes": round((time.time() - start) / 60, 1)} | validate(model, val)
        model.train()
        record_validation(accelerator, history, scores, out)
        if accelerator.is_main_process and (best is None or scores["refined_mean"] < best["refined_mean"]):
            best = scores
            save(out / "best", scores)

    def save(folder: Path, scores: dict) -> None:
        pipe.landmark_refiner = accelerator.unwrap_model(refiner)
        pipe.info = pipe.info | {"align": {"command": shlex.join(["python"] + sys.argv), "validation": scores,
                                           "data": f"{len(faces['images'])} faces from {', '.join(args.faces)}"}}
        pipe.save_pretrained(folder, dtype=torch.float16 if args.save_dtype == "fp16" else None)

    refiner.train()
    bar = tqdm(total=args.max_steps, desc="landmark refiner", disable=not accelerator.is_main_process)
    step = 0
    while step < args.max_steps and time.time() - start < args.max_minutes * 60:
        crops, truth = sample_batch(faces, rng.integers(len(faces["images"]), size=args.batch_size), template, size, rng,
                                    args.tight_share)
        loss = F.smooth_l1_loss(refiner(crops.to(accelerator.device)), truth.to(accelerator.device))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        done = min(max((time.time() - start) / (args.max_minutes * 60), step / args.max_steps), 1.0)
        for group in optimizer.param_groups:  # cosine over whichever budget runs out first
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * done))
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.val_every == 0:
            checkpoint(step)
    bar.close()
    if not history or history[-1]["step"] != step:
        checkpoint(step)
    if accelerator.is_main_process:
        save(out / "pipeline", history[-1])
    accelerator.print(f"{step} steps in {(time.time() - start) / 60:.1f} min; best: {json.dumps(best)}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    render(args) if args.command == "render" else fit(args)


if __name__ == "__main__":
    main()
