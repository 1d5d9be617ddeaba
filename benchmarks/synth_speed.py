"""Speed of the mask renderer and of the dataset builder (CPU), printed as a table.

    python benchmarks/synth_speed.py --faces /work/shared/data/celeba-faces/train --count 2000 --num-proc 2

Renderer: `render_mask` on 128-px faces, per style and with random styles, in one process and in `--num-proc`
processes. Builder: `build_masked_faces` (decode, resize, render, PNG-encode, parquet) on the first `--count`
faces of `--faces` with `--num-proc` processes, into a temporary folder. Without `--faces`, the astronaut
photo stands in for the renderer rows and the builder row is skipped.
"""

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.data import astronaut

from unmask_hf.dataset import BuildConfig, FaceFolder, build_masked_faces
from unmask_hf.synth import MASK_STYLES, render_mask


def faces_128(folder: str | None, count: int) -> list[np.ndarray]:
    if folder is None:
        photo = Image.fromarray(astronaut()).crop((130, 20, 330, 220)).resize((128, 128), Image.LANCZOS)
        return [np.asarray(photo)] * count
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".webp", ".png", ".jpg"))[:count]
    return [np.asarray(Image.open(p).convert("RGB").resize((128, 128), Image.LANCZOS)) for p in paths]


def render_all(job: tuple) -> int:
    faces, style, first_seed = job
    for i, face in enumerate(faces):
        render_mask(face, first_seed + i, style)
    return len(faces)


def rate(faces: list[np.ndarray], style: str | None, procs: int) -> float:
    jobs = [(faces[i::procs], style, i * len(faces)) for i in range(procs)]
    start = time.perf_counter()
    if procs == 1:
        done = render_all(jobs[0])
    else:
        with multiprocessing.Pool(procs) as pool:
            done = sum(pool.map(render_all, jobs))
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", help="folder of face crops (e.g. /work/shared/data/celeba-faces/train)")
    parser.add_argument("--count", type=int, default=1000, help="faces per measurement")
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()

    faces = faces_128(args.faces, args.count)
    print(f"{'measurement':44s} {'faces/s':>8s}")
    for style in MASK_STYLES + (None,):
        label = f"render_mask 128 px, {style or 'random styles'}, 1 proc"
        print(f"{label:44s} {rate(faces, style, 1):8.0f}")
    label = f"render_mask 128 px, random styles, {args.num_proc} proc"
    print(f"{label:44s} {rate(faces, None, args.num_proc):8.0f}")
    if args.faces:
        with tempfile.TemporaryDirectory() as out:
            config = BuildConfig(source=args.faces, limit=args.count, size=128)
            start = time.perf_counter()
            info = build_masked_faces(FaceFolder(args.faces), out, config, num_proc=args.num_proc)
            seconds = time.perf_counter() - start
        label = f"build_dataset 128 px, {info['faces_rendered']} faces, {args.num_proc} proc"
        print(f"{label:44s} {info['faces_rendered'] / seconds:8.0f}")


if __name__ == "__main__":
    main()
