"""What the pipeline does to faces that wear no mask: it should mark nothing and change nothing.

    python benchmarks/bare_faces.py --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv [--model ID_OR_DIR] [--count 200]

Runs `UnmaskPipeline.predict` on the clean faces of the identity-disjoint validation split (the one training holds
out) and prints the mean share of each crop marked as mask, how many faces get more than 2 % marked, and how far the
composited output is from the untouched face (median PSNR; higher = less changed).
"""

import argparse

import numpy as np
import torch

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import FaceFolder
from unmask_hf.io import images_to_tensor, load_image, tensor_to_arrays
from unmask_hf.metrics import psnr
from unmask_hf.models import composite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True)
    parser.add_argument("--identities", required=True)
    parser.add_argument("--model", default=None, help="Hub id or folder (default: the embedded weights)")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    faces = FaceFolder(args.faces, args.identities)
    validation = [faces.files[i] for i in faces.split()["validation"]]
    pipe = UnmaskPipeline.from_pretrained(args.model, device="cpu")
    size = pipe.image_size
    crops = images_to_tensor([load_image(p).resize((size, size)) for p in validation[:args.count]])
    areas, changes = [], []
    for batch in crops.split(50):
        maps, generated = pipe.predict(batch)
        areas.append(maps.mean(dim=(1, 2, 3)))
        outputs = tensor_to_arrays(composite(batch, generated, maps))
        changes += [psnr(o, i) for o, i in zip(outputs, tensor_to_arrays(batch))]  # inf: unchanged
    area = torch.cat(areas)
    print(f"{len(crops)} bare validation faces: mean share of the crop marked {area.mean():.3f}; "
          f"faces with more than 2 % marked: {(area > 0.02).float().mean():.1%}; "
          f"output vs input: median PSNR {np.median(changes):.2f} dB (inf = unchanged)")


if __name__ == "__main__":
    main()
