"""Build the synthetic masked-face dataset: render masks on plain faces, write parquet shards + a dataset card.

    python train/build_dataset.py --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --out .data/masked-faces-128 \
        --preview masked-faces-preview.png [--push-to-hub org/name]

Rerunning the same command resumes an interrupted build (finished shards are kept).
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from unmask_hf.dataset import (BuildConfig, FaceFolder, HubFaces, build_masked_faces, contact_sheet,  # noqa: E402
                               load_masked_faces, push_to_hub, summarize)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--faces", help="folder of face images (aligned crops)")
    source.add_argument("--source", help="a Hub dataset id (or anything datasets.load_dataset reads) of face images")
    parser.add_argument("--source-split", default="train", help="split of --source to read (default: train)")
    parser.add_argument("--image-column", help="image column of --source (default: 'image' or the first image column)")
    parser.add_argument("--identity-column", help="identity column of --source (default: 'identity' if present)")
    parser.add_argument("--identities", help="CSV (file,identity) for --faces: identity-disjoint splits")
    parser.add_argument("--out", required=True, help="output folder: data/{split}-*.parquet + README.md")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--masks-per-face", type=int, default=1, help="masked versions of each face (default: 1)")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use only the first N faces (quick runs)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per parquet shard")
    parser.add_argument("--num-proc", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--preview", help="write a contact sheet (masked | map | ground truth) to this PNG")
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the folder as a Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="make the Hub repo private")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.identities and not args.faces:
        raise SystemExit("--identities goes with --faces (for --source use --identity-column)")
    if args.limit is not None and args.limit < 1:
        raise SystemExit("--limit must be at least 1")
    try:
        if args.faces:
            source, name = FaceFolder(args.faces, args.identities), str(Path(args.faces))
        else:
            source, name = HubFaces(args.source, args.source_split, args.image_column, args.identity_column), args.source
        config = BuildConfig(source=name, identities=args.identities, size=args.size, masks_per_face=args.masks_per_face,
                             val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                             limit=args.limit, shard_size=args.shard_size)
        info = build_masked_faces(source, args.out, config, overwrite=args.overwrite, num_proc=args.num_proc)
    except ValueError as e:
        raise SystemExit(f"error: {e}")

    summary = summarize(info)
    print(f"Wrote {args.out}: " + ", ".join(f"{split} {rows} rows" for split, rows in summary["rows"].items()))
    for split, counts in summary["styles"].items():
        print(f"  {split}: " + ", ".join(f"{style} {n}" for style, n in sorted(counts.items())))
    if info["faces_rendered"]:
        print(f"Rendered {info['faces_rendered']} faces in {info['seconds']:.1f} s "
              f"({info['faces_rendered'] / info['seconds']:.0f} faces/s, {args.num_proc} proc)")
    else:
        print("All shards were already built; nothing to do.")
    if summary["skipped"]:
        print(f"Skipped {len(summary['skipped'])} unreadable source image(s):")
        for line in summary["skipped"][:20]:
            print(f"  {line}")
    if args.preview:
        rows = load_masked_faces(args.out, "train")
        contact_sheet([rows[i] for i in range(min(8, len(rows)))]).save(args.preview)
        print(f"Preview: {args.preview}")
    if args.push_to_hub:
        print(f"Uploaded: {push_to_hub(args.out, args.push_to_hub, private=args.private)}")
    return info


if __name__ == "__main__":
    main()
