"""Writes docs/images/synth_preview.png (every default mask style) and docs/images/synth_world_preview.png (the
opt-in families, hard negatives: a collar, a hand, glasses, sunglasses, a cap, hair; a degraded sample) on scikit-image's
public-domain astronaut photo.

    python docs/make_synth_preview.py

Only this photo may go in the repo's pictures (never CelebA or anything made from it).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.data import astronaut

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unmask_hf.faces import FaceDetector, align_face  # noqa: E402
from unmask_hf.synth import EXTRA_STYLES, MASK_STYLES, add_occluder, make_sample, render_mask  # noqa: E402
from unmask_hf.viz import image_grid  # noqa: E402

SIZE = 160
SEEDS = {"surgical": (3, 2), "cloth": (1, 6), "n95": (3, 2), "kn95": (0, 3), "gaiter": (1, 5)}  # two looks per style
WORLD_SEEDS = {"printed": (12, 2, 4), "knit": (0, 4), "respirator": (1, 5), "bandana": (3, 6)}
OCCLUDER_SEEDS = {"hand": ("hand", 0), "glasses": ("glasses", 1), "sunglasses": ("glasses", 2), "cap": ("cap", 2),
                  "hair": ("hair", 3)}


def sheet(crop, cells, path: Path) -> None:
    """cells: (label, masked, map) triples → a two-row sheet (masked faces over their maps) at `path`."""
    row = [Image.fromarray(crop)] + [Image.fromarray(m) for _, m, _ in cells]
    maps = [Image.fromarray(crop)] + [Image.fromarray(k) for _, _, k in cells]
    labels = ["astronaut (aligned)"] + [label for label, _, _ in cells]
    image_grid([row, maps], cell=SIZE, labels=labels).save(path, optimize=True)
    print(f"Wrote {path}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    photo = astronaut()
    face = FaceDetector()(photo)[0]
    crop = align_face(photo, face.landmarks, SIZE).crop
    images = Path(__file__).parent / "images"
    cells = [(style, out.masked, out.mask) for style in MASK_STYLES for out in
             (render_mask(crop, seed, style) for seed in SEEDS[style])]
    sheet(crop, cells, images / "synth_preview.png")
    cells = [(style, out.masked, out.mask) for style in EXTRA_STYLES for out in
             (render_mask(crop, seed, style) for seed in WORLD_SEEDS[style])]
    for label, options in (("collar (not in map)", {"hard_negative_probability": 1.0}),
                           ("degraded", {"degrade_probability": 1.0})):
        sample = make_sample(crop, 7, SIZE, "cloth", **options)
        cells.append((label, np.asarray(sample["masked"]), np.asarray(sample["mask"])))
    for label, (kind, seed) in OCCLUDER_SEEDS.items():  # in front of the mask: in the photo, out of the map
        out = render_mask(crop, seed, "surgical" if kind == "hand" else "cloth")
        _, masked, mask = add_occluder(crop, out.masked, out.mask, np.random.default_rng(seed), kind=kind)
        cells.append((f"{label} (not in map)", masked, mask))
    sheet(crop, cells, images / "synth_world_preview.png")
