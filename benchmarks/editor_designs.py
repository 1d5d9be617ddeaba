"""Editor designs at matched inference cost (issue 14, item 3): today's single-conv U-Net against two convs per
level, gated convolutions and dilated residual blocks at the bottleneck (unmask_hf/models/unet.py), each at the
channel widths that make it as fast on a CPU as today's, trained the same CPU minutes, evaluated on the same samples.

    python benchmarks/editor_designs.py --timing-only                    # the matched-cost table (1-3 min, 2 CPUs)
    python benchmarks/editor_designs.py --minutes 60                     # + train each design 60 min, then evaluate
    python benchmarks/editor_designs.py --designs single gated --minutes 30 --val-samples 256 --out eval/designs30

1. Matched cost. Today's editor ("single" at the config's channels, 32/192, depth 5) is timed, then for each other
   design a few channel widths from --base-grid × --max-grid: ms per aligned face, batch --batch-size, --threads
   torch threads, channels_last, inference_mode, median of --repeats runs after two warm-ups (train/benchmark.py's
   timer). Which widths are timed: the one whose FLOPs predict today's time (at the design's own measured ms per
   FLOP once it has one), up to --max-timed per design, stopping when within half the --tolerance; the closest
   is kept. Today's is timed at the start and the end (the ratio uses the mean), so ratios are same-run even on a
   loaded machine; absolute ms are not comparable across days.
2. Training (not with --timing-only): train/train.py --stage edit, from scratch, one after another, the same
   --faces, seed and --minutes of training time each (validation and checkpoints do not count), with a config
   written per design from --config: batch --batch-size, one loader worker, fp32, EMA off (--ema-decay: from
   scratch, a 0.999 EMA of a short run still carries much of the random init), L1 + SSIM only (perceptual and
   both adversarial weights 0; --loss-weights NAME=VALUE ... overrides; with whole and mask at 0 the
   discriminators are never run).
3. Evaluation: unmask_hf.evaluation.evaluate on the first --val-samples of training's identity-disjoint validation
   split (train/evaluate.py's samples), the editor given the true mask ("Ours + true mask"), OpenCV Telea given the
   true mask as the reference row. Each design's full report lands in OUT/<design>/eval/.

Writes OUT/timing.json and, after training, OUT/results.json and OUT/results.md (default OUT: eval/editor_designs,
git-ignored).
"""

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/benchmark.py's timer
from train.benchmark import time_call  # noqa: E402
from unmask_hf import UnmaskPipeline  # noqa: E402
from unmask_hf.dataset import BuildConfig  # noqa: E402
from unmask_hf.evaluation import EvalData, evaluate, write_report  # noqa: E402
from unmask_hf.losses import EditLossWeights  # noqa: E402
from unmask_hf.models import EditGenerator  # noqa: E402

CELEBA = ROOT.parent / "shared" / "data" / "celeba-faces"
DEFAULT_CONFIG = ROOT / "train" / "configs" / "default_128.yaml"
# Design → U-Net variant. "single" at the config's channels is today's editor, the reference of every ratio.
DESIGNS = {"single": {"block": "single"}, "double": {"block": "double"}, "gated": {"block": "gated"},
           "dilated": {"block": "single", "dilated_blocks": 4}}
REFERENCE = "single"
CHEAP_LOSSES = {"perceptual": 0.0, "whole": 0.0, "mask": 0.0}  # L1 + SSIM: no VGG, no discriminators
NEVER = 10**9  # steps: "not during this run" (validation, samples, checkpoints, adversarial terms)
METRICS = ("psnr", "ssim", "detail_ratio")


@dataclass
class Candidate:
    """One design at one channel width; `ms` (per face) once timed."""

    design: str
    edit_model: dict  # EditGenerator arguments besides image_size
    params: int
    gflops: float  # per face, one forward pass
    ms: float | None = None

    @property
    def channels(self) -> str:
        return f"{self.edit_model['base_channels']}/{self.edit_model['max_channels']}"


