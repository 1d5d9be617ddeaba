"""Copy a folder of face images as small WebP files: a compact training set to ship to a rented GPU.

    python train/compact_faces.py ../shared/data/celeba-faces/train .data/faces128 --size 128 --quality 75

Masks are rendered on the fly during training (`train/train.py --faces`), so plain faces are all it needs.
The renderer places masks by the aligned-crop template, so faces framed otherwise (FFHQ's wider crops, with
neck and shoulders) go through the pipeline's own detection and alignment first, as a user's photo does:

    python train/compact_faces.py ../shared/data/ffhq-256 .data/ffhq128 --size 128 --quality 75 --align
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from unmask_hf.faces import FaceDetector, align_face
from unmask_hf.io import find_images, load_image

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
    args = parser.parse_args()
    paths = find_images([args.faces])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = partial(convert, out=out, size=args.size, quality=args.quality, align=args.align)
    with ProcessPoolExecutor(args.num_proc) as pool:
        written = sum(tqdm(pool.map(work, paths, chunksize=16), total=len(paths), desc="compacting", unit="img"))
    print(f"wrote {written} of {len(paths)} faces to {out}" + (f" ({len(paths) - written} with no face found)"
                                                            if written < len(paths) else ""))


if __name__ == "__main__":
    main()
