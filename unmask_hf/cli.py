"""`unmask-hf INPUT... [--out DIR] [--model ID] [--aligned] [--save-mask] [--save-overlay]`.

Exit codes: 0 a result was written for every image; 1 some images got none (unreadable, or no face found: nothing
is written for them, the summary counts them); 2 bad arguments, no images found, or the model could not be loaded.
"""

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
    parser.add_argument("--save-mask", action="store_true", help="also write <name>_mask.png (the face masks found, 255 = mask)")
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
    unreadable, no_face = 0, 0
    for path in tqdm(paths, desc="unmasking", unit="img"):
        try:
            result = pipe(path, aligned=args.aligned)
        except ValueError as e:  # one bad file must not stop a folder
            tqdm.write(f"skipped {path}: {e}")
            unreadable += 1
            continue
        for note in result.notes:
            tqdm.write(f"{path}: {note}")
        if not result.faces:  # an unchanged copy is not a result
            no_face += 1
            continue
        out.mkdir(parents=True, exist_ok=True)
        save_prediction_png(result.image, out / f"{path.stem}_unmasked.png")
        if args.save_mask:
            result.mask.save(out / f"{path.stem}_mask.png")
        if args.save_overlay:
            result.overlay.save(out / f"{path.stem}_overlay.png")
    written = len(paths) - unreadable - no_face
    summary = [f"no face found in {no_face} photo{'s' * (no_face > 1)}"] if no_face else []
    summary.append(f"wrote {written} result(s) to {out}" if written else "nothing written")
    if unreadable:
        summary.append(f"skipped {unreadable} unreadable file(s)")
    print("; ".join(summary) + (" (face crops: --aligned skips detection)" if no_face else ""))
    return 0 if written == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
