"""`unmask-hf INPUT... [--out DIR] [--model ID] [--aligned] [--save-mask] [--save-overlay]`."""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .io import find_images, save_prediction_png
from .pipeline import UnmaskPipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unmask-hf", description="Remove face masks from photos (writes <name>_unmasked.png).")
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", default="unmasked", help="output folder (default: ./unmasked)")
    parser.add_argument("--model", default=None, help="Hub repo id or local folder (default: the embedded weights)")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) to pin")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned face crops (skip face detection)")
    parser.add_argument("--save-mask", action="store_true", help="also write <name>_mask.png (255 = removed)")
    parser.add_argument("--save-overlay", action="store_true", help="also write <name>_overlay.png")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    args = parser.parse_args(argv)

    try:
        paths = find_images(args.inputs)
        if not paths:
            parser.error("no images found in the inputs")
        pipe = UnmaskPipeline.from_pretrained(args.model, revision=args.revision, device=args.device)
    except (ValueError, OSError) as e:
        print(f"unmask-hf: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(paths, desc="unmasking", unit="img"):
        try:
            result = pipe(path, aligned=args.aligned)
        except ValueError as e:  # one bad file must not stop a folder
            tqdm.write(f"skipped {path}: {e}")
            failed += 1
            continue
        for note in result.notes:
            tqdm.write(f"{path}: {note}")
        save_prediction_png(result.image, out / f"{path.stem}_unmasked.png")
        if args.save_mask:
            result.mask.save(out / f"{path.stem}_mask.png")
        if args.save_overlay:
            result.overlay.save(out / f"{path.stem}_overlay.png")
    print(f"wrote {len(paths) - failed} result(s) to {out}" + (f", skipped {failed} unreadable file(s)" if failed else ""))
    return 1 if failed == len(paths) else 0


if __name__ == "__main__":
    sys.exit(main())
