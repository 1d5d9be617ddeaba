"""The masked-face dataset: plain face sources, the builder that renders masks on them, and the loader.

A built dataset is a folder (or a Hub dataset repo of the same layout) of parquet shards
`data/{split}-XXXXX-of-XXXXX.parquet` with a `README.md` card, so `datasets.load_dataset(folder_or_id)` reads it.
Each row: `image` (ground truth), `masked` (the face wearing a rendered mask), `mask` (the map, mode L, 0/255),
`mask_style`, `source_id` (the source face it came from) and `identity` (when the source had identities).
"""

import csv
import io
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm.auto import tqdm

from unmask_hf.io import IMAGE_SUFFIXES, find_images, load_image
from unmask_hf.synth import MASK_STYLES, make_sample

REQUIRED_COLUMNS = ("image", "masked", "mask", "mask_style", "source_id")
IMAGE_COLUMNS = ("image", "masked", "mask")
SPLITS = ("train", "validation", "test")
MIN_SIZE, MAX_SIZE = 64, 1024


def dataset_features(with_identity: bool) -> datasets.Features:
    """The schema of a built dataset."""
    features = {"image": datasets.Image(), "masked": datasets.Image(), "mask": datasets.Image(),
                "mask_style": datasets.Value("string"), "source_id": datasets.Value("string")}
    if with_identity:
        features["identity"] = datasets.Value("string")
    return datasets.Features(features)


# ---------------------------------------------------------------- plain face sources

