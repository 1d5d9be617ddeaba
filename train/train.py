"""Train the map or the editing module with accelerate (one CPU, one GPU, many GPUs, many nodes).

    accelerate launch --config_file train/configs/accelerate_1gpu.yaml train/train.py \
        --config train/configs/default_128.yaml --stage map --faces ../shared/data/celeba-faces/train \
        --identities ../shared/data/celeba-faces/identities.csv --output-dir runs/map
    accelerate launch ... train/train.py --config ... --stage edit --init runs/map/pipeline \
        --perceptual-weights ../shared/weights/vgg16-imagenet-features-conv1-conv4.safetensors --output-dir runs/edit

Stages: `map` trains the MapGenerator (cross-entropy + Dice against the target map); `edit` trains the
EditGenerator on ground-truth maps with the joint loss and two discriminators trained in alternation;
`joint` fine-tunes the editor on the map module's predicted maps. Each stage starts from `--init` (a
pipeline folder or Hub id) when given, and writes a whole pipeline (both modules) to OUTPUT/pipeline and
the best one by validation to OUTPUT/best. `--new-editor` keeps only the init's map module and starts the editor
afresh from the config's `edit_model`: another design (e.g. `block: gated`) trained beside a committed map;
`--editor-from PIPELINE` puts that pipeline's trained editor beside it instead, to go on training it.
"""

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from PIL import Image

from unmask_hf import UnmaskPipeline
from unmask_hf.io import tensor_to_arrays
from unmask_hf.dataset import BuildConfig
from unmask_hf.losses import (IdentityLoss, PerceptualLoss, discriminator_loss, edit_generator_loss,
                              load_perceptual_network, map_loss)
from unmask_hf.models.mobilefacenet import load_face_embedder
from unmask_hf.metrics import image_metrics, mask_metrics
from unmask_hf.pipeline import MAP_DILATION
from unmask_hf.models import (EditGenerator, MapGenerator, MaskRegionDiscriminator, WholeDiscriminator, composite,
                              grow_map, paint_growth, with_face_features)
from unmask_hf.training.checkpoint import list_checkpoints, resume_from, save_checkpoint
from unmask_hf.training.config import STAGES, TrainConfig
from unmask_hf.training.data import (PairedFaces, StreamedFaces, StreamSampler, grow_randomly, paint_rims,
                                     to_model_inputs)
from unmask_hf.training.distributed import check_processes, check_replicas, use_cpu_processes
from unmask_hf.training.sources import open_sources
from unmask_hf.viz import image_grid


# Config values that can also be set from the command line (flag name, type).
OVERRIDES = [("max-steps", int), ("max-minutes", float), ("batch-size", int), ("global-batch-size", int),
             ("grad-accum", int), ("lr-g", float), ("lr-d", float), ("mixed-precision", str), ("num-workers", int),
             ("seed", int), ("log-every", int), ("sample-every", int), ("val-every", int), ("val-samples", int),
             ("checkpoint-every", int), ("ema-decay", float), ("adv-start-step", int), ("no-mask-fraction", float),
             ("align-jitter", float)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="training config YAML (train/configs/)")
    p.add_argument("--stage", choices=STAGES, required=True)
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", help="built masked-face dataset: Hub id or local folder (train/build_dataset.py)")
    data.add_argument("--faces", nargs="+", help="folder(s) of plain face images: masks are rendered on the fly")
    p.add_argument("--streaming", action="store_true", help="with --dataset: stream it (datasets streaming) instead of downloading it first")
    p.add_argument("--identities", help="with --faces: CSV file,identity for identity-disjoint validation")
    p.add_argument("--val-fraction", type=float, default=BuildConfig.val_fraction, help="with --faces: share of faces held out for validation (by identity)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--init", help="pipeline to start from (folder or Hub id); the other module is kept as is")
    p.add_argument("--init-revision", help="with a Hub id as --init: the commit sha (or branch, tag) to start from")
    p.add_argument("--new-editor", action="store_true", help="with --init, --stage edit or joint: start a new editor "
                   "from the config's edit_model (another design) beside the init's trained map module")
    p.add_argument("--editor-from", metavar="PIPELINE", help="with --init, --stage edit or joint: the editor (design "
                   "and weights) of this pipeline (folder or Hub id) beside the init's trained map module")
    p.add_argument("--perceptual-weights", help="local safetensors VGG features (default: torchvision VGG-19)")
    p.add_argument("--identity-weights", help="MobileFaceNet safetensors: the identity loss (loss_weights.identity > 0) and the map module's face features (map_model.face_features)")
    p.add_argument("--resume", nargs="?", const="latest", help="resume from the latest checkpoint, or from PATH")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the final pipeline to this Hub repo")
    p.add_argument("--save-dtype", choices=["fp32", "fp16"], default="fp32", help="dtype of the saved pipelines")
    for name, kind in OVERRIDES:
        p.add_argument(f"--{name}", type=kind, default=None, help="override the config value")
    args = p.parse_args(argv)
    if args.streaming and not args.dataset:
        p.error("--streaming reads a built dataset: give --dataset DIR_OR_ID")
    if args.init_revision and not args.init:
        p.error("--init-revision pins a Hub model: give --init org/name too")
    if args.new_editor and (not args.init or args.stage == "map"):
        p.error("--new-editor pairs a new editor with a trained map module: give --init and --stage edit or joint")
    if args.editor_from and (args.new_editor or not args.init or args.stage == "map"):
        p.error("--editor-from pairs another pipeline's editor with --init's map module: give --init and --stage "
                "edit or joint, without --new-editor")
    return args


