"""Writes the app's example photos: scikit-image's public-domain astronaut photo wearing rendered face masks.

    python examples/make_examples.py

Only this photo may go in the repo's pictures (never CelebA or anything made from it). The masks come from
`unmask_hf.synth.render_mask`, placed with the landmarks `FaceDetector` finds on the unmasked photo.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.data import astronaut

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unmask_hf.faces import FaceDetector  # noqa: E402
from unmask_hf.synth import render_mask  # noqa: E402

HERE = Path(__file__).parent
# name → (mask style, seed) per face; "two_faces" is the photo beside its mirror image.
EXAMPLES = {"astronaut_surgical": [("surgical", 3)], "astronaut_cloth": [("cloth", 1)],
            "two_faces": [("n95", 3), ("surgical", 5)]}


def masked_photo(photo: np.ndarray, looks: list[tuple[str, int]], detector: FaceDetector) -> np.ndarray:
    """Each detected face (left to right) wears the next (style, seed) mask."""
    faces = sorted(detector(photo), key=lambda f: f.box[0])
    if len(faces) != len(looks):
        raise RuntimeError(f"expected {len(looks)} face(s), found {len(faces)}")
    for face, (style, seed) in zip(faces, looks):
        photo = render_mask(photo, seed, style, landmarks=face.landmarks).masked
    if len(detector(photo)) != len(looks):  # an example the app cannot find faces in would be a poor example
        raise RuntimeError("a masked face is not detected: pick another style or seed")
    return photo


if __name__ == "__main__":
    torch.set_num_threads(1)
    detector = FaceDetector()
    single = astronaut()
    photos = {"astronaut_surgical": single, "astronaut_cloth": single,
              "two_faces": np.concatenate([single, single[:, ::-1]], axis=1)}
    for name, looks in EXAMPLES.items():
        path = HERE / f"{name}.jpg"
        Image.fromarray(masked_photo(photos[name], looks, detector)).save(path, quality=90)
        print(f"Wrote {path}")
