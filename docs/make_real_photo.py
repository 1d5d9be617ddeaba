"""Regenerate docs/images/real_photo.png: the embedded pipeline on a real photo of a face without a mask (NASA's
public-domain astronaut from scikit-image, as photographed), what a user's own photo goes through.

    python docs/make_real_photo.py
"""

from pathlib import Path

from PIL import Image
from skimage.data import astronaut

from unmask_hf import UnmaskPipeline
from unmask_hf.viz import image_grid

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    photo = Image.fromarray(astronaut())
    result = UnmaskPipeline.from_pretrained()(photo)
    image_grid([[photo, result.overlay, result.image]], cell=320,
               labels=["real photo (no mask)", "the face mask found", "prediction"]).save(
        ROOT / "docs" / "images" / "real_photo.png")


if __name__ == "__main__":
    main()
