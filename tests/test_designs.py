"""Editor design variants (unet.UNetConfig.block, dilated_blocks) and benchmarks/editor_designs.py at toy size."""

import importlib.util
import json
import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unmask_hf import UnmaskPipeline
from unmask_hf.models import EditGenerator, MapGenerator
from unmask_hf.models.unet import BLOCKS, DilatedResidualBlock, GatedConv2d, UNetConfig
from unmask_hf.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "unmask_hf" / "weights" / "default"
TINY = dict(base_channels=4, max_channels=8, depth=3, image_size=32)


def load_script(path: Path, name: str):
    """A script of train/ or benchmarks/ as a module (they are not in the package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("dilated_blocks", [0, 2])
def test_variant_forward_shape_and_gradient(block, dilated_blocks):
    torch.manual_seed(0)
    gen = EditGenerator(**TINY, block=block, dilated_blocks=dilated_blocks)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 16:28, 8:24] = 1
    out = gen.generate(x, m)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    out.square().mean().backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(p.grad.abs().sum() for p in gen.parameters()) > 0
    assert MapGenerator(**TINY, block=block, dilated_blocks=dilated_blocks)(x).shape == (2, 1, 32, 32)


def test_variant_structure():
    single, double, gated = (EditGenerator(**TINY, block=b).unet for b in BLOCKS)
    assert len(double.encoders[0]) == 2 * len(single.encoders[0])  # a 3×3 conv block after each stride-2 one
    assert len(double.decoders[0]) == len(single.decoders[0]) + 3  # a 3×3 conv block after the transposed conv
    assert all(isinstance(d[-1], torch.nn.Dropout) for d in double.decoders)  # dropout stays at the end (depth 3)
    assert isinstance(gated.first, GatedConv2d) and gated.first.conv.out_channels == 2 * 4
    assert all(isinstance(e[0], GatedConv2d) for e in gated.encoders)
    assert all(isinstance(d[0], torch.nn.ConvTranspose2d) for d in gated.decoders)  # decoders stay transposed convs
    assert single.bottleneck is None
    dilated = EditGenerator(**TINY, dilated_blocks=3).unet
    assert [type(b) for b in dilated.bottleneck] == [DilatedResidualBlock] * 3


def test_dilations_capped_below_the_bottleneck_side():
    assert UNetConfig(4, 3, depth=5, image_size=128, dilated_blocks=6).dilations() == [1, 2, 3, 3, 1, 2]  # side 4
    assert UNetConfig(4, 3, depth=5, image_size=512, dilated_blocks=5).dilations() == [1, 2, 4, 8, 1]  # side 16
    assert UNetConfig(4, 3, depth=4, image_size=32, dilated_blocks=3).dilations() == [1, 1, 1]  # side 2
    unet = EditGenerator(base_channels=4, max_channels=8, depth=5, image_size=128, dilated_blocks=4).unet
    assert [b.body[0].dilation for b in unet.bottleneck] == [(1, 1), (2, 2), (3, 3), (3, 3)]


@pytest.mark.parametrize("kwargs,message", [
    (dict(block="triple"), "block must be one of single, double, gated, got 'triple'"),
    (dict(block=None), "block must be one of"),
    (dict(dilated_blocks=-1), "dilated_blocks must be a non-negative integer, got -1"),
    (dict(dilated_blocks=1.5), "dilated_blocks must be a non-negative integer"),
    (dict(dilated_blocks=True), "dilated_blocks must be a non-negative integer"),
])
def test_bad_variant_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EditGenerator(**TINY, **kwargs)


def test_defaults_unchanged_and_embedded_weights_load():
    pipe = UnmaskPipeline.from_pretrained(device="cpu")  # strict loading: any new or renamed key fails here
    for name, fresh in (("edit", EditGenerator()), ("map", MapGenerator())):
        saved = load_file(str(DEFAULT_WEIGHTS / name / "model.safetensors"))
        assert {k: tuple(v.shape) for k, v in fresh.state_dict().items()} == {k: tuple(v.shape) for k, v in saved.items()}
        assert fresh.unet.bottleneck is None
    # The editor's output from the code before the variants (commit bfdb431, run on the embedded editor weights of
    # 2026-12-07, the chunk on the sunglasses map's maps), on a fixed input: the forward is unchanged too (both
    # generators share the U-Net; only the editor is pinned).
    x = torch.linspace(-1, 1, 3 * 128 * 128).reshape(1, 3, 128, 128)
    m = torch.zeros(1, 1, 128, 128)
    m[..., 70:120, 30:100] = 1
    with torch.inference_mode():
        generated = pipe.edit_generator.eval().generate(x, m)
    torch.testing.assert_close(generated[0, :, 90, 64], torch.tensor([-0.26068661, 0.05494311, 0.43420988]),
                               atol=1e-4, rtol=0)
    assert generated.mean().item() == pytest.approx(-0.0052799, abs=1e-4)


def test_variant_hub_round_trip(tmp_path):
    torch.manual_seed(0)
    gen = EditGenerator(**TINY, block="gated", dilated_blocks=2).eval()
    gen.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["block"] == "gated" and config["dilated_blocks"] == 2
    loaded = EditGenerator.from_pretrained(tmp_path).eval()  # strict: a single-block model would not load these
    assert loaded.unet.config == gen.unet.config
    x, m = torch.rand(1, 3, 32, 32) * 2 - 1, torch.ones(1, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x, m), gen(x, m))


def test_train_config_builds_the_variant(tmp_path):
    train = load_script(ROOT / "train" / "train.py", "train_script")
    small = {"base_channels": 4, "max_channels": 8, "depth": 3}
    (tmp_path / "c.yaml").write_text("image_size: 32\nmap_model: {base_channels: 4, max_channels: 8, depth: 3}\n"
                                     "edit_model: {base_channels: 4, max_channels: 8, depth: 3, block: gated, dilated_blocks: 1}\n")
    for cfg in (TrainConfig.from_yaml(tmp_path / "c.yaml"),
                TrainConfig(image_size=32, map_model=small, edit_model={**small, "block": "double"})):
        _, edit, _, growth, stages = train.build_models(cfg, Namespace(init=None, stage="edit"))
        assert edit.unet.config.block == cfg.edit_model["block"]
        assert edit.unet.config.dilated_blocks == cfg.edit_model.get("dilated_blocks", 0)
        assert growth == 0 and stages == {}  # no --init and no map_growth in the config


@pytest.fixture(scope="module")
def designs_script():
    return load_script(ROOT / "benchmarks" / "editor_designs.py", "editor_designs")


def toy_args(tmp_path: Path, *extra: str) -> list[str]:
    """The smoke config's 32-px editor (4/8 channels, depth 3) against toy widths, one timed run each."""
    return ["--config", str(ROOT / "train" / "configs" / "smoke.yaml"), "--base-grid", "2", "4", "--max-grid", "4", "8",
            "--repeats", "1", "--threads", "1", "--batch-size", "4", "--out", str(tmp_path / "out"), *extra]


