"""Training samples per second of one loader process: masks rendered on the fly (--faces) vs a built dataset.

    python benchmarks/loaders.py --faces ../shared/data/celeba-faces/train --count 512 [--size 128]

Builds a dataset from the first COUNT faces with train/build_dataset.py (one process; its time is printed too),
then times the training samples train/train.py would take (augmentation included), one process, no workers:
- `--faces`: PairedFaces over the image files (each sample renders its mask);
- `--dataset DIR`: PairedFaces over the built parquet shards (decode only);
- `--dataset DIR --streaming`: StreamedFaces over the same shards read as a stream.
A GPU run's loader throughput is about this number × its DataLoader workers (if the CPU has that many cores).
"""

import argparse
import runpy
import tempfile
import time
from itertools import islice
from pathlib import Path

from unmask_hf.dataset import load_masked_faces
from unmask_hf.training.data import PairedFaces, StreamedFaces

ROOT = Path(__file__).resolve().parents[1]


def rate(samples, count: int) -> float:
    start = time.perf_counter()
    for _ in islice(samples, count):
        pass
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    files = sorted(p for p in Path(args.faces).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    files = files[:args.count]
    augment = dict(augment=True, hflip=True, color_jitter=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        runpy.run_path(str(ROOT / "train" / "build_dataset.py"))["main"](
            ["--faces", args.faces, "--out", f"{tmp}/built", "--size", str(args.size), "--limit", str(args.count),
             "--val-fraction", "0", "--test-fraction", "0", "--num-proc", "1", "--shard-size", "256"])
        build = args.count / (time.perf_counter() - start)
        rendered = PairedFaces(files, args.size, seed=0, **augment)
        built = PairedFaces(load_masked_faces(f"{tmp}/built", "train"), args.size, seed=0, **augment)
        plain = PairedFaces(built.source, args.size, seed=0)
        streamed = StreamedFaces(load_masked_faces(f"{tmp}/built", "train", streaming=True),
                                 PairedFaces([], args.size, seed=0, **augment), batch_size=32)
        rows = [("--faces (render each mask)", rate((rendered[i] for i in range(len(files))), len(files))),
                ("--dataset DIR (decode)", rate((built[i] for i in range(len(built))), len(built))),
                ("--dataset DIR, no flip or colour jitter", rate((plain[i] for i in range(len(plain))), len(plain))),
                ("--dataset DIR --streaming", rate(iter(streamed), len(built))),
                ("build_dataset.py (render + encode, once)", build)]
    print(f"\n{len(files)} faces at {args.size} px, one process, no DataLoader workers\n")
    print("| source | samples/s |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
