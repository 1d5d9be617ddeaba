"""Face detection speed on 1-megapixel photos (CPU): median and fastest of repeated runs.

    python benchmarks/faces_speed.py --threads 2 --repeats 30

Photos: scikit-image's public-domain astronaut, upscaled to 1000 x 1000 (face ~180 px) or placed at 512 px on a
1000 x 1000 grey canvas (face ~90 px), each also with a pale-blue polygon drawn over the lower face as a stand-in mask.
"""

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage.data import astronaut

from unmask_hf.faces import FaceDetector, align_face, paste_back

MASK_POLYGON = [(176, 118), (224, 110), (272, 118), (268, 160), (224, 188), (182, 160)]  # lower face, 512-px photo


def photos() -> dict[str, np.ndarray]:
    plain = Image.fromarray(astronaut())
    masked = plain.copy()
    ImageDraw.Draw(masked).polygon(MASK_POLYGON, fill=(170, 200, 230))
    out = {}
    for name, photo in (("", plain), (", masked", masked)):
        out[f"astronaut upscaled to 1000x1000{name}"] = np.asarray(photo.resize((1000, 1000), Image.Resampling.BICUBIC))
        canvas = Image.new("RGB", (1000, 1000), (128, 128, 128))
        canvas.paste(photo, (244, 244))
        out[f"astronaut 512 px on a 1000x1000 canvas{name}"] = np.asarray(canvas)
    return out


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    detector = FaceDetector()
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("| photo | faces | detect median ms | detect min ms | align+paste median ms |")
    print("|---|---|---|---|---|")
    for name, photo in photos().items():
        faces = detector(photo)
        detect = timed(lambda: detector(photo), args.repeats)

        def align_and_paste():
            aligned = align_face(photo, faces[0].landmarks, 192)
            paste_back(photo, aligned.crop, np.ones((192, 192), np.float32), aligned.matrix)

        paste = timed(align_and_paste, args.repeats)[0] if faces else float("nan")
        print(f"| {name} | {len(faces)} | {detect[0]:.1f} | {detect[1]:.1f} | {paste:.1f} |")


if __name__ == "__main__":
    main()
