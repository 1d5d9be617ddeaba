"""Measures the mean FaceDetector landmarks on aligned training crops: the source of faces.TEMPLATE_LANDMARKS.

    python benchmarks/faces_template.py /work/shared/data/celeba-faces/train --count 500
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unmask_hf.faces import FaceDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of square face crops (*.webp, *.png, *.jpg)")
    parser.add_argument("--count", type=int, default=500, help="how many crops to measure (the first, sorted by name)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    detector = FaceDetector()
    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".webp", ".png", ".jpg"})[: args.count]
    points = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(image)
        if faces:  # the largest face is the crop's subject
            points.append(faces[0].landmarks / np.array([image.shape[1], image.shape[0]]))
    points = np.stack(points)
    print(f"faces found in {len(points)} of {len(paths)} crops")
    print("mean (fractions of the side):", np.round(points.mean(0), 3).tolist())
    print("std:", np.round(points.std(0), 3).tolist())


if __name__ == "__main__":
    main()
