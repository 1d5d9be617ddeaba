"""Train the detail stage (`RefineGenerator`): the editor's fill, upscaled 2×, learns the fine detail of the photo.

    # 1. render pairs once with the pipeline's own (frozen) map module and editor (FFHQ: real detail at 256 px)
    python train/train_refiner.py render --faces ../shared/data/ffhq-256 --split train --masks-per-face 3 \
        --out .data/refine/train.npz
    python train/train_refiner.py render --faces ../shared/data/ffhq-256 --split validation --out .data/refine/val.npz
    # 2. train on patches of them; writes OUTPUT/pipeline (the --init pipeline + the refiner) and OUTPUT/best
    accelerate launch train/train_refiner.py fit --pairs .data/refine/train.npz --val .data/refine/val.npz \
        --perceptual-weights ../shared/weights/vgg16-imagenet-features-conv1-conv4.safetensors \
        --output-dir runs/refine --max-minutes 40

Loss, inside the pasted region: L1 + content and style (Gram) distances of the two shallowest VGG feature maps
(relu1_2, relu2_2: edges and texture, the detail this stage is for; the deeper ones would cost most of the
step), and with --adversarial-weight a hinge GAN loss from a small PatchGAN that tells the refined patch from the
real 256-px photo (RGB ⊕ region, so it knows which pixels were made). Validation reports PSNR in the region's box
and the detail ratio inside the region, next to the bicubic fill the pipeline pastes without a refiner; `best` is
the step with the most detail among those whose PSNR is within --psnr-tolerance of the bicubic fill's (detail
bought with PSNR is noise, not the face).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm import tqdm

from unmask_hf import UnmaskPipeline
from unmask_hf.dataset import FaceFolder
from unmask_hf.io import tensor_to_arrays
from unmask_hf.losses import (PerceptualLoss, VGGFeatures, discriminator_loss, generator_adversarial_loss,
                              load_perceptual_network)
from unmask_hf.metrics import image_metrics
from unmask_hf.models import RefineGenerator
from unmask_hf.models.discriminators import patch_discriminator
from unmask_hf.models.refine_generator import refine_inputs
from unmask_hf.training.checkpoint import record_validation
from unmask_hf.training.refine_data import load_refine_pairs, render_refine_pairs, sample_patches, to_unit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render training pairs with the pipeline's own modules")
    render.add_argument("--faces", required=True, help="folder of clean face photos (FFHQ: detail at 256 px)")
    render.add_argument("--identities", help="CSV file,identity for the split (unlisted faces: one person each)")
    render.add_argument("--split", choices=["train", "validation", "test"], default="train")
    render.add_argument("--model", default=None, help="the pipeline whose modules make the fills (default: embedded)")
    render.add_argument("--masks-per-face", type=int, default=1)
    render.add_argument("--photo-size", type=int, default=256, help="side the photos are rendered at")
    render.add_argument("--limit", type=int, help="only the first N faces")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--out", required=True, help=".npz to write")
    fit = commands.add_parser("fit", help="train the refiner on rendered pairs")
    fit.add_argument("--pairs", required=True, help=".npz from `render` (training)")
    fit.add_argument("--val", required=True, help=".npz from `render` (validation: other people)")
    fit.add_argument("--init", default=None, help="pipeline the refiner is added to (default: embedded weights); "
                                                  "its refiner, if it has one, is the starting point")
    fit.add_argument("--perceptual-weights", help="local safetensors VGG features (default: torchvision VGG-19)")
    fit.add_argument("--output-dir", required=True)
    fit.add_argument("--max-minutes", type=float, default=30.0)
    fit.add_argument("--max-steps", type=int, default=100_000)
    fit.add_argument("--batch-size", type=int, default=16)
    fit.add_argument("--patch", type=int, default=64, help="training patch side at the refiner's size")
    fit.add_argument("--lr", type=float, default=2e-4)
    fit.add_argument("--content-weight", type=float, default=0.5)
    fit.add_argument("--style-weight", type=float, default=0.5,
                     help="Gram loss weight: 1.0 drew dark crack-like lines on real photos, 0.25 smoothed (README)")
    fit.add_argument("--adversarial-weight", type=float, default=0.0,
                     help="hinge GAN loss against the real photo's patches (0: no discriminator)")
    fit.add_argument("--channels", type=int, default=32)
    fit.add_argument("--blocks", type=int, default=3)
    fit.add_argument("--detail-only", action="store_true",
                     help="a new refiner adds only high frequencies: the fill's colour and shapes stay the editor's")
    fit.add_argument("--val-every", type=int, default=250)
    fit.add_argument("--psnr-tolerance", type=float, default=0.1, help="dB below the bicubic fill a `best` may be")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--save-dtype", choices=["fp32", "fp16"], default="fp16")
    return parser.parse_args(argv)


def render(args: argparse.Namespace) -> None:
    folder = FaceFolder(args.faces, args.identities)
    paths = [folder.files[i] for i in folder.split()[args.split]][: args.limit]
    pipe = UnmaskPipeline.from_pretrained(args.model, device="cpu")
    pairs = render_refine_pairs(pipe, paths, args.masks_per_face, args.photo_size, seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **pairs)
    print(f"{len(pairs['crops'])} pairs from {len(paths)} photos ({args.split} split) -> {args.out}")


def shallow_vgg(weights: str | None) -> VGGFeatures:
    """The perceptual network cut after relu2_2: its first two feature maps."""
    vgg = load_perceptual_network(weights)
    vgg.layer_ids = vgg.layer_ids[:2]
    vgg.features = vgg.features[: vgg.layer_ids[-1] + 1]
    return vgg


@torch.no_grad()
def validate(refiner: RefineGenerator, pairs: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Mean PSNR in the region's box and detail ratio inside the region over the validation pairs, for the
    refiner's output and for the bicubic fill it starts from."""
    rows: dict[str, list] = {"refined": [], "bicubic": []}
    for start in range(0, len(pairs["crops"]), 8):
        part = slice(start, start + 8)
        coarse, region = refine_inputs(to_unit(pairs["crops"][part]).to(device),
                                       to_unit(pairs["generated"][part]).to(device),
                                       pairs["regions"][part].float().to(device))
        outputs = {"refined": tensor_to_arrays(refiner(coarse, region)), "bicubic": tensor_to_arrays(coarse)}
        truths, masks = pairs["truths"][part].permute(0, 2, 3, 1).numpy(), region[:, 0].cpu().numpy() > 0.5
        for name, images in outputs.items():
            rows[name] += [image_metrics(o, t, m) for o, t, m in zip(images, truths, masks) if m.any()]
    return {f"{name}_{key}": float(np.nanmean([r[key] for r in values]))
            for name, values in rows.items() for key in ("psnr_bbox", "detail_ratio")}