class FaceFolder:
    """Face images in a folder (searched recursively), with identities from an optional CSV.

    The CSV has a header and two columns: file (path relative to the folder, or bare file name), identity.
    Faces the CSV does not list have no identity (each is then its own group when splitting).
    """

    def __init__(self, root: str | Path, identities: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"Face folder {self.root} does not exist")
        self.files = find_images([self.root])
        if not self.files:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {self.root}")
        self.identities: list[str | None] = [None] * len(self.files)
        if identities is not None:
            table = _read_identities(identities)
            for i, path in enumerate(self.files):
                relative = path.relative_to(self.root).as_posix()
                self.identities[i] = table.get(relative, table.get(path.name))

    def __len__(self) -> int:
        return len(self.files)

    def source_id(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def split(self, val_fraction: float | None = None) -> dict[str, list[int]]:
        """Indices per split, identity-disjoint, with the fractions and seed of `train/build_dataset.py`'s defaults
        (val_fraction overrides its share), so training, evaluation and the benchmarks hold out the same people."""
        defaults = BuildConfig(source=str(self.root))
        val_fraction = defaults.val_fraction if val_fraction is None else val_fraction
        return split_identities(self.identities, val_fraction, defaults.test_fraction, defaults.seed)

    def load(self, index: int) -> Image.Image:
        """The face as an RGB PIL image; ValueError if the file is not a readable image."""
        return load_image(self.files[index])


def _read_identities(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Identities file {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or any(len(row) < 2 for row in rows[1:]):
        raise ValueError(f"{path} must be a CSV with a header and two columns: file, identity")
    return {row[0].strip(): row[1].strip() for row in rows[1:]}


class HubFaces:
    """Face images from a `datasets` dataset (a Hub id or anything `load_dataset` reads)."""

    def __init__(self, source: str, split: str = "train", image_column: str | None = None,
                 identity_column: str | None = None):
        data = datasets.load_dataset(source, split=split)
        images = [name for name, feature in data.features.items() if isinstance(feature, datasets.Image)]
        image_column = image_column or ("image" if "image" in images else (images[0] if images else None))
        if image_column not in data.column_names:
            raise ValueError(f"{source} has no image column (columns: {data.column_names}); pass image_column")
        if identity_column is None and "identity" in data.column_names:
            identity_column = "identity"
        if identity_column is not None and identity_column not in data.column_names:
            raise ValueError(f"{source} has no column {identity_column!r} (columns: {data.column_names})")
        if len(data) == 0:
            raise ValueError(f"{source} split {split!r} has no images")
        self.name, self.split, self.image_column = source, split, image_column
        column = data[identity_column] if identity_column else [None] * len(data)
        self.identities = [None if v is None else str(v) for v in column]
        # Decode ourselves so a broken image is one skipped row, not a crash.
        self.data = data.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))

    def __len__(self) -> int:
        return len(self.data)

    def source_id(self, index: int) -> str:
        return f"{self.split}/{index}"

    def load(self, index: int) -> Image.Image:
        item = self.data[index][self.image_column]
        return load_image(item["bytes"] if item.get("bytes") else item["path"])


def split_identities(identities: Sequence[str | None], val_fraction: float, test_fraction: float,
                     seed: int = 0) -> dict[str, list[int]]:
    """Indices per split, identity-disjoint: all faces of one person land in the same split.

    Faces without an identity are their own group. Groups are shuffled with `seed` and dealt to test, then
    validation, until each holds about its fraction of the faces (a positive fraction gets at least one group);
    the rest is train, which always keeps at least one group.
    """
    groups: dict[str, list[int]] = {}
    for i, identity in enumerate(identities):
        groups.setdefault(f"id:{identity}" if identity is not None else f"face:{i}", []).append(i)
    order = sorted(groups)
    order = [order[j] for j in np.random.default_rng(seed).permutation(len(order))]
    splits = {"train": [], "validation": [], "test": []}
    for name, fraction in (("test", test_fraction), ("validation", val_fraction)):
        target, taken = fraction * len(identities), splits[name]
        while len(order) > 1 and len(taken) < target:
            group = groups[order[-1]]
            if taken and len(taken) + len(group) - target > target - len(taken):
                break  # this group would overshoot the target more than stopping short does
            taken.extend(groups[order.pop()])
    for key in order:
        splits["train"].extend(groups[key])
    return {name: sorted(indices) for name, indices in splits.items() if indices}


# ---------------------------------------------------------------- building

@dataclass
class BuildConfig:
    """What a build depends on: the same config resumes a build, a different one needs --overwrite."""

    source: str
    identities: str | None = None
    size: int = 128
    masks_per_face: int = 1
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    limit: int | None = None
    shard_size: int = 1000  # rows per parquet shard


def sample_seed(seed: int, index: int, k: int) -> int:
    """The renderer seed of the k-th mask on source face `index`."""
    return int(np.random.SeedSequence([seed, index, k]).generate_state(1)[0])


def _png(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # lossless; higher levels cost 3× the time for 5% less
    return {"bytes": buffer.getvalue(), "path": None}


def _build_shard(job: tuple) -> tuple[str, dict]:
    """Render one shard and write it atomically; returns its name and stats (rows, styles, skipped)."""
    source, indices, path, config, with_identity = job
    rows = {name: [] for name in dataset_features(with_identity)}
    skipped = []
    for index in indices:
        try:
            face = source.load(index)
        except ValueError as e:
            skipped.append(f"{source.source_id(index)}: {e}")
            continue
        truth = None
        for k in range(config.masks_per_face):
            sample = make_sample(face, sample_seed(config.seed, index, k), config.size)
            truth = truth or _png(sample["image"])  # the same ground truth for all K masks: encode once
            rows["image"].append(truth)
            rows["masked"].append(_png(sample["masked"]))
            rows["mask"].append(_png(sample["mask"]))
            rows["mask_style"].append(sample["mask_style"])
            rows["source_id"].append(source.source_id(index))
            if with_identity:
                rows["identity"].append(source.identities[index])
    table = pa.Table.from_pydict(rows, schema=dataset_features(with_identity).arrow_schema)  # schema carries the features
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial, row_group_size=100)
    os.replace(partial, path)  # a shard either exists complete or not at all: reruns skip finished ones
    return path.name, {"faces": len(indices), "rows": table.num_rows, "bytes": table.nbytes,
                       "styles": dict(Counter(rows["mask_style"])), "skipped": skipped}


def check_output(out: str | Path, config: BuildConfig, overwrite: bool) -> dict:
    """Prepare the output folder; returns the finished shards' stats of a build with the same config."""
    out = Path(out)
    info_path = out / "build_info.json"
    if out.exists() and overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output {out} exists and is not a folder (pass --overwrite to replace it)")
    if out.is_dir() and any(out.iterdir()):
        info = json.loads(info_path.read_text()) if info_path.is_file() else None
        if info is None or info.get("config") != asdict(config):
            raise ValueError(f"Output folder {out} already exists and is not an unfinished build with the same "
                             "settings; pass --overwrite to replace it")
        return {name: stats for name, stats in info["shards"].items() if (out / "data" / name).is_file()}
    return {}


def build_masked_faces(source: FaceFolder | HubFaces, out: str | Path, config: BuildConfig, overwrite: bool = False,
                       num_proc: int = 1) -> dict:
    """Render the dataset into `out` (parquet shards + card); returns the build info (config, per-shard stats).

    Rerunning with the same config skips finished shards; anything else in `out` needs `overwrite`.
    """
    if not MIN_SIZE <= config.size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {config.size}")
    if config.masks_per_face < 1:
        raise ValueError(f"masks_per_face must be at least 1, got {config.masks_per_face}")
    val, test = config.val_fraction, config.test_fraction
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    if len(source) == 0:
        raise ValueError("The source has no images")
    out = Path(out)
    done = check_output(out, config, overwrite)

    count = len(source) if config.limit is None else min(config.limit, len(source))
    identities = source.identities[:count]
    with_identity = any(identity is not None for identity in identities)
    splits = split_identities(identities, config.val_fraction, config.test_fraction, config.seed)
    jobs = []
    faces_per_shard = max(1, config.shard_size // config.masks_per_face)
    for split, indices in splits.items():
        chunks = [indices[i:i + faces_per_shard] for i in range(0, len(indices), faces_per_shard)]
        for i, chunk in enumerate(chunks):
            path = out / "data" / f"{split}-{i:05d}-of-{len(chunks):05d}.parquet"
            if path.name not in done:
                jobs.append((source, chunk, str(path), config, with_identity))

    (out / "data").mkdir(parents=True, exist_ok=True)
    info = {"config": asdict(config), "splits": {name: len(indices) for name, indices in splits.items()},
            "with_identity": with_identity, "shards": dict(done)}
    _write_info(out, info)
    start = time.perf_counter()
    todo = sum(len(job[1]) for job in jobs)
    desc = f"Rendering masks ({len(jobs)} shards, {num_proc} proc)"
    with tqdm(total=todo, unit="face", desc=desc, disable=not jobs) as bar:
        pool = multiprocessing.Pool(num_proc) if num_proc > 1 and len(jobs) > 1 else None
        try:
            results = pool.imap_unordered(_build_shard, jobs) if pool else map(_build_shard, jobs)
            for name, stats in results:
                info["shards"][name] = stats
                _write_info(out, info)  # after every shard, so an interrupted build resumes from here
                bar.update(stats["faces"])
        finally:
            if pool:
                pool.close()
                pool.join()
    info["seconds"] = time.perf_counter() - start
    info["faces_rendered"] = todo
    (out / "README.md").write_text(dataset_card(info))
    return info


def _write_info(out: Path, info: dict) -> None:
    partial = out / ".build_info.json.partial"
    partial.write_text(json.dumps(info, indent=1))
    os.replace(partial, out / "build_info.json")


def summarize(info: dict) -> dict:
    """Rows, bytes and style counts per split, and the skipped source images, from the build info."""
    rows, size, styles, skipped = Counter(), Counter(), {}, []
    for name, stats in sorted(info["shards"].items()):
        split = name.split("-")[0]
        rows[split] += stats["rows"]
        size[split] += stats["bytes"]
        styles.setdefault(split, Counter()).update(stats["styles"])
        skipped.extend(stats["skipped"])
    return {"rows": dict(rows), "bytes": dict(size), "styles": {split: dict(c) for split, c in styles.items()},
            "skipped": skipped}


def dataset_card(info: dict) -> str:
    """The README.md of a built dataset: YAML header for `load_dataset` and the Hub, then how it was made."""
    config, summary = info["config"], summarize(info)
    splits = [s for s in SPLITS if summary["rows"].get(s)]
    features = dataset_features(info["with_identity"])
    yaml = ["---"]
    celeba = "celeba" in config["source"].lower()
    if celeba:
        yaml += ["license: other", "license_name: celeba-non-commercial-research",
                 "license_link: https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"]
    yaml += ["pretty_name: Synthetic masked faces (unmask-hf)", "task_categories:", "- image-to-image",
             "- image-segmentation", "tags:", "- face-mask", "- inpainting", "- synthetic", "configs:",
             "- config_name: default", "  data_files:"]
    for split in splits:
        yaml += [f"  - split: {split}", f"    path: data/{split}-*"]
    yaml += ["dataset_info:", "  features:"]
    for name, feature in features.items():
        yaml += [f"  - name: {name}", f"    dtype: {'image' if isinstance(feature, datasets.Image) else feature.dtype}"]
    yaml += ["  splits:"]
    for split in splits:
        yaml += [f"  - name: {split}", f"    num_bytes: {summary['bytes'][split]}",
                 f"    num_examples: {summary['rows'][split]}"]
    yaml += ["---", ""]

    styles = sorted({style for counts in summary["styles"].values() for style in counts} | set(MASK_STYLES))
    table = ["| split | faces | rows | " + " | ".join(styles) + " |", "|---" * (len(styles) + 3) + "|"]
    for split in splits:
        counts = summary["styles"][split]
        table.append(f"| {split} | {info['splits'].get(split, 0)} | {summary['rows'][split]} | "
                     + " | ".join(str(counts.get(style, 0)) for style in styles) + " |")
    licence = ("The faces are CelebA images (Liu et al., *Deep Learning Face Attributes in the Wild*, ICCV 2015). "
               "CelebA is available for **non-commercial research purposes only**; the images are not owned by "
               "CelebA or by this project. Use this dataset under the same terms and do not redistribute it."
               if celeba else
               f"The faces come from `{config['source']}` and keep that source's licence; the rendered masks are "
               "the project's own (Apache-2.0).")
    identity_row = "\n| `identity` | string | the person (from the source's identities) |" if info["with_identity"] else ""
    faces = sum(info["splits"].values())
    limit = f", first {config['limit']}" if config["limit"] else ""
    splitting = ("identity-disjoint (no person is in two splits)" if info["with_identity"]
                 else "random by face (no identities given)")
    body = f"""# Synthetic masked faces

Face photos paired with the same face wearing a procedurally rendered face mask, and the exact map of the mask,
made with unmask-hf's `train/build_dataset.py` (renderer: `unmask_hf.synth`). Used to train
the unmask-hf two-stage GAN (map segmentation + face completion).

## How it was made
- Source faces: `{config['source']}`{f" with identities from `{config['identities']}`" if config['identities'] else ""}
  ({faces} faces{limit}; {len(summary['skipped'])} unreadable images skipped).
- Each face is centre-cropped square, resized to {config['size']}×{config['size']} and given
  {config['masks_per_face']} mask(s).
  Mask styles (surgical, cloth, N95, KN95, neck gaiter / bandana) are drawn from code: outline placed from the
  aligned-face landmark template with jitter, rotation and scale, sometimes worn below the nose; patterns,
  curved-surface shading, fabric grain and anti-aliased edges. Seed {config['seed']}; the k-th mask of face i uses
  `unmask_hf.dataset.sample_seed({config['seed']}, i, k)`, so a build is reproducible byte for byte.
- Splits are {splitting}:
  validation {config['val_fraction']:.0%}, test {config['test_fraction']:.0%} of the faces.

## Splits and mask styles (rows)
{chr(10).join(table)}

## Schema
| column | type | meaning |
|---|---|---|
| `image` | image (RGB PNG) | ground truth: the face without a mask |
| `masked` | image (RGB PNG) | the same face wearing the rendered mask (identical to `image` outside `mask`) |
| `mask` | image (L PNG, 0/255) | the map: 255 exactly where the rendered mask changed the pixel |
| `mask_style` | string | one of {', '.join(MASK_STYLES)} |
| `source_id` | string | the source face (file path or split/index) |{identity_row}

## Use
```python
from unmask_hf.dataset import load_masked_faces
train = load_masked_faces("<this repo id or folder>", "train")
# or: datasets.load_dataset("<this repo id or folder>", split="train")
```

## Licence
{licence}
"""
    return "\n".join(yaml) + body


def contact_sheet(rows: list[dict], cell: int | None = None) -> Image.Image:
    """A preview of dataset rows: masked | map | ground truth, one row per example."""
    from unmask_hf.viz import image_grid

    return image_grid([[row["masked"], row["mask"], row["image"]] for row in rows], cell=cell,
                      labels=["masked", "map", "ground truth"])


def push_to_hub(out: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a built dataset folder (shards + card) to a Hub dataset repo; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(out), repo_type="dataset", ignore_patterns=[".*", "**/.*"],
                      commit_message="Upload synthetic masked-face dataset (unmask-hf build_dataset.py)")
    return str(url)


# ---------------------------------------------------------------- loading

def load_masked_faces(id_or_dir: str, split: str, streaming: bool = False) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a built dataset: a Hub id, a folder written by the builder, or a `save_to_disk` folder.

    Checks the schema (columns, image features, and the first row's image sizes and map mode) and raises a
    `ValueError` that names what is wrong: a missing folder, split or column, or images of mismatched sizes.
    """
    path = Path(id_or_dir)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"{id_or_dir} has no split {split!r} (splits: {', '.join(data)})")
            data = data[split]
        data = data.to_iterable_dataset() if streaming else data
    else:
        if not path.exists() and (id_or_dir.startswith((".", "/", "~")) or id_or_dir.count("/") > 1):  # not a Hub id
            raise ValueError(f"No such dataset folder: {id_or_dir}")
        names = datasets.get_dataset_split_names(id_or_dir)
        if split not in names:
            raise ValueError(f"{id_or_dir} has no split {split!r} (splits: {', '.join(names)})")
        data = datasets.load_dataset(id_or_dir, split=split, streaming=streaming)
    _validate(data, id_or_dir, split)
    return data


def _validate(data, name: str, split: str) -> None:
    columns = data.column_names or list(data.features or {})
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{name} [{split}] is missing column(s) {', '.join(missing)} (has: {', '.join(columns)}); "
                         f"a masked-face dataset needs {', '.join(REQUIRED_COLUMNS)} and optionally identity")
    features = data.features or {}
    not_images = [c for c in IMAGE_COLUMNS if c in features and not isinstance(features[c], datasets.Image)]
    if not_images:
        raise ValueError(f"{name} [{split}]: column(s) {', '.join(not_images)} must be images")
    first = next(iter(data), None)
    if first is None:
        raise ValueError(f"{name} [{split}] is empty")
    sizes = {c: first[c].size for c in IMAGE_COLUMNS}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name} [{split}]: image, masked and mask have different sizes: {sizes}")
    if first["mask"].mode != "L":
        raise ValueError(f"{name} [{split}]: mask must be a single-channel (L) image, got mode {first['mask'].mode}")
