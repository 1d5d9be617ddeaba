"""Training pairs for the detail stage (`RefineGenerator`), rendered once and kept in memory.

Each pair is what the pipeline has when it pastes a face back: the masked photo aligned at the refiner's size
(k × the working size), the editor's raw output and the pasted region at the working size, and the clean photo
aligned the same way (the target). The editor and map module are the pipeline's own, frozen, so the refiner
learns to sharpen the fills users really get. Rendering runs detection and both modules, so it is done once
(`train/train_refiner.py render`) and saved as one .npz of uint8 arrays.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..blend import dilate
from ..faces import align_face
from ..io import images_to_tensor, load_image, tensor_to_arrays
from ..models.refine_generator import refine_inputs
from ..pipeline import MAP_DILATION, UnmaskPipeline
from ..synth import WORLD_STYLES, make_sample

KEYS = ("crops", "truths", "generated", "regions")


def render_refine_pairs(pipe: UnmaskPipeline, paths: list[Path], masks_per_face: int, photo_size: int,
                        scale: int = 2, seed: int = 0, degrade_probability: float = 0.3) -> dict[str, np.ndarray]:
    """Masks rendered on each photo (every family of synth.WORLD_STYLES, some degraded), the face found as the
    pipeline finds it, both modules run: {"crops", "truths": N×kS×kS×3, "generated": N×S×S×3, "regions": N×S×S}
    (uint8; regions 0/1, the pasted region: the filled one grown by pipeline.MAP_DILATION). Photos where no face
    is found are skipped."""
    size = pipe.image_size
    pairs: dict[str, list] = {key: [] for key in KEYS}
    for i, path in enumerate(tqdm(paths, desc="rendering refiner pairs", unit="photo")):
        photo = load_image(path)
        small, truth, big = [], [], []
        for j in range(masks_per_face):
            sample = make_sample(photo, seed=seed + i * masks_per_face + j, size=photo_size, styles=WORLD_STYLES,
                                 degrade_probability=degrade_probability)
            masked, clean = np.asarray(sample["masked"]), np.asarray(sample["image"])
            faces = pipe.detector(masked)
            if not faces:
                continue
            landmarks = faces[0].landmarks
            small.append(align_face(masked, landmarks, size).crop)
            big.append(align_face(masked, landmarks, size * scale).crop)
            truth.append(align_face(clean, landmarks, size * scale).crop)
        if not small:
            continue
        regions, generated = pipe.predict(images_to_tensor(small))
        pairs["crops"] += big
        pairs["truths"] += truth
        pairs["generated"] += list(tensor_to_arrays(generated))
        pairs["regions"] += [dilate(r[0].cpu().numpy() > 0.5, MAP_DILATION).astype(np.uint8) for r in regions]
    if not pairs["crops"]:
        raise ValueError("No face was found in any photo: nothing to train the refiner on")
    return {key: np.stack(values) for key, values in pairs.items()}


def load_refine_pairs(path: str | Path) -> dict[str, torch.Tensor]:
    """A saved .npz of `render_refine_pairs` as uint8 tensors (images N×3×H×W, regions N×1×S×S)."""
    with np.load(path) as data:
        missing = [key for key in KEYS if key not in data]
        if missing:
            raise ValueError(f"{path} is not a refiner pairs file (no {', '.join(missing)})")
        return {key: torch.from_numpy(data[key]).permute(0, 3, 1, 2).contiguous() if data[key].ndim == 4
                else torch.from_numpy(data[key])[:, None] for key in KEYS}


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W → float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def sample_patches(pairs: dict[str, torch.Tensor], indices: torch.Tensor, patch: int, scale: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coarse, region, truth) patches `patch`×`patch` at the refiner's size, one per index, each window centred
    near a random pixel of its region (so most of the patch is fill and its edge), randomly mirrored."""
    coarse, region = refine_inputs(to_unit(pairs["crops"][indices]), to_unit(pairs["generated"][indices]),
                                   pairs["regions"][indices].float())
    truth = to_unit(pairs["truths"][indices])
    side = coarse.shape[-1]
    out = []
    for n in range(len(indices)):
        ys, xs = torch.nonzero(region[n, 0], as_tuple=True)
        k = int(torch.randint(len(ys), (1,), generator=generator)) if len(ys) else 0
        cy, cx = (int(ys[k]), int(xs[k])) if len(ys) else (side // 2, side // 2)
        # Even corners keep the 2×2 blocks the refiner works on aligned with the whole crop's.
        top = min(max(cy - patch // 2, 0), side - patch) // scale * scale
        left = min(max(cx - patch // 2, 0), side - patch) // scale * scale
        window = [t[n, :, top:top + patch, left:left + patch] for t in (coarse, region, truth)]
        if torch.rand((), generator=generator) < 0.5:
            window = [w.flip(-1) for w in window]
        out.append(window)
    return tuple(torch.stack(parts) for parts in zip(*out))
