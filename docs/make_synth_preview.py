"""Writes docs/images/synth_preview.png: every mask style on scikit-image's public-domain astronaut photo.

    python docs/make_synth_preview.py

Only this photo may go in the repo's pictures (never CelebA or anything made from it).
"""

import sys
from pathlib import Path

import torch
from PIL import Image
from skimage.data import astronaut

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unmask_hf.faces import FaceDetector, align_face  # noqa: E402
from unmask_hf.synth import MASK_STYLES, render_mask  # noqa: E402
from unmask_hf.viz import image_grid  # noqa: E402

SIZE = 160
SEEDS = {"surgical": (3, 2), "cloth": (1, 6), "n95": (3, 2), "kn95": (0, 3), "gaiter": (1, 5)}  # two looks per style

if __name__ == "__main__":
    torch.set_num_threads(1)
    photo = astronaut()
    face = FaceDetector()(photo)[0]
    crop = align_face(photo, face.landmarks, SIZE).crop
    masked, maps, labels = [Image.fromarray(crop)], [Image.fromarray(crop)], ["astronaut (aligned)"]
    for style in MASK_STYLES:
        for seed in SEEDS[style]:
            out = render_mask(crop, seed, style)
            masked.append(Image.fromarray(out.masked))
            maps.append(Image.fromarray(out.mask))
            labels.append(style)
    path = Path(__file__).parent / "images" / "synth_preview.png"
    image_grid([masked, maps], cell=SIZE, labels=labels).save(path, optimize=True)
    print(f"Wrote {path}")
