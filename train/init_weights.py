"""Write a freshly initialised (untrained) pipeline: the starting point of training, and the embedded
placeholder until trained weights exist.

    python train/init_weights.py --out unmask_hf/weights/default --seed 0 --fp16
"""

import argparse
import sys

import torch

from unmask_hf import UnmaskPipeline
from unmask_hf.models import EditGenerator, MapGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the pipeline to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    pipe = UnmaskPipeline(MapGenerator(image_size=args.image_size), EditGenerator(image_size=args.image_size), device="cpu",
                          info={"status": "untrained", "commands": ["python " + " ".join(sys.argv)]})
    print(f"wrote {pipe.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)}")


if __name__ == "__main__":
    main()
