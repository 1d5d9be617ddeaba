"""Evaluation: the pipeline and the baselines people would use instead, on the same samples, with the same metrics.

    data = EvalData.from_dataset(load_masked_faces("org/masked-faces", "test"), pipe.image_size, "org/masked-faces [test]")
    summary, grid = evaluate(pipe, data, limit=200, encoder=IdentityEncoder(), fd_network=load_perceptual_network(path))
    write_report(summary, grid, "eval/", command="python train/evaluate.py ...")

Methods (METHODS): the clean ground truth (ceiling of the identity scores) and the masked input (floor); ours
(`pipe.predict` on the aligned crops: the code path users get); ours given the true mask (separates map errors
from edit errors); OpenCV's Telea and Navier-Stokes inpainting given the true mask (an oracle advantage) and
given our predicted map. Each gets the image metrics, the mask metrics (methods with our map), the identity
scores and FD-VGG of `unmask_hf.metrics`.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from . import metrics
from .baselines import INPAINT_METHODS, inpaint
from .dataset import FaceFolder
from .io import load_image, save_prediction_png, tensor_to_arrays
from .losses import VGGFeatures
from .models import composite
from .pipeline import UnmaskPipeline
from .training.data import PairedFaces, to_model_inputs
from .viz import image_grid

METHODS = {
    "ground_truth": "Clean ground truth (identity ceiling)",
    "masked_input": "Masked input (floor)",
    "ours": "Ours",
    "ours_true_mask": "Ours + true mask (oracle)",
    "telea_true_mask": "OpenCV Telea + true mask (oracle)",
    "ns_true_mask": "OpenCV Navier–Stokes + true mask (oracle)",
    "telea_our_map": "OpenCV Telea + our map",
    "ns_our_map": "OpenCV Navier–Stokes + our map",
}
OUR_MAP_METHODS = ("ours", "telea_our_map", "ns_our_map")  # methods whose region is our predicted map
PSNR_CAP = 100.0  # dB: identical images have infinite PSNR, which would make means meaningless
# Table columns: metric key, header, number format.
COLUMNS = [
    ("psnr", "PSNR ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.3f}"), ("psnr_bbox", "PSNR box ↑", "{:.2f}"),
    ("ssim_bbox", "SSIM box ↑", "{:.3f}"), ("l1_mask", "L1 mask ↓", "{:.3f}"),
    ("detail_ratio", "Detail ratio →1", "{:.2f}"), ("iou", "IoU ↑", "{:.3f}"),
    ("dice", "Dice ↑", "{:.3f}"), ("pixel_accuracy", "Pixel acc. ↑", "{:.3f}"),
    ("identity_distance", "ID dist. to own GT ↓", "{:.3f}"), ("verification_distance", "Verif. dist. ↓", "{:.3f}"),
    ("verification_match_rate", "Verif. match ↑", "{:.1%}"),
]


@dataclass
class EvalData:
    """Samples to evaluate (ground truth, masked input and true mask per index, via `PairedFaces`) and who is in them."""

    samples: PairedFaces
    identities: list[str | None]
    source_ids: list[str]
    description: str

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def from_dataset(cls, data, image_size: int, description: str) -> "EvalData":
        """A split of a built dataset (`dataset.load_masked_faces`)."""
        identities = list(data["identity"]) if "identity" in data.column_names else [None] * len(data)
        return cls(PairedFaces(data, image_size), identities, list(data["source_id"]), description)

    @classmethod
    def from_files(cls, files: list[Path], identities: list[str | None], image_size: int, seed: int,
                   description: str) -> "EvalData":
        """Plain faces whose masks are rendered on the fly; with the training run's validation files and
        seed (train/train.py uses its seed + 1), these are the samples training validated on."""
        return cls(PairedFaces(files, image_size, seed=seed), identities, [str(f) for f in files], description)

    @classmethod
    def from_face_folder(cls, folder: str | Path, identities: str | Path | None, val_fraction: float,
                         image_size: int, seed: int) -> "EvalData":
        """The validation split of a face folder as `train/train.py --faces` draws it (`FaceFolder.split`); with the
        run's seed (train.py validates with its seed + 1) the masks are the ones training validated on too."""
        faces = FaceFolder(folder, identities)
        val = faces.split(val_fraction).get("validation", [])
        if not val:
            raise ValueError(f"{folder} gives no validation faces (val_fraction {val_fraction})")
        return cls.from_files([faces.files[i] for i in val], [faces.identities[i] for i in val], image_size, seed,
                              f"{folder}: identity-disjoint validation split of training "
                              f"({len(val)} faces, masks rendered on the fly with seed {seed})")


