"""Real photos of masked people (no ground truth): in how many is a face found, how fast, and what users see.

    python benchmarks/real_photos.py                                   # ../shared/data/real-masked-dev, all photos
    python benchmarks/real_photos.py --sheet eval/real/sheet.png --limit 48     # + photo | removed | result sheet
    python benchmarks/real_photos.py --sheet eval/real/ab.png --limit 48 --compare DIR  # other weights beside
    python benchmarks/real_photos.py --sheet eval/real/below.png --compare-no-fill-below  # fill_below off beside
    python benchmarks/real_photos.py --families 0 --photos real_0033,real_0385 --zoom --sheet eval/real/z.png  # faces up close
    python benchmarks/real_photos.py --faces-sheet eval/real/faces.png          # every face found, to count false ones
    python benchmarks/real_photos.py --families 0                                # faces found only
    python benchmarks/real_photos.py --families 0 --masks --model A --compare B  # masks found, two weights

It also prints the map's IoU on masks of every appearance family (synth.WORLD_STYLES) rendered on the first
`--families` faces of the CelebA identity-disjoint validation split, plain, with a mask-coloured collar under
the chin, with a hand, glasses, a cap or hair in front of the mask (spill onto hard negatives) and worn high
(up the nose bridge: synth.HIGH_RAISE), marking the
families the weights' map module was never trained on (those not in pipeline.json's `map_training_styles`; weights
without it saw synth.MASK_STYLES): how the map does on masks it has never seen, next to how it does on real photos.

`--masks` runs the whole pipeline on every photo and counts the faces on which the map found no mask at all
("No face mask found"), with the median share of the aligned crop the map marks: on real photos a map module
can lose recall while its IoU on rendered validation masks rises, and a user then gets nothing back.

Every photo there shows at least one masked face, so "faces found" is the share of photos with at least one face
(the plain MTCNN pass, and after the detector's retries: faces.RETRIES, run when one pass finds no face it is sure
of). Each photo's detection time is printed beside
OpenCV's Telea inpainting of a fixed lower-middle rectangle of the same photo, timed in the same run, because this
machine's speed varies from day to day. The sheets are research-only data: never commit them.
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from unmask_hf import UnmaskPipeline
from unmask_hf.evaluation import map_iou_by_style, real_contact_sheet
from unmask_hf.faces import FaceDetector, align_face, confidence
from unmask_hf.io import find_images, load_image
from unmask_hf.dataset import FaceFolder
from unmask_hf.synth import MASK_STYLES, WORLD_STYLES
from unmask_hf.viz import image_grid

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEV = SHARED / "data" / "real-masked-dev"
CELEBA = SHARED / "data" / "celeba-faces"


def telea_ms(photo: np.ndarray) -> float:
    """The reference: OpenCV Telea inpainting of the lower-middle sixth of the photo."""
    h, w = photo.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2: 2 * h // 3, w // 3: 2 * w // 3] = 255
    start = time.perf_counter()
    cv2.inpaint(photo, mask, 3, cv2.INPAINT_TELEA)
    return 1000 * (time.perf_counter() - start)


# scikit-image's sample images without a face (camera and astronaut have one; lfw_subset is faces).
FACE_FREE = ("binary_blobs", "brick", "cat", "cell", "checkerboard", "clock", "coffee", "coins", "colorwheel", "grass",
             "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
             "retina", "rocket", "shepp_logan_phantom", "text")


def face_free_photos() -> dict[str, np.ndarray]:
    """FACE_FREE as uint8 RGB: the detector's false faces on photos with none to find."""
    import skimage.data

    photos = {}
    for name in FACE_FREE:
        x = np.asarray(getattr(skimage.data, name)())
        if x.dtype != np.uint8:  # bool masks and float phantoms
            x = x.astype(np.float64)
            x = (255 * (x - x.min()) / max(x.max() - x.min(), 1e-9)).astype(np.uint8)
        photos[name] = np.ascontiguousarray(np.stack([x] * 3, -1) if x.ndim == 2 else x[..., :3])
    return photos