def candidate(design: str, edit_model: dict, image_size: int) -> Candidate:
    """`design` at the widths of `edit_model` (depth and dropout kept), with its size and FLOPs per face."""
    with torch.device("meta"):  # shapes only: counting costs no weight init and no arithmetic
        model = EditGenerator(image_size=image_size, **edit_model).eval()
        x, m = torch.zeros(1, 3, image_size, image_size), torch.zeros(1, 1, image_size, image_size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, m)
    return Candidate(design, edit_model, sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9)


def time_candidate(c: Candidate, image_size: int, batch: int, repeats: int) -> float:
    """Median ms per face of the editor's forward pass on a batch of aligned crops, as the pipeline runs it on a CPU."""
    torch.manual_seed(0)
    model = EditGenerator(image_size=image_size, **c.edit_model).eval().to(memory_format=torch.channels_last)
    image = (torch.rand(batch, 3, image_size, image_size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    mask = torch.zeros(batch, 1, image_size, image_size).contiguous(memory_format=torch.channels_last)
    mask[..., image_size // 2:, image_size // 4: 3 * image_size // 4] = 1
    with torch.inference_mode():
        c.ms = 1000 * time_call(lambda: model(image, mask), repeats, lambda: None) / batch
    return c.ms


def match_cost(designs: list[str], base: dict, image_size: int, args: argparse.Namespace) -> tuple[dict, list, list]:
    """(chosen candidate per design, every candidate timed, today's ms at start and end): see step 1 above."""
    variants = {name: {**DESIGNS[name]} for name in designs}
    if "dilated" in variants:
        variants["dilated"]["dilated_blocks"] = args.dilated_blocks
    reference = candidate(REFERENCE, {**base, **DESIGNS[REFERENCE]}, image_size)
    reference_ms = [time_candidate(reference, image_size, args.batch_size, args.repeats)]
    chosen, timed = {REFERENCE: reference} if REFERENCE in designs else {}, [reference]
    for name in (d for d in designs if d != REFERENCE):
        pool = [candidate(name, {**base, **variants[name], "base_channels": b, "max_channels": m}, image_size)
                for b in args.base_grid for m in args.max_grid if b <= m]
        best = None
        for _ in range(min(args.max_timed, len(pool))):
            # Predicted ms: FLOPs at the ms per FLOP of this design's best timing so far (today's before the first).
            scale = (best or reference).ms / (best or reference).gflops
            nxt = min((c for c in pool if c.ms is None), key=lambda c: abs(c.gflops * scale - reference_ms[0]))
            time_candidate(nxt, image_size, args.batch_size, args.repeats)
            timed.append(nxt)
            if best is None or abs(nxt.ms / reference_ms[0] - 1) < abs(best.ms / reference_ms[0] - 1):
                best = nxt
            if abs(best.ms / reference_ms[0] - 1) <= args.tolerance / 2:
                break
        chosen[name] = best
    reference_ms.append(time_candidate(reference, image_size, args.batch_size, args.repeats))
    reference.ms = sum(reference_ms) / len(reference_ms)  # the run's ratios use the mean of start and end
    return chosen, timed, reference_ms


def timing_table(chosen: dict, timed: list, reference_ms: list[float], tolerance: float) -> str:
    """Markdown: every timed candidate, the chosen one per design in bold, ratios to today's in the same run."""
    today = sum(reference_ms) / len(reference_ms)
    lines = ["| design | channels (base/max) | params (M) | fp16 MiB | GFLOP/face | ms/face | ratio to today's |",
             "|---|---|---|---|---|---|---|"]
    for c in timed:
        name = f"**{c.design}**" if chosen.get(c.design) is c or c.design == REFERENCE else f"{c.design} (tried)"
        name += " (today's)" if c.design == REFERENCE else ""
        lines.append(f"| {name} | {c.channels} | {c.params / 1e6:.2f} | {c.params * 2 / 2**20:.1f} | {c.gflops:.2f} | "
                     f"{c.ms:.1f} | {c.ms / today:.2f} |")
    notes = [f"Today's ({REFERENCE}) timed at the start and the end: {reference_ms[0]:.1f} and {reference_ms[1]:.1f} "
             f"ms/face; ratios use the mean. Bold: the width kept for each design."]
    off = [n for n, c in chosen.items() if abs(c.ms / today - 1) > tolerance]
    if off:
        notes.append(f"warning: {', '.join(off)} not within ±{tolerance:.0%} of today's in the grid: widen --base-grid/--max-grid")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def design_config(base_values: dict, c: Candidate, args: argparse.Namespace) -> dict:
    """The training config of one design: --config with the design's editor and the comparison's settings."""
    weights = {**base_values.get("loss_weights", {}), **CHEAP_LOSSES, **args.loss_weights}
    adversarial = weights.get("whole", EditLossWeights.whole) > 0 or weights.get("mask", EditLossWeights.mask) > 0
    return {**base_values, "edit_model": c.edit_model, "loss_weights": weights, "batch_size": args.batch_size,
            "global_batch_size": 0, "grad_accum": 1, "num_workers": 1, "mixed_precision": "no", "seed": args.seed,
            "ema_decay": args.ema_decay, "max_steps": args.max_steps or NEVER, "max_minutes": args.minutes,
            "adv_start_step": base_values.get("adv_start_step", 0) if adversarial else NEVER,
            "val_every": NEVER, "sample_every": NEVER, "checkpoint_every": NEVER, "val_samples": args.val_samples}


def train_design(name: str, c: Candidate, base_values: dict, args: argparse.Namespace) -> Path:
    """Train one design with train/train.py in a subprocess; returns its output folder (pipeline in ./pipeline)."""
    run = args.out / name
    if run.exists():
        sys.exit(f"error: {run} exists (an earlier run?): remove it or pass another --out")
    run.mkdir(parents=True)
    config = run / "config.yaml"
    config.write_text(yaml.safe_dump(design_config(base_values, c, args), sort_keys=False))
    command = [sys.executable, str(ROOT / "train" / "train.py"), "--config", str(config), "--stage", "edit",
               "--faces", str(args.faces), "--val-fraction", str(args.val_fraction), "--output-dir", str(run)]
    command += ["--identities", str(args.identities)] if args.identities else []
    command += ["--perceptual-weights", str(args.perceptual_weights)] if args.perceptual_weights else []
    print(f"training {name} ({c.channels}) for {args.minutes} min: {shlex.join(command)}", flush=True)
    with open(run / "train.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = (run / "train.log").read_text()[-3000:]
        sys.exit(f"error: training {name} failed (exit {result.returncode}); end of {run / 'train.log'}:\n{tail}")
    return run


def means(method: dict) -> dict:
    return {k: method["metrics"][k]["mean"] for k in METRICS} | {"ms": 1000 * method["seconds_per_image"]}


def evaluate_runs(runs: dict[str, Path], image_size: int, args: argparse.Namespace, command: str) -> tuple[dict, dict]:
    """(metrics of each design's editor given the true mask, Telea given the true mask) on the same samples."""
    data = EvalData.from_face_folder(args.faces, args.identities, args.val_fraction, image_size,
                                     args.seed + 1)  # train.py's validation split and masks (its seed + 1)
    results, telea = {}, None
    for name, run in runs.items():
        pipe = UnmaskPipeline.from_pretrained(run / "pipeline", device="cpu")
        summary, grid = evaluate(pipe, data, limit=args.val_samples, batch_size=args.batch_size)
        write_report(summary, grid, run / "eval", command)
        results[name] = means(summary["methods"]["ours_true_mask"]) | {
            "steps": pipe.info.get("steps"), "training_minutes": pipe.info.get("training_minutes")}
        telea = means(summary["methods"]["telea_true_mask"]) | {"samples": summary["samples"]}
    return results, telea


def results_table(chosen: dict, results: dict, telea: dict, today_ms: float) -> str:
    """Markdown: each trained design's numbers, and Telea's on the same samples."""
    def cells(r: dict) -> str:
        return " | ".join("—" if r[k] is None else f"{r[k]:{spec}}" for k, spec in zip(METRICS, (".2f", ".3f", ".2f")))

    lines = ["| design | channels (base/max) | params (M) | steps trained | PSNR ↑ | SSIM ↑ | detail ratio →1 | "
             "ms/face | ratio to today's |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c = chosen[name]
        lines.append(f"| {name} | {c.channels} | {c.params / 1e6:.2f} | {r['steps']} | {cells(r)} | "
                     f"{c.ms:.1f} | {c.ms / today_ms:.2f} |")
    lines.append(f"| OpenCV Telea + true mask (reference) | — | — | — | {cells(telea)} | "
                 f"{telea['ms']:.1f} (in evaluation) | — |")
    return "\n".join(lines) + "\n"


def loss_weight(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. perceptual=0.1), got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--designs", nargs="+", choices=list(DESIGNS), default=list(DESIGNS))
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config the designs start from; its "
                   "edit_model is today's design")
    p.add_argument("--faces", type=Path, default=CELEBA / "train")
    p.add_argument("--identities", type=Path, help="CSV file,identity (default: CelebA's, with the default --faces)")
    p.add_argument("--val-fraction", type=float, default=BuildConfig.val_fraction)
    p.add_argument("--minutes", type=float, default=30.0, help="training minutes per design")
    p.add_argument("--max-steps", type=int, default=None, help="also stop each run after this many steps")
    p.add_argument("--val-samples", type=int, default=256)
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "editor_designs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16, help="training, timing and evaluation batch")
    p.add_argument("--loss-weights", nargs="*", type=loss_weight, default=[], metavar="NAME=VALUE",
                   help=f"over the cheap L1 + SSIM weights {CHEAP_LOSSES}")
    p.add_argument("--perceptual-weights", type=Path, help="VGG safetensors for train.py, with perceptual=... > 0")
    p.add_argument("--ema-decay", type=float, default=0.0)
    p.add_argument("--dilated-blocks", type=int, default=DESIGNS["dilated"]["dilated_blocks"])
    p.add_argument("--timing-only", action="store_true", help="stop after the matched-cost table")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the timing")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per width (after two warm-ups)")
    p.add_argument("--base-grid", type=int, nargs="+", default=[16, 20, 24, 28, 32])
    p.add_argument("--max-grid", type=int, nargs="+", default=[96, 128, 160, 192])
    p.add_argument("--max-timed", type=int, default=3, help="widths timed per design at most")
    p.add_argument("--tolerance", type=float, default=0.10, help="matched: ms/face within this of today's")
    args = p.parse_args(argv)
    args.loss_weights = dict(args.loss_weights)
    try:
        EditLossWeights(**args.loss_weights)
    except TypeError as e:
        p.error(f"--loss-weights: {e}")
    if args.identities is None and args.faces == CELEBA / "train":
        args.identities = CELEBA / "identities.csv"
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns what it wrote to OUT/timing.json (and OUT/results.json when it trained)."""
    args = parse_args(argv)
    command = "python benchmarks/editor_designs.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    base_values = yaml.safe_load(args.config.read_text())
    image_size = base_values.get("image_size", 128)
    base = {k: base_values["edit_model"][k] for k in ("base_channels", "max_channels", "depth", "dropout")
            if k in base_values["edit_model"]}
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        chosen, timed, reference_ms = match_cost(args.designs, base, image_size, args)
    finally:
        torch.set_num_threads(threads)
    timing = timing_table(chosen, timed, reference_ms, args.tolerance)
    print(f"`{command}`\n\n{timing}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": command, "threads": args.threads, "batch_size": args.batch_size, "image_size": image_size,
              "reference_ms": reference_ms, "timed": [asdict(c) for c in timed],
              "chosen": {name: asdict(c) for name, c in chosen.items()}}
    (args.out / "timing.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.timing_only:
        return report
    runs = {name: train_design(name, chosen[name], base_values, args) for name in args.designs}
    results, telea = evaluate_runs(runs, image_size, args, command)
    today = sum(reference_ms) / len(reference_ms)
    table = results_table(chosen, results, telea, today)
    notes = (f"- {args.minutes} training minutes per design, L1 + SSIM unless --loss-weights says otherwise, "
             f"seed {args.seed}, batch {args.batch_size}; metrics on the first {telea['samples']} validation samples, "
             "editor given the true mask. ms/face: the matched-cost timing (inference only) of this run.\n")
    print(f"\n{table}\n{notes}")
    report |= {"results": results, "telea_true_mask": telea}
    (args.out / "results.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (args.out / "results.md").write_text(f"`{command}`\n\n{timing}\n{table}\n{notes}")
    return report


if __name__ == "__main__":
    main()
