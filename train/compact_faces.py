"""Copy a folder of face images as small WebP files: a compact training set to ship to a rented GPU.

    python train/compact_faces.py ../shared/data/celeba-faces/train .data/faces128 --size 128 --quality 75

Masks are rendered on the fly during training (`train/train.py --faces`), so plain faces are all it needs.
The renderer places masks by the aligned-crop template, so faces framed otherwise (FFHQ's wider crops, with
neck and shoulders) go through the pipeline's own detection and alignment first, as a user's photo does:

    python train/compact_faces.py ../shared/data/ffhq-256 .data/ffhq128 --size 128 --quality 75 --align

To ship only the people training may see (the rented machine then splits off its own validation people from
them, so the project's validation people never reach training), take one split of the identity-disjoint split
(`FaceFolder.split`); `--max-identities` keeps that many of its people (a seeded draw), to fit a transfer limit:

    python train/compact_faces.py ../shared/data/celeba-faces/train .data/gpu/celeba --size 128 --quality 75 \
        --identities ../shared/data/celeba-faces/identities.csv --split train --max-identities 757
"""

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from unmask_hf.dataset import FaceFolder
from unmask_hf.faces import FaceDetector, align_face
from unmask_hf.io import load_image

_detector: FaceDetector | None = None  # one per worker process


def convert(path: Path, out: Path, size: int, quality: int, align: bool) -> bool:
    """Write one face; False (nothing written) when `align` finds no face in it."""
    image = load_image(path)
    if align:
        global _detector
        _detector = _detector or FaceDetector()
        photo = np.asarray(image)
        faces = _detector(photo)
        if not faces:
            return False
        image = Image.fromarray(align_face(photo, faces[0].landmarks, size).crop)  # already size × size
    else:
        image = image.resize((size, size), Image.LANCZOS)
    image.save(out / f"{path.stem}.webp", quality=quality, method=6)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", help="folder of face crops")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quality", type=int, default=75, help="WebP quality")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--align", action="store_true", help="crop each photo's largest face the way the pipeline does")
    parser.add_argument("--identities", help="CSV file,identity: the people to split by, written beside the output")
    parser.add_argument("--split", choices=["train", "validation", "test"], help="only this split's faces")
    parser.add_argument("--max-identities", type=int, help="keep this many of the people (a seed-0 draw)")
    args = parser.parse_args()
    if args.max_identities and not args.identities:
        parser.error("--max-identities needs --identities")
    folder = FaceFolder(args.faces, args.identities)
    chosen = list(range(len(folder)))
    if args.split:
        chosen = folder.split()[args.split]
    if args.max_identities:
        people = sorted({folder.identities[i] for i in chosen}, key=str)
        kept = set(np.random.default_rng(0).permutation(np.array(people, dtype=object))[: args.max_identities])
        chosen = [i for i in chosen if folder.identities[i] in kept]
    paths = [folder.files[i] for i in chosen]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.identities:  # beside the faces, so the copy splits by person too
        with open(out.parent / f"{out.name}-identities.csv", "w", newline="") as f:
            csv.writer(f).writerows([("file", "identity")] + [(f"{folder.files[i].stem}.webp", folder.identities[i])
                                                             for i in chosen])
    work = partial(convert, out=out, size=args.size, quality=args.quality, align=args.align)
    with ProcessPoolExecutor(args.num_proc) as pool:
        written = sum(tqdm(pool.map(work, paths, chunksize=16), total=len(paths), desc="compacting", unit="img"))
    print(f"wrote {written} of {len(paths)} faces to {out}" + (f" ({len(paths) - written} with no face found)"
                                                            if written < len(paths) else ""))


if __name__ == "__main__":
    main()