class TrainState:
    """Counters saved with every checkpoint (accelerate restores models, optimisers, scaler and RNG)."""

    def __init__(self):
        self.step, self.elapsed, self.best = 0, 0.0, -math.inf
        self.samples = -1  # position in the sample stream (all processes together); -1: not recorded (old checkpoint)

    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "best": self.best, "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.elapsed, self.best = int(state["step"]), float(state["elapsed"]), float(state["best"])
        self.samples = int(state.get("samples", -1))


class EMA(torch.nn.Module):
    """Exponential moving average of a generator's weights (smoother, usually better outputs)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema_p.is_floating_point():
                ema_p.lerp_(p.detach(), 1 - self.decay)
            else:
                ema_p.copy_(p)


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` over the run's progress (steps or time)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"  # one per process: ranks probe at the same time
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        sys.exit(f"error: output folder {folder} is not writable: {e}")


def load_start(flag: str, source: str, image_size: int, revision: str | None = None) -> UnmaskPipeline:
    """A pipeline to start from (`--init`, `--editor-from`), refused unless it works at the config's size."""
    pipe = UnmaskPipeline.from_pretrained(source, revision=revision, device="cpu")
    for module in (pipe.map_generator, pipe.edit_generator):
        if module.unet.config.image_size != image_size:
            sys.exit(f"error: {flag} {source} works at {module.unet.config.image_size} px, the config at {image_size}")
    return pipe