def fit(args: argparse.Namespace) -> None:
    accelerator = Accelerator()
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = UnmaskPipeline.from_pretrained(args.init, device="cpu")
    refiner = pipe.refiner or RefineGenerator(channels=args.channels, blocks=args.blocks,
                                                   detail_only=args.detail_only)
    refiner.train()
    scale = refiner.scale  # read before accelerate wraps the module
    train_pairs, val_pairs = load_refine_pairs(args.pairs), load_refine_pairs(args.val)
    perceptual = PerceptualLoss(shallow_vgg(args.perceptual_weights))
    optimizer = torch.optim.Adam(refiner.parameters(), lr=args.lr, betas=(0.9, 0.99))
    refiner, optimizer, perceptual = accelerator.prepare(refiner, optimizer, perceptual)
    adversarial = args.adversarial_weight > 0
    if adversarial:  # trained alongside, never saved: only the refiner is used at inference
        critic = patch_discriminator(4, base_channels=32, layers=3)
        critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.5, 0.99))
        critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
    device = accelerator.device
    generator = torch.Generator().manual_seed(args.seed)
    history, best, start = [], None, time.time()

    def checkpoint(step: int) -> None:
        nonlocal best
        refiner.eval()
        scores = {"step": step, "minutes": round((time.time() - start) / 60, 1)} | validate(
            accelerator.unwrap_model(refiner), val_pairs, device)
        refiner.train()
        record_validation(accelerator, history, scores, out)
        allowed = scores["refined_psnr_bbox"] >= scores["bicubic_psnr_bbox"] - args.psnr_tolerance
        if best is None or (allowed and scores["refined_detail_ratio"] > best["refined_detail_ratio"]):
            best = scores
            save(out / "best", scores)

    def save(folder: Path, scores: dict) -> None:
        pipe.refiner = accelerator.unwrap_model(refiner)
        pipe.info = pipe.info | {"refine": {"command": shlex.join(["python"] + sys.argv), "validation": scores,
                                            "data": f"{len(train_pairs['crops'])} pairs from {args.pairs}"}}
        pipe.save_pretrained(folder, dtype=torch.float16 if args.save_dtype == "fp16" else None)

    checkpoint(0)
    bar = tqdm(total=args.max_steps, desc="refiner", disable=not accelerator.is_main_process)
    step = 0
    while step < args.max_steps and time.time() - start < args.max_minutes * 60:
        indices = torch.randint(len(train_pairs["crops"]), (args.batch_size,), generator=generator)
        coarse, region, truth = (t.to(device) for t in sample_patches(train_pairs, indices, args.patch, scale,
                                                                       generator))
        output = refiner(coarse, region)
        l1 = (F.l1_loss(output, truth, reduction="none") * region).sum() / (3 * region.sum()).clamp_min(1)
        content, style = perceptual(output, truth)
        loss = l1 + args.content_weight * content + args.style_weight * style
        losses = {"l1": f"{l1.item():.4f}", "content": f"{content.item():.3f}", "style": f"{style.item():.3f}"}
        if adversarial:
            region_channel = 2 * region - 1
            critic_loss = discriminator_loss(critic(torch.cat([truth, region_channel], dim=1)),
                                             critic(torch.cat([output.detach(), region_channel], dim=1)))
            critic_optimizer.zero_grad(set_to_none=True)
            accelerator.backward(critic_loss)
            critic_optimizer.step()
            gan = generator_adversarial_loss(critic(torch.cat([output, region_channel], dim=1)))
            loss = loss + args.adversarial_weight * gan
            losses |= {"gan": f"{gan.item():.3f}", "critic": f"{critic_loss.item():.3f}"}
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        step += 1
        bar.update()
        bar.set_postfix(losses)
        if step % args.val_every == 0:
            checkpoint(step)
    bar.close()
    if history[-1]["step"] != step:
        checkpoint(step)
    save(out / "pipeline", history[-1])
    accelerator.print(f"{step} steps in {(time.time() - start) / 60:.1f} min; best: {json.dumps(best)}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    render(args) if args.command == "render" else fit(args)


if __name__ == "__main__":
    main()
