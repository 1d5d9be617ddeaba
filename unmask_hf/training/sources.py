"""Where training samples come from: a built dataset (Hub id or folder), or plain faces rendered on the fly."""

import argparse
from itertools import islice
from pathlib import Path

from ..dataset import BuildConfig, FaceFolder, load_masked_faces, split_identities


def open_sources(args: argparse.Namespace, streaming: bool = False,
                 val_samples: int = 256) -> tuple[object, object | None, str]:
    """(train source, validation source or None, a one-line description for the model card).

    With `streaming` (and `args.dataset`), the train source is a `datasets.IterableDataset` and the first
    `val_samples` validation rows are read into a list (validation needs the same samples every time).

    With `--faces`, the identity-disjoint split is the one `train/build_dataset.py` makes from the same
    folder with the same fractions and seed, so both modes hold out the same people.
    """
    if args.dataset:
        train = load_masked_faces(args.dataset, "train", streaming=streaming)
        try:
            val = load_masked_faces(args.dataset, "validation", streaming=streaming)
        except ValueError as e:
            if "no split" not in str(e):
                raise
            val = None
        if streaming:
            return train, val and list(islice(val, val_samples)), f"{args.dataset} (train split, streamed)"
        return train, val, f"{args.dataset} (train split, {len(train)} samples)"
    faces = FaceFolder(args.faces, args.identities)
    defaults = BuildConfig(source=str(args.faces))
    splits = split_identities(faces.identities, args.val_fraction, defaults.test_fraction, defaults.seed)
    train = [faces.files[i] for i in splits["train"]]
    val = [faces.files[i] for i in splits.get("validation", [])] or None
    people = len({faces.identities[i] for i in splits["train"]} - {None})
    return train, val, (f"{Path(args.faces).name}: {len(train)} faces of the identity-disjoint train split"
                        + (f" ({people} identities)" if people else "") + ", masks rendered on the fly")