def test_editor_designs_timing_only(tmp_path, designs_script):
    report = designs_script.main(toy_args(tmp_path, "--timing-only", "--designs", "single", "gated", "--max-timed", "2"))
    assert set(report["chosen"]) == {"single", "gated"}
    assert report["chosen"]["single"]["edit_model"] == {"base_channels": 4, "max_channels": 8, "depth": 3,
                                                        "dropout": 0.1, "block": "single"}  # today's = the config's
    assert report["chosen"]["gated"]["edit_model"]["block"] == "gated"
    assert 2 <= len(report["timed"]) <= 3 and all(math.isfinite(c["ms"]) and c["ms"] > 0 for c in report["timed"])
    assert len(report["reference_ms"]) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["timing.json"]  # nothing trained


def test_editor_designs_end_to_end(tmp_path, designs_script):
    from .test_train import make_face_folder

    identities = make_face_folder(tmp_path / "faces")
    report = designs_script.main(toy_args(
        tmp_path, "--faces", str(tmp_path / "faces"), "--identities", str(identities), "--val-fraction", "0.2",
        "--minutes", "0.05", "--max-steps", "2", "--val-samples", "4", "--max-timed", "1"))
    assert list(report["results"]) == list(designs_script.DESIGNS)
    for name, row in report["results"].items():
        assert row["steps"] == 2, name
        assert all(math.isfinite(row[k]) for k in ("psnr", "ssim", "detail_ratio", "ms")), row
        edit = json.loads((tmp_path / "out" / name / "pipeline" / "edit" / "config.json").read_text())
        assert edit["block"] == designs_script.DESIGNS[name]["block"]  # the trained editor is the design's
        assert edit["dilated_blocks"] == (4 if name == "dilated" else 0)
    assert all(math.isfinite(report["telea_true_mask"][k]) for k in ("psnr", "ssim", "detail_ratio"))
    table = (tmp_path / "out" / "results.md").read_text()
    assert all(f"\n| {name} |" in table for name in designs_script.DESIGNS) and "OpenCV Telea" in table
    config = (tmp_path / "out" / "gated" / "config.yaml").read_text()
    assert "perceptual: 0.0" in config and "mixed_precision: 'no'" in config  # the cheap L1 + SSIM run


def test_editor_designs_bad_loss_weights(designs_script):
    with pytest.raises(SystemExit):
        designs_script.parse_args(["--loss-weights", "nope=1"])
    assert designs_script.parse_args(["--loss-weights", "perceptual=0.5"]).loss_weights == {"perceptual": 0.5}
