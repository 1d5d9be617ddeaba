"""Copy a folder of face images as small WebP files: a compact training set to ship to a rented GPU.

    python train/compact_faces.py ../shared/data/celeba-faces/train .data/faces128 --size 128 --quality 75

Masks are rendered on the fly during training (`train/train.py --faces`), so plain faces are all it needs.
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from unmask_hf.io import find_images, load_image


def convert(path: Path, out: Path, size: int, quality: int) -> None:
    load_image(path).resize((size, size), Image.LANCZOS).save(out / f"{path.stem}.webp", quality=quality, method=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", help="folder of face crops")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quality", type=int, default=75, help="WebP quality")
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()
    paths = find_images([args.faces])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = partial(convert, out=out, size=args.size, quality=args.quality)
    with ProcessPoolExecutor(args.num_proc) as pool:
        list(tqdm(pool.map(work, paths, chunksize=64), total=len(paths), desc="compacting", unit="img"))


if __name__ == "__main__":
    main()
