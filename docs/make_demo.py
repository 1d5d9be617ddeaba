"""Regenerate docs/images/demo.png: the embedded pipeline on the example photos (public-domain astronaut only).

    python docs/make_demo.py
"""

from pathlib import Path

from unmask_hf import UnmaskPipeline
from unmask_hf.viz import image_grid

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    pipe = UnmaskPipeline.from_pretrained()
    rows = []
    for name in ("astronaut_surgical.jpg", "astronaut_cloth.jpg", "two_faces.jpg"):
        result = pipe(ROOT / "examples" / name)
        for face in result.faces:
            rows.append([face.aligned_input, face.aligned_map, face.aligned_output])
    image_grid(rows, cell=192, labels=["input (aligned face)", "mask found", "prediction"]).save(
        ROOT / "docs" / "images" / "demo.png")


if __name__ == "__main__":
    main()
