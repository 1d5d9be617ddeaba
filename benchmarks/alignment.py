"""How well a masked face is aligned: the detector's landmarks against the landmark refiner's, on faces it never saw.

    python benchmarks/alignment.py --faces ../shared/data/ffhq-256 [--count 60] [--model ID_OR_DIR]
    python benchmarks/alignment.py --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --count 300

Masks from the whole renderer (synth.WORLD_STYLES, collars, hands, degraded photos) are rendered on the folder's
identity-disjoint validation split (`training.align_data.render_align_faces`, the validation seed of
`train_aligner.py`); the truth is the detector's landmarks on the clean photo. Error
(`training.align_data.alignment_error`): how far the working crop (128 px) lands from the one the clean face
gives, in crop pixels; > 8 px moves the mask's edge by more than a cheek's width of skin. Two photo framings: the
rendered photo as is, and a close-up cut around the face (`tight_window`: brows to chin, as half the real dev
photos are), where the detector runs again on the cut.
"""

import argparse

import numpy as np

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import FaceFolder
from unmask_hf.faces import refine_landmarks
from unmask_hf.training.align_data import alignment_error, render_align_faces, tight_window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True, help="folder of clean face photos")
    parser.add_argument("--identities", help="CSV file,identity for the split (unlisted faces: one person each)")
    parser.add_argument("--count", type=int, default=60, help="validation faces to render")
    parser.add_argument("--size", type=int, default=192, help="photo side the masks are rendered at")
    parser.add_argument("--model", default=None, help="Hub id or folder (default: the embedded weights)")
    parser.add_argument("--seed", type=int, default=500000)
    args = parser.parse_args()

    pipe = UnmaskPipeline.from_pretrained(args.model)
    if pipe.landmark_refiner is None:
        parser.error(f"{args.model or 'the embedded weights'} have no landmark refiner (align/)")
    folder = FaceFolder(args.faces, args.identities)
    paths = [folder.files[i] for i in folder.split()["validation"]][: args.count]
    faces = render_align_faces(paths, 1, args.size, seed=args.seed, bare_fraction=0.0, detect=True,
                               detector=pipe.detector)

    rng = np.random.default_rng(args.seed)
    errors = {framing: {"detector": [], "refined": []} for framing in ("as rendered", "close-up")}
    for image, truth, found in zip(faces["images"], faces["landmarks"], faces["detected"]):
        close_up, close_truth = tight_window(image, truth, rng)
        close_found = [f.landmarks for f in pipe.detector(close_up)]
        for framing, photo, true, candidates in (("as rendered", image, truth, [] if np.isnan(found).any() else [found]),
                                                 ("close-up", close_up, close_truth, close_found)):
            if not candidates:
                continue
            # the face the detector found that is this one (a cut can hold a second, false one)
            landmarks = min(candidates, key=lambda lm: np.linalg.norm(lm - true, axis=1).mean())
            errors[framing]["detector"].append(alignment_error(landmarks, true))
            errors[framing]["refined"].append(alignment_error(refine_landmarks(photo, landmarks, pipe.landmark_refiner), true))

    print(f"{len(faces['images'])} masked faces at {args.size} px from {args.faces}, validation split; "
          f"weights {args.model or 'embedded'}")
    print("\n| framing | landmarks | faces found | median error (crop px) | mean | > 8 px | > 16 px |")
    print("|---|---|---|---|---|---|---|")
    for framing, rows in errors.items():
        for name, values in rows.items():
            e = np.array(values)
            if len(e):
                print(f"| {framing} | {name} | {len(e)} | {np.median(e):.2f} | {e.mean():.2f} | {(e > 8).mean():.1%} "
                      f"| {(e > 16).mean():.1%} |")


if __name__ == "__main__":
    main()
