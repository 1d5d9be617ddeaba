"""Speed of the mask renderer and of the dataset builder (CPU), printed as a table.

    python benchmarks/synth_speed.py --faces /work/shared/data/celeba-faces/train --count 2000 --num-proc 2

Renderer: `render_mask` on 128-px faces, per style (all WORLD_STYLES) and with random default styles, in one process and in `--num-proc`
processes. Builder: `build_masked_faces` (decode, resize, render, PNG-encode, parquet) on the first `--count`
faces of `--faces` with `--num-proc` processes, into a temporary folder. Without `--faces`, the astronaut
photo stands in for the renderer rows and the builder row is skipped.

Two numbers per row: faces per wall-clock second, and faces per CPU-second (all processes' user + system time),
which does not depend on what else runs on the machine: N free cores give about N times the second number.
"""

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.data import astronaut

from unmask_hf.dataset import BuildConfig, FaceFolder, build_masked_faces
from unmask_hf.synth import WORLD_STYLES, render_mask


def faces_128(folder: str | None, count: int) -> list[np.ndarray]:
    if folder is None:
        photo = Image.fromarray(astronaut()).crop((130, 20, 330, 220)).resize((128, 128), Image.LANCZOS)
        return [np.asarray(photo)] * count
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".webp", ".png", ".jpg"))[:count]
    return [np.asarray(Image.open(p).convert("RGB").resize((128, 128), Image.LANCZOS)) for p in paths]


def render_all(job: tuple) -> tuple[int, float]:
    faces, style, first_seed = job
    start = time.process_time()
    for i, face in enumerate(faces):
        render_mask(face, first_seed + i, style)
    return len(faces), time.process_time() - start


def rate(faces: list[np.ndarray], style: str | None, procs: int) -> tuple[float, float]:
    """(faces per wall second, faces per CPU second)."""
    jobs = [(faces[i::procs], style, i * len(faces)) for i in range(procs)]
    start = time.perf_counter()
    if procs == 1:
        results = [render_all(jobs[0])]
    else:
        with multiprocessing.Pool(procs) as pool:
            results = pool.map(render_all, jobs)
    done, cpu = sum(r[0] for r in results), sum(r[1] for r in results)
    return done / (time.perf_counter() - start), done / cpu


def cpu_seconds() -> float:
    """User + system time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", help="folder of face crops (e.g. /work/shared/data/celeba-faces/train)")
    parser.add_argument("--count", type=int, default=1000, help="faces per measurement")
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()

    faces = faces_128(args.faces, args.count)
    print(f"{'measurement':46s} {'faces/s':>8s} {'faces/CPU-s':>12s}")
    for style in WORLD_STYLES + (None,):  # random: the default styles
        label = f"render_mask 128 px, {style or 'random styles'}, 1 proc"
        print(f"{label:46s} {'%8.0f %12.0f' % rate(faces, style, 1)}")
    label = f"render_mask 128 px, random styles, {args.num_proc} proc"
    print(f"{label:46s} {'%8.0f %12.0f' % rate(faces, None, args.num_proc)}")
    if args.faces:
        with tempfile.TemporaryDirectory() as out:
            config = BuildConfig(source=args.faces, limit=args.count, size=128)
            start, cpu = time.perf_counter(), cpu_seconds()
            info = build_masked_faces(FaceFolder(args.faces), out, config, num_proc=args.num_proc)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        done = info["faces_rendered"]
        label = f"build_dataset 128 px, {done} faces, {args.num_proc} proc"
        print(f"{label:46s} {done / seconds:8.0f} {done / cpu:12.0f}")


if __name__ == "__main__":
    main()
