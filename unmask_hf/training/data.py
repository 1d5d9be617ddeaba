"""Training samples: (ground truth, masked, map) as uint8 tensors, from a built dataset or rendered on the fly.

Every random choice of a sample (its mask when rendered on the fly, flip, colour jitter) is drawn from a
generator seeded by (run seed, global sample index), so a run is reproducible with any number of DataLoader
workers, and a resumed run sees exactly the samples an uninterrupted one would have seen.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import datasets
import numpy as np
import torch
import torch.nn.functional as F
from datasets.distributed import split_dataset_by_node
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from ..blend import LUMA
from ..io import load_image
from ..models.edit_generator import grow_map
from ..synth import make_sample


def jitter_colors(images: list[np.ndarray], rng: np.random.Generator, amount: float) -> list[np.ndarray]:
    """Apply one random brightness/contrast/saturation change to several images identically.

    The contrast pivot is the first image's mean, so pixels equal across the images (those outside the
    map) stay equal after the jitter.
    """
    brightness, contrast, saturation = 1 + rng.uniform(-amount, amount, size=3)
    pivot = images[0].mean()
    out = []
    for image in images:
        x = image.astype(np.float32) * brightness
        x = (x - pivot * brightness) * contrast + pivot * brightness
        gray = x @ LUMA
        x = gray[..., None] + (x - gray[..., None]) * saturation
        out.append(np.clip(x + 0.5, 0, 255).astype(np.uint8))
    return out


def jitter_alignment(images: list[np.ndarray], mask: np.ndarray, rng: np.random.Generator,
                     amount: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Move several images and their map by one random similarity about the centre, as an imperfect detection
    and alignment would: rotation, scale and shift of standard deviation `amount` × (5°, 6 %, 4 % of the side).

    Borders are mirrored (a crop of a real photo continues past its edge). The moved map is the warped map at
    half coverage or more: counting every pixel it touches would grow each map by a pixel's ring (6 % more area
    at 128 px), which the map module learns as spill.
    """
    h, w = mask.shape
    angle = rng.normal(0, 5.0 * amount)
    scale = float(np.exp(rng.normal(0, 0.06 * amount)))
    shift = rng.normal(0, 0.04 * amount, 2) * [w, h]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    warp = lambda x: cv2.warpAffine(np.ascontiguousarray(x), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101)
    return [warp(x) for x in images], warp(mask.astype(np.uint8) * 255) >= 128