def family_table(pipe: UnmaskPipeline, count: int) -> None:
    """Map IoU per appearance family on rendered masks (validation people: never trained on)."""
    faces = FaceFolder(CELEBA / "train", CELEBA / "identities.csv")
    files = [faces.files[i] for i in faces.split()["validation"][:count]]
    trained = set(pipe.info.get("map_training_styles", MASK_STYLES))
    plain, collar, occluder, high = (map_iou_by_style(pipe, files, WORLD_STYLES, **variant)
                                     for variant in ({}, {"collar": True}, {"occluder": True}, {"high": True}))
    print(f"map IoU by appearance family: {len(files)} CelebA validation faces each, masks rendered by unmask_hf.synth\n")
    print("| family | in the map's training | IoU | IoU, with a collar under the chin | IoU, a hand, glasses, cap or hair in "
          "front | IoU, worn high (up the nose bridge) |")
    print("|---|---|---|---|---|---|")
    for style in WORLD_STYLES:
        print(f"| {style} | {'yes' if style in trained else '**no**'} | {plain[style]:.3f} | {collar[style]:.3f} "
              f"| {occluder[style]:.3f} | {high[style]:.3f} |")
    print()


def mask_counts(pipe: UnmaskPipeline, photos: list[Path]) -> tuple[int, list[str], list[float]]:
    """Run `pipe(photo)` on every photo: (faces processed, a photo's name for each face on which no mask was found,
    the share of each face's aligned crop its map marks)."""
    faces, missed, shares = 0, [], []
    for photo in tqdm(photos, desc="masks found", unit="photo"):
        result = pipe(load_image(photo))
        faces += len(result.faces)
        found = [float(np.mean(np.asarray(face.aligned_map) > 0)) for face in result.faces]
        missed += [photo.stem for share in found if share == 0]  # the faces noted "No face mask found"
        shares += found
    return faces, missed, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default=str(DEV), help=f"photos (default: {DEV})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted by name)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="for --sheet, --families and --masks: Hub id or folder "
                        "(default: the embedded weights)")
    parser.add_argument("--sheet", help="write a photo | what was removed | result contact sheet of the photos here")
    parser.add_argument("--compare", help="other weights (Hub id or folder): with --sheet their map and result "
                        "beside --model's on each row, with --masks a row of the table")
    parser.add_argument("--zoom", action="store_true",
                        help="with --sheet: a row per face found, zoomed on it (evaluation.face_window)")
    parser.add_argument("--photos", help="only these photos: names without extension, comma-separated "
                        "(real_0033,real_0385)")
    parser.add_argument("--compare-no-fill-below", action="store_true",
                        help="with --sheet: the same weights with UnmaskPipeline.fill_below off beside them")
    parser.add_argument("--faces-sheet", help="write every face found (aligned crops, numbered by photo) here")
    parser.add_argument("--families", type=int, default=200, help="validation faces per appearance family (0: skip)")
    parser.add_argument("--masks", action="store_true", help="run the pipeline on every photo: faces with no mask "
                        "found, share of the crop mapped (also for --compare's weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = UnmaskPipeline.from_pretrained(args.model) if args.families or args.sheet or args.masks else None
    if args.families:
        family_table(pipe, args.families)

    photos = find_images([args.folder])
    if args.photos:
        wanted = set(args.photos.split(","))
        photos = [p for p in photos if p.stem in wanted]
        if len(photos) < len(wanted):
            raise SystemExit(f"error: not in {args.folder}: {', '.join(sorted(wanted - {p.stem for p in photos}))}")
    photos = photos[: args.limit]
    if not photos:
        raise SystemExit(f"error: no photos in {args.folder}")
    plain, detector = FaceDetector(retries=()), FaceDetector()
    rows, crops, missed = [], [], []
    for i, path in enumerate(photos):
        photo = np.asarray(load_image(path))
        start = time.perf_counter()
        first = plain(photo)
        plain_ms = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()  # timed as users get it: the first pass again, then any retries
        faces = detector(photo)
        full_ms = 1000 * (time.perf_counter() - start)
        retried = confidence(first) < detector.sure  # the detector's own rule for looking again
        rows.append((bool(first), retried, len(faces), plain_ms, full_ms, telea_ms(photo)))
        if not faces:
            missed.append(path.name)
        for face in faces:
            crop = Image.fromarray(align_face(photo, face.landmarks, 64).crop)
            crops.append((crop, f"{i}" + ("r" if retried else "")))

    found_plain, retried, counts, plain_ms, full_ms, ref_ms = (np.array(c) for c in zip(*rows))
    n = len(photos)
    print(f"{n} photos from {args.folder}\n")
    print("| detector | photos with a face | faces found | median ms / photo | p95 ms | Telea reference, median ms |")
    print("|---|---|---|---|---|---|")
    print(f"| MTCNN, one pass | {found_plain.sum()} / {n} ({found_plain.mean():.1%}) | — | {np.median(plain_ms):.1f} | "
          f"{np.percentile(plain_ms, 95):.1f} | {np.median(ref_ms):.1f} |")
    print(f"| MTCNN + retries (faces.RETRIES) | {(counts > 0).sum()} / {n} ({(counts > 0).mean():.1%}) | {counts.sum()} | "
          f"{np.median(full_ms):.1f} | {np.percentile(full_ms, 95):.1f} | {np.median(ref_ms):.1f} |")
    if retried.any():
        print(f"\nphotos that needed the retries (no face, or none scoring {detector.sure}, in one pass): "
              f"{retried.sum()}, of which {(~found_plain).sum()} with no face; after them {(counts[retried] > 0).sum()} "
              f"have one; their median time {np.median(full_ms[retried]):.0f} ms")
    print(f"photos with more than one face: {(counts > 1).sum()}")
    print("no face found in: " + (", ".join(missed) or "none"))
    free = {name: len(detector(photo)) for name, photo in face_free_photos().items()}
    print(f"face-free scikit-image photos with a face found: {sum(n > 0 for n in free.values())} / {len(free)} "
          f"({', '.join(name for name, n in free.items() if n) or 'none'})")

    if args.masks:
        print("\n| weights | faces | faces with no mask found | median share of the crop mapped | 10th percentile |")
        print("|---|---|---|---|---|")
        runs = [(args.model or "embedded", pipe)]
        if args.compare:
            runs.append((args.compare, UnmaskPipeline.from_pretrained(args.compare)))
        misses = {}
        for name, candidate in runs:
            faces, misses[name], shares = mask_counts(candidate, photos)
            print(f"| {name} | {faces} | {len(misses[name])} (in {len(set(misses[name]))} photos) | "
                  f"{np.median(shares):.3f} | {np.percentile(shares, 10):.3f} |")
        for name, missed in misses.items():
            print(f"no mask found ({name}): " + (", ".join(sorted(set(missed))) or "none"))

    if args.faces_sheet:  # numbered by photo; "r": the retries ran. Count the crops that are not faces.
        per_row = 16
        cells = [c for c, _ in crops]
        grid = image_grid([cells[k:k + per_row] for k in range(0, len(cells), per_row)], cell=64)
        Path(args.faces_sheet).parent.mkdir(parents=True, exist_ok=True)
        grid.save(args.faces_sheet)
        print(f"wrote {args.faces_sheet}: {len(cells)} faces, in photo order: " + " ".join(label for _, label in crops))
    if args.sheet:
        compare = UnmaskPipeline.from_pretrained(args.compare) if args.compare else None
        if args.compare_no_fill_below:
            compare = UnmaskPipeline.from_pretrained(args.model)
            compare.fill_below = False
        sheet, notes = real_contact_sheet(pipe, photos, compare=compare, zoom=args.zoom)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)
        print("\n".join(notes) + f"\nwrote {args.sheet} ({len(photos)} photos)")


if __name__ == "__main__":
    main()