def build_models(cfg: TrainConfig, args: argparse.Namespace) -> tuple[MapGenerator, EditGenerator, dict, int, dict]:
    """The two modules, the --init pipeline's info, the map growth the saved pipeline will use and the --init
    pipeline's optional stages (`refiner`, `landmark_refiner`), which the saved pipeline keeps."""
    if args.init:
        start = load_start("--init", args.init, cfg.image_size, args.init_revision)
        growth = start.map_growth if cfg.map_growth is None else cfg.map_growth
        map_gen, edit_gen, info = start.map_generator, start.edit_generator, dict(start.info)
        # The commands so far trained the init's map module and its editor; the record says where that editor goes.
        commands = info.get("commands", [])
        if args.new_editor:
            edit_gen = EditGenerator(image_size=cfg.image_size, **cfg.edit_model)
            info["commands"] = commands + ["# --new-editor: the editor starts afresh below; only the map module above is kept"]
        elif args.editor_from:
            donor = load_start("--editor-from", args.editor_from, cfg.image_size)
            edit_gen = donor.edit_generator
            info["commands"] = commands + [f"# --editor-from {args.editor_from}: the map module above, the editor trained by"] \
                + donor.info.get("commands", [])
        stages = {"refiner": start.refiner, "landmark_refiner": start.landmark_refiner}
        add_features = args.stage == "map" and cfg.map_model.get("face_features") and map_gen.face_trunk is None
    else:
        if args.stage == "joint":
            sys.exit("error: --stage joint fine-tunes on a trained map module: pass --init PIPELINE")
        map_gen = MapGenerator(image_size=cfg.image_size, **cfg.map_model)
        edit_gen, info, growth = EditGenerator(image_size=cfg.image_size, **cfg.edit_model), {}, cfg.map_growth or 0
        stages = {}
        add_features = map_gen.face_trunk is not None
    if add_features:  # map_model.face_features: the pretrained trunk, added to an --init module or into a new one
        try:
            map_gen = with_face_features(map_gen, args.identity_weights or "")
        except RuntimeError as e:
            sys.exit(f"error: map_model.face_features: {e}")
    return map_gen, edit_gen, info, growth, stages


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name, _ in OVERRIDES}
    try:
        cfg = TrainConfig.from_yaml(args.config, overrides)
    except (ValueError, FileNotFoundError, TypeError) as e:
        sys.exit(f"error: {e}")
    out = Path(args.output_dir)
    check_writable(out)
    accelerator = Accelerator(cpu=use_cpu_processes(), mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.grad_accum, log_with="tensorboard", project_dir=str(out))
    try:
        check_processes(accelerator)
        batch_size = cfg.per_device_batch(accelerator.num_processes)
    except ValueError as e:
        sys.exit(f"error: {e}")
    set_seed(cfg.seed, device_specific=True)  # seed + rank: each process draws its own dropout noise
    main_proc = accelerator.is_main_process
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # ---- everything that can fail fails here, before the first step
    try:
        train_source, val_source, data_info = open_sources(args, args.streaming, cfg.val_samples)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    perceptual = None
    vgg_weights = cfg.edit_loss_weights.perceptual + cfg.edit_loss_weights.style
    if args.stage != "map" and vgg_weights > 0:  # with both at weight 0 the VGG pass is skipped
        try:
            perceptual = PerceptualLoss(load_perceptual_network(args.perceptual_weights)).to(accelerator.device)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            sys.exit(f"error: the perceptual network could not be loaded: {e}")
    identity = None
    if args.stage != "map" and cfg.edit_loss_weights.identity > 0:
        try:
            identity = IdentityLoss(load_face_embedder(args.identity_weights or "")).to(accelerator.device)
        except RuntimeError as e:
            sys.exit(f"error: the identity network could not be loaded: {e}")
    map_gen, edit_gen, init_info, map_growth, init_stages = build_models(cfg, args)
    trained = map_gen if args.stage == "map" else edit_gen
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    map_gen.to(accelerator.device, memory_format=fmt)
    edit_gen.to(accelerator.device, memory_format=fmt)

    # ---- models, optimisers, accelerate
    opt_g = torch.optim.Adam(trained.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    if args.stage == "map":
        trained_p, opt_g = accelerator.prepare(trained, opt_g)
    else:
        whole_d = WholeDiscriminator(**cfg.whole_discriminator).to(accelerator.device, memory_format=fmt)
        region_d = MaskRegionDiscriminator(**cfg.region_discriminator).to(accelerator.device, memory_format=fmt)
        opt_d = torch.optim.Adam(list(whole_d.parameters()) + list(region_d.parameters()), lr=cfg.lr_d, betas=cfg.betas)
        trained_p, whole_p, region_p, opt_g, opt_d = accelerator.prepare(trained, whole_d, region_d, opt_g, opt_d)
    if cfg.compile:
        trained_p = torch.compile(trained_p)
    ema = EMA(trained, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    ckpt_root = out / "checkpoints"
    per_step = batch_size * cfg.grad_accum * accelerator.num_processes  # samples per optimiser step, all processes
    launcher = "accelerate launch" if "ACCELERATE_MIXED_PRECISION" in os.environ else "python"
    command = launcher + " train/train.py " + " ".join(sys.argv[1:])
    # Checkpoints carry the commands so far, so a resumed run's record keeps its earlier segments' commands.
    run_info = {"stage": args.stage, "config": cfg.to_dict(), "processes": accelerator.num_processes,
                "commands": init_info.get("commands", []) + [command]}

    def check_resume(saved: dict) -> None:
        problems = cfg.resume_conflicts(saved.get("config", {}))
        if saved.get("stage", args.stage) != args.stage:
            problems.insert(0, f"stage: checkpoint {saved['stage']!r}, now {args.stage!r}")
        if problems:
            raise ValueError("the checkpoint was made with another config; " + "; ".join(problems))
        if saved.get("commands"):
            run_info["commands"] = saved["commands"] + [command]
        if args.streaming and saved.get("processes", accelerator.num_processes) != accelerator.num_processes:
            accelerator.print(f"warning: streaming, resumed on {accelerator.num_processes} processes from "
                              f"{saved['processes']}: the stream's position is approximate (rows may repeat)")

    if args.resume:
        try:
            loaded = resume_from(accelerator, args.resume, ckpt_root, check=check_resume)
        except ValueError as e:
            sys.exit(f"error: cannot resume: {e}")
        if state.samples < 0:  # checkpoint from before the position was recorded: same world size assumed
            state.samples = state.step * per_step
        accelerator.print(f"resumed from {loaded} at step {state.step}, sample {state.samples}" if loaded
                          else "no checkpoint to resume from: starting fresh")
    state.samples = max(state.samples, 0)

    # ---- data: one endless, resumable stream of samples, dealt out to the processes
    train_set = PairedFaces(train_source, cfg.image_size, cfg.seed, augment=True, hflip=cfg.hflip,
                            color_jitter=cfg.color_jitter, no_mask_fraction=cfg.no_mask_fraction,
                            synth_options=cfg.synth_options, align_jitter=cfg.align_jitter,
                            tight_fraction=cfg.tight_fraction)
    rank, world = accelerator.process_index, accelerator.num_processes
    if args.streaming:
        train_set, sampler = StreamedFaces(train_source, train_set, batch_size, state.samples, rank, world), None
    else:
        sampler = StreamSampler(len(train_set), cfg.seed, start=state.samples, rank=rank, world=world)
    loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=accelerator.device.type == "cuda", drop_last=True,
                        persistent_workers=cfg.num_workers > 0, prefetch_factor=4 if cfg.num_workers > 0 else None,
                        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG (dropout) resumable
    val_set = PairedFaces(val_source, cfg.image_size, seed=cfg.seed + 1) if val_source is not None else None
    n_val = min(cfg.val_samples, len(val_set)) if val_set is not None else 0

    # The same pipeline users get, over the live modules: validation and samples go through its `predict`.
    pipeline = UnmaskPipeline(map_gen, edit_gen, device=accelerator.device, map_growth=map_growth, **init_stages)

    def eval_pipeline() -> UnmaskPipeline:
        """The pipeline as users would get it now (EMA weights when enabled)."""
        module = ema.model if ema is not None else trained
        if args.stage == "map":
            pipeline.map_generator = module.eval()
        else:
            pipeline.edit_generator = module.eval()
        return pipeline

    info = {"status": "trained", "stage": args.stage, "data": data_info, "config": args.config,
            "commands": run_info["commands"]}
    # The mask families the map module saw (benchmarks/real_photos.py marks the others as never seen).
    map_styles = list(cfg.train_styles) if args.stage == "map" else init_info.get("map_training_styles")
    if map_styles:
        info["map_training_styles"] = map_styles

    def save_pipeline(folder: Path, metrics: dict | None = None) -> None:
        pipe = eval_pipeline()
        pipe.info = {**info, "steps": state.step, "training_minutes": round(state.elapsed / 60, 1),
                     "hardware": f"{accelerator.num_processes}× {torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}",
                     "processes": accelerator.num_processes, "global_batch": per_step,
                     "validation": metrics or {}}
        pipe.save_pretrained(folder, dtype=torch.float16 if args.save_dtype == "fp16" else None)
        trained.train()

    cached_val: list[dict[str, torch.Tensor]] = []

    def val_batches() -> list[dict[str, torch.Tensor]]:
        """The validation samples as uint8 batches, rendered once and kept (they are fixed by their seeds)."""
        if not cached_val:
            for start in range(0, n_val, cfg.batch_size):
                samples = [val_set[i] for i in range(start, min(start + cfg.batch_size, n_val))]
                cached_val.append(default_collate(samples))
        return cached_val

    def validate() -> dict[str, float]:
        """Mean PSNR, SSIM (full image), detail ratio (inside the true mask; faces without one left out) and map IoU
        over the validation samples, on uint8 outputs as users get them."""
        pipe = eval_pipeline()
        rows = []
        for batch in val_batches():
            image, masked, mask = to_model_inputs(batch, accelerator.device)
            predicted = pipe.predict_maps(masked)  # IoU is the map module's, before any growth
            maps, generated = pipe.predict(masked, mask) if args.stage == "edit" else pipe.predict(masked, maps=predicted)
            outputs, targets = tensor_to_arrays(composite(masked, generated, maps)), tensor_to_arrays(image)
            for out_i, gt_i, map_i, mask_i in zip(outputs, targets, predicted[:, 0].cpu().numpy(), mask[:, 0].cpu().numpy()):
                quality = image_metrics(out_i, gt_i, mask_i)
                rows.append({"psnr": min(quality["psnr"], 100.0), "ssim": quality["ssim"], "detail": quality["detail_ratio"],
                             "iou": mask_metrics(map_i, mask_i)["iou"]})
        trained.train()
        return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}

    def save_samples(step: int) -> None:
        pipe = eval_pipeline()
        image, masked, mask = to_model_inputs({k: v[:8] for k, v in val_batches()[0].items()}, accelerator.device)
        maps, generated = pipe.predict(masked, mask if args.stage == "edit" else None)
        output = composite(masked, generated, maps)
        columns = [tensor_to_arrays(t) for t in (masked, maps.expand(-1, 3, -1, -1) * 2 - 1, output, image)]
        grid = image_grid([[Image.fromarray(c[i]) for c in columns] for i in range(len(image))],
                          labels=["masked", "map", "output", "ground truth"])
        (out / "samples").mkdir(exist_ok=True)
        grid.save(out / "samples" / f"step_{step:08d}.png")
        tracker = accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("samples", np.asarray(grid), step, dataformats="HWC")
        trained.train()

    if main_proc:
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    accelerator.init_trackers("unmask-hf", config={k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))})
    weights = cfg.edit_loss_weights

    def progress() -> float:
        """Fraction of the run's budget used: steps, or wall-clock minutes when `max_minutes` is set."""
        return max(state.step / cfg.max_steps, state.elapsed / (60 * cfg.max_minutes) if cfg.max_minutes > 0 else 0.0)

    replicated = [trained] + ([whole_d, region_d] if args.stage != "map" else []) + ([ema.model] if ema is not None else [])
    last_saved = state.step if args.resume else -1  # the newest checkpoint's step: the final one is not saved twice

    def checkpoint() -> None:
        """Save the training state, after checking that every process holds the same weights."""
        nonlocal last_saved
        if last_saved == state.step:
            return
        last_saved = state.step
        digest = check_replicas(accelerator, replicated)
        if accelerator.num_processes > 1:
            accelerator.print(f"step {state.step}: weights identical on all {accelerator.num_processes} processes ({digest})")
        save_checkpoint(accelerator, ckpt_root, state.step, cfg.keep_checkpoints, run_info)

    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"train {args.stage}", disable=not main_proc, dynamic_ncols=True)
    trained_p.train()
    clock = window_start = time.perf_counter()
    seen = 0
    logs: dict[str, float] = {}

    finished = progress() >= 1.0  # resumed from a run's last checkpoint: nothing left to train
    for batch in [] if finished else loader:
        image, masked, mask = to_model_inputs(batch, accelerator.device, cfg.channels_last)
        factor = lr_factor(cfg, state.step, progress())
        for opt, base in [(opt_g, cfg.lr_g)] + ([(opt_d, cfg.lr_d)] if args.stage != "map" else []):
            for group in opt.param_groups:
                group["lr"] = base * factor
        terms: dict[str, torch.Tensor] = {}
        if args.stage == "map":
            with accelerator.accumulate(trained_p):
                masked, rim = paint_rims(masked, mask, cfg.map_rim_fraction, MAP_DILATION)
                terms["map"] = map_loss(trained_p(masked, logits=True), mask + rim, dice_weight=cfg.dice_weight,
                                        mask_weight=cfg.map_mask_weight)
                accelerator.backward(terms["map"])
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
        else:
            adversarial = state.step >= cfg.adv_start_step
            with accelerator.accumulate(trained_p, whole_p, region_p):
                if args.stage == "joint":  # the editor learns on the maps users get (thresholded, cleaned)
                    mask = pipeline.predict_maps(masked).clone()  # clone: a normal tensor, not an inference one
                grown = grow_randomly(mask, 2 * map_growth)  # painted as the pipeline paints its growth
                masked, mask = paint_growth(masked, mask, grown, 2 * map_growth), grown
                masked, _ = paint_rims(masked, mask, cfg.rim_fraction, MAP_DILATION)
                paste = grow_map(mask, MAP_DILATION) if cfg.loss_on_paste else mask
                output, generated = trained_p(masked, mask, paste, raw=True)  # input × (1 − P) + generated × P, generated
                if adversarial:  # discriminators first, on the detached output
                    with accelerator.autocast():
                        fake = output.detach()
                        terms["d_whole"] = discriminator_loss(whole_p(image), whole_p(fake))
                        terms["d_region"] = discriminator_loss(region_p(image, paste), region_p(fake, paste))
                    accelerator.backward(terms["d_whole"] + terms["d_region"])
                    opt_d.step()
                    opt_d.zero_grad(set_to_none=True)
                # Generator step: frozen discriminators, called unwrapped so DDP never sees this forward.
                whole_d.requires_grad_(False)
                region_d.requires_grad_(False)
                with accelerator.autocast():
                    g_total, g_terms = edit_generator_loss(
                        output, image, paste, whole_d(output) if adversarial else None,
                        region_d(output, paste) if adversarial else None, perceptual, weights, identity, generated)
                whole_d.requires_grad_(True)
                region_d.requires_grad_(True)
                terms.update(g_terms)
                accelerator.backward(g_total)
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)

        seen += image.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        # NaN/inf on any process stops all of them, naming the term; the last checkpoint stays
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach()).all()]
        if accelerator.reduce(torch.tensor([float(bool(bad))], device=accelerator.device), "max").item() > 0:
            last = next(iter(list_checkpoints(ckpt_root)), "none")
            for name in bad:
                print(f"error: loss term '{name}' is {terms[name].item()} at step {state.step} "
                      f"(process {accelerator.process_index}); stopping. Last good checkpoint: {last}", flush=True)
            accelerator.end_training()
            sys.exit(3)
        if ema is not None:
            ema.update(trained)
        state.step += 1
        state.samples += per_step
        now = time.perf_counter()
        state.elapsed += now - clock
        clock = now
        bar.update(1)
        for name, value in terms.items():
            logs[name] = logs.get(name, 0.0) + value.detach().float().item() / cfg.log_every
        if state.step % cfg.log_every == 0:
            means = accelerator.reduce(torch.tensor(list(logs.values()), device=accelerator.device), "mean")
            logs = dict(zip(logs, means.tolist()))  # the losses of all processes, not only the main one's
            logs.update(lr_g=opt_g.param_groups[0]["lr"], images_per_second=seen / (now - window_start))
            accelerator.log(logs, step=state.step)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("map", "total", "d_whole", "images_per_second")})
            logs, seen, window_start = {}, 0, now
        if val_set is not None and main_proc and state.step % cfg.sample_every == 0:
            save_samples(state.step)
        if val_set is not None and state.step % cfg.val_every == 0:
            if main_proc:
                metrics = validate()
                accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=state.step)
                key = "iou" if args.stage == "map" else "psnr"
                if metrics.get(key, -math.inf) > state.best:
                    state.best = metrics[key]
                    save_pipeline(out / "best", metrics)
                bar.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            accelerator.wait_for_everyone()
        if state.step % cfg.checkpoint_every == 0:
            checkpoint()
        clock = time.perf_counter()  # validation, samples and checkpoints don't count as training time
        done = torch.tensor(float(progress() >= 1.0), device=accelerator.device)
        if accelerator.reduce(done, "max").item() > 0:
            break

    bar.close()
    checkpoint()
    if main_proc:
        metrics = validate() if val_set is not None else {}
        save_pipeline(out / "pipeline", metrics)
        peak = f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
        accelerator.print(f"done: {state.step} steps in {state.elapsed / 60:.1f} min{peak}; pipeline at {out / 'pipeline'}"
                          + (f"; validation {metrics}" if metrics else ""))
        if args.push_to_hub:
            url = eval_pipeline().push_to_hub(args.push_to_hub)
            accelerator.print(f"pushed to {url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