def tight_photo(images: list[np.ndarray], mask: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Several images and their map cut to a window of 45-90 % of each side about the face's middle, the rest of
    the crop mirrored back in: the aligned crop of a close-up (a face filling the photo, forehead or chin cut off)
    continues past the photo's edges that way (faces.warp_face). Half the faces of the real dev photos have more
    than half their crop mirrored so; the editor filled such crops 1.4 dB worse than whole ones."""
    h, w = mask.shape
    sides = rng.uniform(0.45, 0.9, 2) * [w, h]
    centre = np.array([0.5, 0.55]) * [w, h] + rng.normal(0, 0.06, 2) * [w, h]
    x0, y0 = np.clip(np.round(centre - sides / 2).astype(int), 0, [w - 2, h - 2])
    x1, y1 = np.clip(np.round(centre + sides / 2).astype(int), [x0 + 2, y0 + 2], [w, h])
    pads = ((y0, h - y1), (x0, w - x1))
    mirror = lambda x: np.pad(x[y0:y1, x0:x1], pads + ((0, 0),) * (x.ndim - 2), mode="reflect")
    return [mirror(x) for x in images], mirror(mask)


class PairedFaces(Dataset):
    """Samples for training and validation, indexed by a global sample index (epoch × len + item).

    `source` is either a `datasets.Dataset` with `image`, `masked`, `mask` columns (a built dataset), or a
    list of plain face image paths whose masks are rendered on the fly with `synth.make_sample`
    (`synth_options`: its keyword arguments, e.g. the styles to render; default its defaults).
    With `augment`: horizontal flips, colour jitter, alignment jitter (`jitter_alignment`, when > 0) and close-up
    windows (`tight_photo`, on a `tight_fraction` of samples).
    """

    def __init__(self, source, image_size: int, seed: int = 0, augment: bool = False,
                 hflip: bool = True, color_jitter: float = 0.0, no_mask_fraction: float = 0.0,
                 synth_options: dict | None = None, align_jitter: float = 0.0, tight_fraction: float = 0.0):
        self.source = source
        self.render = isinstance(source, Sequence) and (len(source) == 0 or isinstance(source[0], (str, Path)))
        self.image_size = image_size
        self.seed = seed
        self.augment = augment
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.no_mask_fraction = no_mask_fraction
        self.synth_options = synth_options or {}
        self.align_jitter = align_jitter
        self.tight_fraction = tight_fraction

    def __len__(self) -> int:
        return len(self.source)

    def _pair(self, sample: dict, item: int) -> tuple[Image.Image, Image.Image, Image.Image]:
        size = (self.image_size, self.image_size)
        image, masked = (sample[k].convert("RGB") for k in ("image", "masked"))
        mask = sample["mask"].convert("L")
        if not image.size == masked.size == mask.size:
            raise ValueError(f"Sample {item}: image, masked and mask sizes differ ({image.size}, {masked.size}, {mask.size})")
        if image.size != size:  # a dataset built at another size
            image, masked = image.resize(size, Image.BICUBIC), masked.resize(size, Image.BICUBIC)
            mask = mask.resize(size, Image.NEAREST)
        return image, masked, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        item = index % len(self.source)
        if self.render:
            sample = make_sample(np.asarray(load_image(self.source[item])), int(rng.integers(2**31)), self.image_size,
                                 **self.synth_options)
        else:
            sample = self.source[item]
        return self.prepare(sample, rng, item)

    def prepare(self, sample: dict, rng: np.random.Generator, item: int) -> dict[str, torch.Tensor]:
        """One sample (`image`, `masked`, `mask` images) as uint8 tensors at `image_size`, augmented from `rng`."""
        image, masked, mask = self._pair(sample, item)
        image, masked, mask = np.array(image), np.array(masked), np.array(mask) > 127
        if self.no_mask_fraction > 0 and rng.random() < self.no_mask_fraction:  # the bare face, nothing to remove
            masked, mask = image, np.zeros_like(mask)
        if self.augment and self.hflip and rng.random() < 0.5:
            image, masked, mask = image[:, ::-1], masked[:, ::-1], mask[:, ::-1]
        if self.augment and self.align_jitter > 0:
            (image, masked), mask = jitter_alignment([image, masked], mask, rng, self.align_jitter)
        if self.augment and self.tight_fraction > 0 and rng.random() < self.tight_fraction:  # no draw when off
            (image, masked), mask = tight_photo([image, masked], mask, rng)
        if self.augment and (self.color_jitter > 0 or self.align_jitter > 0):
            if self.color_jitter > 0:
                image, masked = jitter_colors([image, masked], rng, self.color_jitter)
            masked = np.where(mask[..., None], masked, image)  # keep outside pixels bit-identical after rounding
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            "masked": torch.from_numpy(np.ascontiguousarray(masked)).permute(2, 0, 1),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).to(torch.uint8)[None],
        }


class StreamSampler(Sampler[int]):
    """An endless stream of global sample indices: a fresh permutation per epoch, split across processes.

    Position p of the stream is sample perm_e[p mod n] of epoch e = p // n; this process takes positions
    start + rank, start + rank + world, …, so resuming at `start` continues the exact same stream.
    """

    def __init__(self, num_items: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = num_items, seed, start, rank, world

    def __iter__(self) -> Iterator[int]:
        position = self.start + self.rank
        epoch, perm = -1, None
        while True:
            if position // self.n != epoch:
                epoch = position // self.n
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            yield epoch * self.n + int(perm[position % self.n])
            position += self.world


class StreamedFaces(IterableDataset):
    """Endless training samples from a streaming dataset (`datasets.IterableDataset`): this process's share.

    The stream is shuffled through a buffer (reshuffled each epoch) and split by rank (`split_dataset_by_node`:
    whole shards when they divide evenly, else every n-th row); inside DataLoader workers `datasets` gives each
    worker whole shards (shard i to worker i mod W; workers beyond the shard count get none and stop). `start` is
    the number of samples all processes had consumed: each worker skips the rows it had already yielded, so a
    resume with the same numbers of processes and workers continues each worker's rows (the next few batches may
    come in another order); with other numbers the position is only approximate.
    """

    def __init__(self, stream: datasets.IterableDataset, pairs: PairedFaces, batch_size: int, start: int = 0,
                 rank: int = 0, world: int = 1, buffer_size: int = 1000):
        self.stream = split_dataset_by_node(stream.shuffle(seed=pairs.seed, buffer_size=buffer_size), rank, world)
        self.pairs, self.batch_size, self.rank, self.world = pairs, batch_size, rank, world
        self.batches = start // (world * batch_size)  # batches this process had taken

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, min(info.num_workers, self.stream.num_shards)) if info is not None else (0, 1)
        if worker >= workers:
            return  # no shard for this worker
        # The DataLoader takes batches from its (working) workers in turn, starting with worker 0.
        done = (self.batches // workers + (worker < self.batches % workers)) * self.batch_size
        node, nodes = self.rank * workers + worker, self.world * workers
        epoch, count = 0, 0  # rows this worker has read, over all epochs
        while True:
            self.stream.set_epoch(epoch)
            before = count
            for row in self.stream:
                count += 1
                if count > done:  # a sample's randomness follows its (worker, position): unique and resumable
                    yield self.pairs.prepare(row, np.random.default_rng([self.pairs.seed, node + nodes * count]), count)
            if count == before:
                raise ValueError(f"process {self.rank}, worker {worker}: its share of the streamed dataset is empty")
            epoch += 1


def grow_randomly(mask: torch.Tensor, most: int) -> torch.Tensor:
    """Each N×1×H×W map grown by its own random 0..`most` px (the training side of the pipeline's map_growth)."""
    if most <= 0:
        return mask
    pixels = torch.randint(0, most + 1, (mask.shape[0],), device=mask.device)
    grown = torch.stack([grow_map(mask, k) for k in range(most + 1)])  # (most+1)×N×1×H×W
    return grown[pixels, torch.arange(mask.shape[0], device=mask.device)]


def paint_rims(masked: torch.Tensor, mask: torch.Tensor, fraction: float, most: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A `fraction` of the inputs (N×3×H×W in [-1, 1]) with a rim painted in the 1..`most` px just outside each
    map (N×1×H×W): the mask's colour from just inside, pulled toward a random grey (a pale binding, a dark
    shadow), half to fully opaque. Returns (painted inputs, the painted ring N×1×H×W in {0, 1}).

    Real masks have such rims, and on real photos the map stops a pixel short of them (the line along the
    fill's upper edge). The map stage adds the ring to its target, so the map learns to take the rim in; the
    editor stages leave it outside the map, so the editor learns to fill past it (the pipeline pastes over it).
    """
    if fraction <= 0:
        return masked, torch.zeros_like(mask)
    n, device = masked.shape[0], masked.device
    width = torch.randint(1, most + 1, (n,), device=device)
    grown = torch.stack([grow_map(mask, k) for k in range(1, most + 1)])[width - 1, torch.arange(n, device=device)]
    chosen = (torch.rand(n, 1, 1, 1, device=device) < fraction).float()
    ring = (grown - mask) * chosen
    window = 2 * most + 3  # every ring pixel has map pixels within `most` px, so within this window
    inside = (F.avg_pool2d(masked * mask, window, 1, window // 2)
              / F.avg_pool2d(mask, window, 1, window // 2).clamp_min(1e-6))
    grey, pull, alpha = torch.rand(3, n, 1, 1, 1, device=device)
    rim = inside + 0.6 * pull * (2 * grey - 1 - inside)
    alpha = 0.5 + 0.5 * alpha
    return masked + ring * alpha * (rim - masked), ring


def to_model_inputs(batch: dict[str, torch.Tensor], device: torch.device,
                    channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 batch → (image, masked) in [-1, 1] and map in {0, 1}, on `device` (conversion on the GPU, not in workers)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def convert(x: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
        return x.to(device, non_blocking=True).float().mul_(scale).sub_(shift).contiguous(memory_format=fmt)

    return convert(batch["image"], 1 / 127.5, 1.0), convert(batch["masked"], 1 / 127.5, 1.0), convert(batch["mask"], 1.0, 0.0)
