"""Evaluate the pipeline side by side with the baselines (masked input, OpenCV Telea / Navier-Stokes inpainting),
on the same samples: writes metrics.json, results.md (a markdown table under the command that made it) and
samples.png (masked | predicted map | ours | Telea | ground truth).

    python train/evaluate.py --dataset .data/masked-faces-128 --split test --out eval/test \
        --perceptual-weights ../shared/weights/vgg16-imagenet-features-conv1-conv4.safetensors
    python train/evaluate.py --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --limit 200 --out eval/val   # training's validation samples
    python train/evaluate.py --real photos/ --out eval/real     # photos without ground truth: real_contact_sheet.png

Identity scores need the [eval] extra (dlib); FD-VGG needs a perceptual network (torchvision's VGG-19 download,
or --perceptual-weights). Either is skipped, with a note in the table, when not available.
"""

import argparse
import shlex
import sys
from pathlib import Path

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import BuildConfig, load_masked_faces
from unmask_hf.evaluation import EvalData, evaluate, real_contact_sheet, results_table, write_report
from unmask_hf.io import find_images, save_prediction_png
from unmask_hf.losses import load_perceptual_network
from unmask_hf.metrics import IdentityEncoder
from unmask_hf.training.config import TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Hub id or folder (default: the embedded weights)")
    p.add_argument("--revision", default=None, help="with a Hub id as --model: the commit sha (or branch, tag) to pin")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", help="built masked-face dataset: Hub id or folder (train/build_dataset.py)")
    data.add_argument("--faces", help="folder of plain faces: the identity-disjoint validation split of training, "
                                      "masks rendered on the fly as in training")
    data.add_argument("--real", help="folder of photos without ground truth: writes real_contact_sheet.png")
    p.add_argument("--split", choices=["validation", "test"], default="validation", help="split of --dataset")
    p.add_argument("--identities", help="with --faces: CSV file,identity (as given to training)")
    p.add_argument("--val-fraction", type=float, default=BuildConfig.val_fraction, help="with --faces: as given to training")
    p.add_argument("--seed", type=int, default=TrainConfig.seed, help="with --faces: the training run's seed")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, help="only the first N samples (or photos)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--perceptual-weights", help="local safetensors VGG features for FD-VGG (default: torchvision VGG-19)")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity scores (the slowest part on CPU)")
    p.add_argument("--no-fd", action="store_true", help="skip FD-VGG")
    args = p.parse_args(argv)
    if args.revision and not args.model:
        p.error("--revision pins a Hub model: give --model org/name too")
    if args.faces and args.split != "validation":
        p.error("--faces gives training's validation split only; for the test split build the dataset from the same "
                "folder (train/build_dataset.py) and pass --dataset")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    return args


def open_data(args: argparse.Namespace, image_size: int) -> EvalData:
    if args.dataset:
        data = load_masked_faces(args.dataset, args.split)
        return EvalData.from_dataset(data, image_size, f"{args.dataset} [{args.split}]")
    # train.py validates with its seed + 1: the same faces and masks
    return EvalData.from_face_folder(args.faces, args.identities, args.val_fraction, image_size, args.seed + 1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python train/evaluate.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    try:
        pipe = UnmaskPipeline.from_pretrained(args.model, revision=args.revision, device=args.device)
        pipe.batch_size = args.batch_size
        if args.real:
            photos = find_images([args.real])[: args.limit]
            if not photos:
                sys.exit(f"error: no images in {args.real}")
            sheet, notes = real_contact_sheet(pipe, photos)
            out.mkdir(parents=True, exist_ok=True)
            save_prediction_png(sheet, out / "real_contact_sheet.png")
            print("\n".join(notes) + f"\nwrote {out / 'real_contact_sheet.png'} ({len(photos)} photos)")
            return
        data = open_data(args, pipe.image_size)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")

    encoder = fd_network = None
    if not args.no_identity:
        try:
            encoder = IdentityEncoder()
        except ImportError as e:
            print(f"warning: identity scores skipped: {e}", file=sys.stderr)
    if not args.no_fd:
        try:
            fd_network = load_perceptual_network(args.perceptual_weights).to(pipe.device)
        except (RuntimeError, ValueError) as e:
            print(f"warning: FD-VGG skipped: {e}", file=sys.stderr)
    summary, grid = evaluate(pipe, data, limit=args.limit, batch_size=args.batch_size, encoder=encoder,
                             fd_network=fd_network)
    write_report(summary, grid, out, command)
    print(f"`{command}`\n\n{results_table(summary)}\nwrote {out}/metrics.json, results.md, samples.png")


if __name__ == "__main__":
    main()
