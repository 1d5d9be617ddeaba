"""Where training samples come from: a built dataset (Hub id or folder), or plain faces rendered on the fly."""

import argparse
from itertools import islice
from pathlib import Path

from ..dataset import FaceFolder, load_masked_faces


def open_sources(args: argparse.Namespace, streaming: bool = False,
                 val_samples: int = 256) -> tuple[object, object | None, str]:
    """(train source, validation source or None, a one-line description for the model card).

    With `streaming` (and `args.dataset`), the train source is a `datasets.IterableDataset` and the first
    `val_samples` validation rows are read into a list (validation needs the same samples every time).

    With `--faces` (one folder or several), each folder is split by identity on its own (`FaceFolder.split`), so a
    folder holds out the same people alone or beside others.
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
    train, val, parts = [], [], []
    for folder in [args.faces] if isinstance(args.faces, (str, Path)) else args.faces:
        faces = FaceFolder(folder, args.identities)
        splits = faces.split(args.val_fraction)
        train += [faces.files[i] for i in splits["train"]]
        val += [faces.files[i] for i in splits.get("validation", [])]
        people = len({faces.identities[i] for i in splits["train"]} - {None})
        parts.append(f"{Path(folder).name}: {len(splits['train'])} faces of the identity-disjoint train split"
                     + (f" ({people} identities)" if people else ""))
    return train, val or None, "; ".join(parts) + ", masks rendered on the fly"
