"""The fill as users get it: masks rendered on faces at the photo's own size, through `pipe(photo)` (detection,
the working-size models, paste-back), measured against the clean face at that size.

    python benchmarks/photo_fill.py --faces ../shared/data/ffhq-256 [--size 256] [--count 60] [--model ID_OR_DIR]
                                    [--cut-chin 0.2] [--no-fill-below] [--no-landmark-refiner]

The faces are the folder's identity-disjoint validation split (`FaceFolder.split`, the people `train.py --faces`
holds out of training; `--split all` takes every face), so the models are measured on faces they never saw.

Four rows: the map module's own mask (what `pipe(photo)` does), the true mask given as the user's mask (only the
fill and the paste), and two references on the same faces: the masked input left as it is, and OpenCV's Telea
inpainting given the true mask (issue 14's targets are set against it). Columns (means over the faces the detector
found): PSNR and SSIM of the whole photo, PSNR in the mask's bounding box, the detail ratio in the true mask (1 =
as sharp as the real face; the model works at a smaller size, so the paste upscales), the colour error (mean over
channels of |mean of the output - mean of the truth| inside the true mask, 0-255), the seam error (mean |output -
truth| on the 2 px ring just inside the pasted region's edge, `result.changed`, minus the same just outside it,
0-255: what the edge adds) and the map's IoU with the true mask at the photo's size (`result.mask`; the pasted
region, grown over the rim, in the next column).
"""

import argparse
import time

import numpy as np

from unmask_hf import UnmaskPipeline
from unmask_hf.baselines import inpaint
from unmask_hf.blend import dilate, erode
from unmask_hf.dataset import FaceFolder
from unmask_hf.io import load_image
from unmask_hf.metrics import image_metrics, mask_metrics
from unmask_hf.synth import make_sample


def _ring(region: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The `pixels`-wide rings just inside and just outside a region's edge."""
    return region & ~erode(region, pixels), dilate(region, pixels) & ~region


def measure(output: np.ndarray, truth: np.ndarray, true_mask: np.ndarray, found: np.ndarray,
            pasted: np.ndarray) -> dict[str, float]:
    m = image_metrics(output, truth, true_mask)
    out, gt = output.astype(np.float64), truth.astype(np.float64)
    colour = float(np.abs(out[true_mask].mean(0) - gt[true_mask].mean(0)).mean())
    inside, outside = _ring(pasted, 2)
    seam = float(np.abs(out - gt)[inside].mean() - np.abs(out - gt)[outside].mean()) if inside.any() and outside.any() else np.nan
    return {"psnr": m["psnr"], "ssim": m["ssim"], "psnr_bbox": m["psnr_bbox"], "detail_ratio": m["detail_ratio"],
            "colour_error": colour, "seam_error": seam, "map_iou": mask_metrics(found, true_mask)["iou"],
            "pasted_iou": mask_metrics(pasted, true_mask)["iou"]}


def outputs(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pipeline result as arrays: (the output photo, the mask found, the region pasted)."""
    return np.asarray(result.image), np.asarray(result.mask) > 127, np.asarray(result.changed) > 127


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True, help="folder of clean face photos")
    parser.add_argument("--size", type=int, default=256, help="photo side the masks are rendered at")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--model", default=None, help="Hub id or folder (default: the embedded weights)")
    parser.add_argument("--split", choices=["validation", "test", "all"], default="validation",
                        help="which faces: a split training holds out (default), or all")
    parser.add_argument("--identities", help="CSV file,identity for the split (unlisted faces: one person each)")
    parser.add_argument("--cut-chin", type=float, default=0.0,
                        help="drop this share of each photo's bottom rows: tight crops, as many real photos are")
    parser.add_argument("--no-landmark-refiner", action="store_true",
                        help="align faces by the detector's landmarks alone (UnmaskPipeline.landmark_refiner = None)")
    parser.add_argument("--no-fill-below", action="store_true",
                        help="don't fill where the map runs off the face crop's bottom edge (UnmaskPipeline.fill_below)")
    args = parser.parse_args()
    folder = FaceFolder(args.faces, args.identities)
    chosen = range(len(folder)) if args.split == "all" else folder.split()[args.split]
    pipe = UnmaskPipeline.from_pretrained(args.model, device="cpu")
    pipe.fill_below = not args.no_fill_below
    if args.no_landmark_refiner:
        pipe.landmark_refiner = None
    rows: dict[str, list[dict]] = {"map module's mask": [], "true mask as user mask": [],
                                   "reference: masked input": [], "reference: Telea given the true mask": []}
    missed, refused, seconds = 0, 0, 0.0
    keep = round(args.size * (1 - args.cut_chin))  # rows of each photo kept
    for i, path in enumerate([folder.files[j] for j in chosen][: args.count]):
        sample = make_sample(load_image(path), seed=i, size=args.size)
        truth, masked = np.asarray(sample["image"])[:keep], np.asarray(sample["masked"])[:keep]
        true_mask = np.asarray(sample["mask"])[:keep] > 127
        tick = time.perf_counter()
        found = pipe(masked)
        seconds += time.perf_counter() - tick
        if not found.faces:
            missed += 1
            continue
        given = outputs(pipe(masked, mask=true_mask))
        refused += not given[1].any()  # a drawn mask over the eyes is left unchanged
        nothing = np.zeros_like(true_mask)
        for name, (output, found_map, pasted) in zip(rows, (
                outputs(found), given, (masked, nothing, nothing),
                (inpaint(masked, true_mask, "telea"), true_mask, true_mask))):
            rows[name].append(measure(output, truth, true_mask, found_map, pasted))
    n = len(rows["map module's mask"])
    keys = list(next(iter(rows.values()))[0])
    print(f"{n} faces at {args.size} px from {args.faces}, {args.split} split, bottom {args.cut_chin:.0%} cut "
          f"(detector missed {missed}); working size {pipe.image_size}; fill below the crop {pipe.fill_below}; landmark "
          f"refiner {pipe.landmark_refiner is not None}; pipe(photo) "
          f"{1000 * seconds / max(n + missed, 1):.0f} ms per photo; true masks refused as covering the whole face "
          f"(photo left unchanged, counted in the means): {refused}")
    print("| mask | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, values in rows.items():
        cells = [np.array([v[k] for v in values], dtype=float) for k in keys]  # seams: none where nothing was pasted
        print(f"| {name} | " + " | ".join(f"{c[~np.isnan(c)].mean():.3f}" if (~np.isnan(c)).any() else "–"
                                         for c in cells) + " |")


if __name__ == "__main__":
    main()
