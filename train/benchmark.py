"""Inference speed of the pipeline on this machine: latency per aligned face, batched throughput, and end-to-end
latency on a 1-megapixel photo (face detection, alignment, both models, paste-back: `pipe(photo)`).

    python train/benchmark.py                      # embedded weights, CPU, all cores
    python train/benchmark.py --model org/name --device cuda --batch-sizes 1 16 256

Prints a markdown table: median milliseconds per call over repeated runs, faces/s, peak memory. The photo is the
app's example `examples/astronaut_surgical.jpg` (512×512, public domain, a rendered surgical mask) centred on a
1000×1000 grey canvas; it runs as users get it (bfloat16 autocast on a CPU that computes bf16 natively, else
fp32), and in fp32 beside it where that is bf16. A reference timed in the same run, OpenCV Telea
inpainting of the same photo inside the mask the pipeline found, makes numbers comparable across days (this
machine's speed varies up to 3×).
"""

import argparse
import resource
import statistics
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from unmask_hf import UnmaskPipeline
from unmask_hf.io import load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut_surgical.jpg"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_call(fn, repeats: int, sync) -> float:
    """Median seconds of `fn()` over `repeats` runs after two warm-up runs."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def astronaut_photo(side: int = 1000) -> np.ndarray:
    """A side×side photo with one masked face: the 512×512 example centred on a grey canvas."""
    face = np.asarray(load_image(EXAMPLE))
    canvas = np.full((side, side, 3), 128, np.uint8)
    top = (side - face.shape[0]) // 2
    canvas[top:top + face.shape[0], top:top + face.shape[1]] = face
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id or folder (default: embedded weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--photo-repeats", type=int, default=5, help="repeats of the end-to-end photo run (0: skip it)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained-weights warning: speed does not depend on training
        pipe = UnmaskPipeline.from_pretrained(args.model, device=args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    size = pipe.image_size

    def row(what: str, batch: int, faces: int, seconds: float, repeats: int) -> None:
        memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU" if cuda else f"{peak_rss_mib():.0f} MiB RSS"
        print(f"| {name} | {what} | {batch} | {seconds * 1000:.1f} (median of {repeats}) | "
              f"{seconds * 1000 / faces:.1f} | {faces / seconds:.1f} | {memory} |")

    print("| device | input | batch | ms per call | ms per face | faces/s | peak memory |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    # As users get it (pipe.bf16: bfloat16 autocast on a CPU that computes it natively), and in fp32 beside it there.
    # --dtype bf16 / fp16 casts the modules for the crop rows instead (GPUs), with autocast off.
    user_modes = [True, False] if pipe.bf16 else [False]
    crop_modes = user_modes if args.dtype == "fp32" else [False]

    def label(bf16: bool) -> str:
        return "bf16 autocast (the default here)" if bf16 else "fp32"

    if args.photo_repeats > 0:  # first, while the modules are still fp32 as users get them
        photo = astronaut_photo()
        for bf16 in user_modes:
            pipe.bf16 = bf16
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            result = pipe(photo)
            seconds = time_call(lambda: pipe(photo), args.photo_repeats, sync)
            faces = len(result.faces)
            row(f"{photo.shape[1]}×{photo.shape[0]} photo, end to end, {label(bf16)} ({faces} face(s) processed)",
                1, max(faces, 1), seconds, args.photo_repeats)
        notes += result.notes
        mask = np.asarray(result.changed)  # the hole the fill replaced
        telea = time_call(lambda: cv2.inpaint(photo, mask, 3, cv2.INPAINT_TELEA), args.photo_repeats, lambda: None)
        print(f"| CPU | reference: OpenCV Telea on the same photo and mask | 1 | {telea * 1000:.1f} "
              f"(median of {args.photo_repeats}) | — | — | — |")
    for module in (pipe.map_generator, pipe.edit_generator):
        module.to(device, dtype=dtype)
    for batch in args.batch_sizes:
        x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).to(dtype)
        for bf16 in crop_modes:
            pipe.bf16 = bf16
            what = label(bf16) if args.dtype == "fp32" else args.dtype
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = time_call(lambda: pipe.predict(x), args.repeats, sync)
            row(f"aligned {size}×{size} crops, {what}", batch, batch, seconds, args.repeats)
            with torch.inference_mode(), pipe.autocast():  # the map module's budget: <= 10 ms a face on 2 cores
                seconds = time_call(lambda: pipe.map_generator.probability(x), args.repeats, sync)
            row(f"aligned {size}×{size} crops, map module alone, {what}", batch, batch, seconds, args.repeats)
    if notes:
        print("\n" + "\n".join(f"note (photo): {note}" for note in notes))


if __name__ == "__main__":
    main()
