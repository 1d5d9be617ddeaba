"""Measures the mean FaceDetector landmarks and box on aligned training crops: faces.TEMPLATE_LANDMARKS, TEMPLATE_BOX.

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
    points, boxes = [], []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector(image)
        if faces:  # the largest face is the crop's subject
            side = np.array([image.shape[1], image.shape[0]])
            points.append(faces[0].landmarks / side)
            boxes.append(np.array(faces[0].box) / np.tile(side, 2))
    points, boxes = np.stack(points), np.stack(boxes)
    print(f"faces found in {len(points)} of {len(paths)} crops")
    print("landmarks, mean (fractions of the side):", np.round(points.mean(0), 3).tolist())
    print("landmarks, std:", np.round(points.std(0), 3).tolist())
    print("box x0, y0, x1, y1, mean:", np.round(boxes.mean(0), 3).tolist(), "std:", np.round(boxes.std(0), 3).tolist())


if __name__ == "__main__":
    main()