def _stats(values: list[float]) -> dict:
    v = np.array([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "median": None, "count": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "count": int(v.size)}


def _embed_truths(encoder: metrics.IdentityEncoder, data: EvalData, indices: list[int], cache: dict) -> None:
    """Identity descriptors of the ground truth of `indices`, cached by source id (faces repeat with several masks)."""
    todo = {data.source_ids[j]: j for j in indices if data.source_ids[j] not in cache}
    for source_id, j in tqdm(todo.items(), desc="identity gallery", unit="face", disable=not todo):
        cache[source_id] = encoder.embed(data.samples[j]["image"].permute(1, 2, 0).numpy())


def run_methods(pipe: UnmaskPipeline, masked_t: torch.Tensor, mask_t: torch.Tensor, masked: np.ndarray,
                true_mask: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Every method but the ground truth on one batch: (outputs N×S×S×3 uint8 per method, our map N×S×S bool,
    seconds per method). masked_t / mask_t: the batch as model tensors; masked / true_mask: the same as arrays."""
    outputs, seconds = {"masked_input": masked}, {"masked_input": 0.0}
    # Ours exactly as UnmaskPipeline._run does it for users: the map, then the edit given that map.
    tick = time.perf_counter()
    maps = pipe.predict_maps(masked_t)
    our_map = maps[:, 0].cpu().numpy() > 0.5
    map_seconds = time.perf_counter() - tick
    for method, given in (("ours", {"maps": maps}), ("ours_true_mask", {"masks": mask_t})):
        tick = time.perf_counter()
        filled, generated = pipe.predict(masked_t, **given)
        outputs[method] = tensor_to_arrays(composite(masked_t, generated, filled))
        seconds[method] = time.perf_counter() - tick + (map_seconds if method == "ours" else 0.0)
    for method in INPAINT_METHODS:
        for region, masks, extra in (("true_mask", true_mask, 0.0), ("our_map", our_map, map_seconds)):
            tick = time.perf_counter()
            outputs[f"{method}_{region}"] = np.stack([inpaint(m, k, method) for m, k in zip(masked, masks)])
            seconds[f"{method}_{region}"] = time.perf_counter() - tick + extra
    return outputs, our_map, seconds


def _verify(encoder: metrics.IdentityEncoder, data: EvalData, n: int, embeddings: dict[str, list[np.ndarray]],
            truth_embeddings: dict[str, np.ndarray], add) -> int:
    """Verification of the first n samples against the person's other photos in `data`; returns how many had some."""
    people = {data.identities[i] for i in range(n)} - {None}
    in_gallery = [j for j in range(len(data)) if data.identities[j] in people]
    _embed_truths(encoder, data, in_gallery, truth_embeddings)
    gallery: dict[str, dict[str, np.ndarray]] = {}
    for j in in_gallery:
        gallery.setdefault(data.identities[j], {})[data.source_ids[j]] = truth_embeddings[data.source_ids[j]]
    verified = 0
    for i in range(n):
        others = [e for s, e in gallery.get(data.identities[i], {}).items() if s != data.source_ids[i]]
        if not others:
            continue  # no identity, or the only photo of this person in the split
        verified += 1
        candidates = {"ground_truth": truth_embeddings[data.source_ids[i]]} | {m: e[i] for m, e in embeddings.items()}
        for method, e in candidates.items():
            scores = metrics.verification_scores(e, np.stack(others))
            add(method, "verification_distance", scores["mean_distance"])
            add(method, "verification_match_rate", scores["match_rate"])
    return verified


@torch.inference_mode()
def evaluate(pipe: UnmaskPipeline, data: EvalData, limit: int | None = None, batch_size: int = 16,
             encoder: metrics.IdentityEncoder | None = None, fd_network: VGGFeatures | None = None,
             grid_rows: int = 8) -> tuple[dict, Image.Image]:
    """Run every method on the first `limit` samples; returns (summary as written to metrics.json, sample grid).

    encoder=None skips the identity scores, fd_network=None skips FD-VGG. Verification compares each output with
    the ground truth of the person's OTHER photos anywhere in `data` (not only the first `limit`).
    """
    n = len(data) if limit is None else min(limit, len(data))
    if n < 1:
        raise ValueError("no samples to evaluate")
    values = {m: {} for m in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    features = {m: [] for m in METHODS}
    embeddings = {m: [] for m in METHODS if m != "ground_truth"}
    truth_embeddings: dict[str, np.ndarray] = {}
    grid = []

    def add(method: str, key: str, value: float) -> None:
        values[method].setdefault(key, []).append(value)

    for start in tqdm(range(0, n, batch_size), desc="evaluating", unit="batch"):
        items = [data.samples[i] for i in range(start, min(start + batch_size, n))]
        batch = default_collate(items)
        _, masked_t, mask_t = to_model_inputs(batch, pipe.device)
        truth, masked = (batch[k].permute(0, 2, 3, 1).numpy() for k in ("image", "masked"))
        true_mask = batch["mask"][:, 0].numpy() > 0
        outputs, our_map, batch_seconds = run_methods(pipe, masked_t, mask_t, masked, true_mask)
        outputs["ground_truth"] = truth
        for method, value in batch_seconds.items():
            seconds[method] += value

        for i in range(len(items)):
            segmentation = metrics.mask_metrics(our_map[i], true_mask[i])
            for method, images in outputs.items():
                if method == "ground_truth":
                    continue
                quality = metrics.image_metrics(images[i], truth[i], true_mask[i])
                quality["psnr"], quality["psnr_bbox"] = min(quality["psnr"], PSNR_CAP), min(quality["psnr_bbox"], PSNR_CAP)
                for key, value in quality.items():
                    add(method, key, value)
                if method in OUR_MAP_METHODS:
                    for key, value in segmentation.items():
                        add(method, key, value)
            if encoder is not None:
                source_id = data.source_ids[start + i]
                if source_id not in truth_embeddings:
                    truth_embeddings[source_id] = encoder.embed(truth[i])
                own = truth_embeddings[source_id]
                for method in embeddings:
                    e = encoder.embed(outputs[method][i])
                    embeddings[method].append(e)
                    add(method, "identity_distance", metrics.identity_distance(e, own))
        if fd_network is not None:
            for method, images in outputs.items():
                features[method].append(metrics.vgg_features(images, fd_network))
        for i in range(min(len(items), grid_rows - len(grid))):
            grid.append([Image.fromarray(masked[i]), Image.fromarray(our_map[i].astype(np.uint8) * 255),
                         Image.fromarray(outputs["ours"][i]), Image.fromarray(outputs["telea_true_mask"][i]),
                         Image.fromarray(truth[i])])

    notes = []
    verified = 0
    if encoder is not None:
        verified = _verify(encoder, data, n, embeddings, truth_embeddings, add)
        if verified == 0:
            notes.append("Verification skipped: no evaluated person has another photo in the split (identities unknown?).")
    else:
        notes.append("Identity scores skipped (--no-identity, or dlib not installed: pip install 'unmask-hf[eval]').")
    if fd_network is None:
        notes.append("FD-VGG skipped (--no-fd, or no perceptual network: pass --perceptual-weights PATH).")
    elif n < 2:
        notes.append("FD-VGG skipped: it needs at least 2 samples.")

    reference = np.concatenate(features["ground_truth"]) if fd_network is not None and n >= 2 else None
    summary_methods = {}
    for method, label in METHODS.items():
        fd = None
        if reference is not None and method != "ground_truth":
            fd = metrics.frechet_distance(np.concatenate(features[method]), reference)
        summary_methods[method] = {
            "label": label,
            "count": n,
            "seconds_per_image": None if method == "ground_truth" else seconds[method] / n,
            "metrics": {key: _stats(v) for key, v in values[method].items()},
            "fd_vgg": fd,
        }
    summary = {
        "model": pipe.info,
        "data": data.description,
        "samples": n,
        "verification_samples": verified,
        "image_size": pipe.image_size,
        "batch_size": batch_size,
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
        "fd_network": getattr(fd_network, "arch", None),
        "psnr_cap_db": PSNR_CAP,
        "identity_threshold": metrics.SAME_PERSON_THRESHOLD,
        "notes": notes,
        "methods": summary_methods,
    }
    labels = ["masked", "predicted map", "ours", "Telea (true mask)", "ground truth"]
    return summary, image_grid(grid, labels=labels)


def results_table(summary: dict) -> str:
    """The markdown table of a summary (means; medians are in metrics.json), with the notes that explain it."""
    methods = summary["methods"]
    shown = [c for c in COLUMNS if any(m["metrics"].get(c[0], {}).get("count") for m in methods.values())]
    with_fd = any(m["fd_vgg"] is not None for m in methods.values())
    header = ["Method"] + [h for _, h, _ in shown] + (["FD-VGG ↓"] if with_fd else []) + ["ms / image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in methods.items():
        cells = [f"**{m['label']}**" if name == "ours" else m["label"]]
        for key, _, fmt in shown:
            mean = m["metrics"].get(key, {}).get("mean")
            cells.append("—" if mean is None else fmt.format(mean))
        if with_fd:
            cells.append("—" if m["fd_vgg"] is None else f"{m['fd_vgg']:,.1f}")
        cells.append("—" if m["seconds_per_image"] is None else f"{m['seconds_per_image'] * 1000:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    n, status = summary["samples"], summary["model"].get("status", "unknown")
    notes = [
        f"Data: {summary['data']}; {n} samples at {summary['image_size']} px. Means over the samples (medians in "
        f"metrics.json). Model weights: {status}.",
        "**Oracle** rows are given the ground-truth mask, which real users never have: an advantage over Ours, which "
        "finds the mask itself. Ours + true mask separates map errors from edit errors; the *our map* rows are "
        "given Ours' predicted map.",
        f"PSNR/SSIM on the whole image and in the true mask's bounding box (box); L1 over the true mask's pixels "
        f"(intensities 0–1); PSNR capped at {PSNR_CAP:.0f} dB. *Detail ratio*: std of the Laplacian in the true "
        "mask (eroded by 2 px) over the same for the ground truth: 1 = as sharp as the real face, below 1 = "
        "smoother, above = noisier. IoU/Dice/pixel accuracy of Ours' predicted map (the same map in all three "
        "*our map* rows).",
    ]
    if summary["verification_samples"] or any(m["metrics"].get("identity_distance") for m in methods.values()):
        notes.append(
            "Identity: dlib's 128-D face descriptor. *ID dist. to own GT*: output vs its own clean face (the masked "
            "input already scores about 0.5 here, so compare with the masked-input row, not with 0.6). *Verif.*: "
            "output vs the person's other photos in the split (a face-recognition system's question): mean distance, "
            f"and the share of pairs under {summary['identity_threshold']} (same person), over "
            f"{summary['verification_samples']} samples whose person has other photos; clean ground truth = ceiling, "
            "masked input = floor.")
    if with_fd:
        notes.append(
            f"FD-VGG: Fréchet distance between pooled deepest-layer features of {summary['fd_network']} for each "
            f"method's outputs and the {n} ground-truth images; not FID (another network), comparable only at the same "
            "network, image size and sample count.")
    notes.append(f"Time: per image at batch {summary['batch_size']} on {summary['device']} "
                 f"({summary['torch_threads']} torch threads); *our map* baselines include the map module's time.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes + summary["notes"]) + "\n"


def write_report(summary: dict, grid: Image.Image, out: str | Path, command: str) -> None:
    """Write metrics.json, results.md (the table under the command that made it) and samples.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"command": command, **summary}, indent=2, allow_nan=False) + "\n")
    (out / "results.md").write_text(f"`{command}`\n\n{results_table(summary)}")
    save_prediction_png(grid, out / "samples.png")


@torch.inference_mode()
def map_iou_by_style(pipe: UnmaskPipeline, files: list[Path], styles: tuple[str, ...], seed: int = 0,
                     batch_size: int = 32, collar: bool = False, occluder: bool = False,
                     high: bool = False) -> dict[str, float]:
    """Mean map IoU per mask style: every face of `files` wearing a mask of that style (rendered with `seed`),
    mapped by `pipe.predict_maps` as in `evaluate`. Hard negatives the map must leave out: `collar`, a collar in
    mask-like colours under the chin (synth.add_collar); `occluder`, a hand, glasses, a cap or hair in front of the
    mask (synth.add_occluder). `high`: every mask worn high, up the nose bridge (make_sample's high_probability)."""
    result = {}
    for style in styles:
        samples = PairedFaces(files, pipe.image_size, seed=seed, synth_options={
            "styles": (style,), "hard_negative_probability": float(collar), "occluder_probability": float(occluder),
            "high_probability": float(high)})
        ious = []
        for start in range(0, len(samples), batch_size):
            batch = default_collate([samples[i] for i in range(start, min(start + batch_size, len(samples)))])
            _, masked, mask = to_model_inputs(batch, pipe.device)
            maps = pipe.predict_maps(masked)[:, 0].cpu().numpy()
            ious += [metrics.mask_metrics(m, t)["iou"] for m, t in zip(maps, mask[:, 0].cpu().numpy())]
        result[style] = float(np.mean(ious))
    return result


def face_window(box: tuple[float, float, float, float], scale: float = 1.8) -> tuple[int, int, int, int]:
    """A square around a face's box for a close look at the fill: `scale` × the box's longer side, centred a little
    below the box's middle so the chin, the jaw and the collar (where maps spill) are in it."""
    x0, y0, x1, y1 = box
    half = scale * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0)
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def real_contact_sheet(pipe: UnmaskPipeline, photos: list[Path], cell: int = 256,
                       compare: UnmaskPipeline | None = None, zoom: bool = False) -> tuple[Image.Image, list[str]]:
    """Run `pipe(photo)` (face detection path) on photos without ground truth: a sheet of input | map overlay |
    output rows for eyes to judge, and the pipeline's notes per photo. With `compare` (other weights), its map
    overlay and output follow on the same row, so two versions are judged side by side on the same photos.
    With `zoom`, a row per face `pipe` found instead, each image cut to the same window around it (`face_window`):
    seams, leftovers and blur show there, not on a whole photo shrunk to a cell."""
    rows, notes = [], []
    for photo in tqdm(photos, desc="real photos", unit="photo"):
        image = load_image(photo)
        row, results = [image], []
        for name, candidate in (("", pipe), ("compare: ", compare)):
            if candidate is not None:
                results.append(candidate(image))
                notes += [f"{name}{photo.name}: {note}" for note in results[-1].notes]
                row += [results[-1].overlay, results[-1].image]
        windows = [face_window(face.box) for face in results[0].faces] if zoom else [None]
        for window in windows:  # PIL fills a window reaching past the photo with black
            rows.append([ImageOps.pad(im if window is None else im.crop(window), (cell, cell), color=(255, 255, 255))
                         for im in row])
    labels = ["input", "map overlay", "output"] + (["compare: map overlay", "compare: output"] if compare else [])
    return image_grid(rows, cell=cell, labels=labels), notes
