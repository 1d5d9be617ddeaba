"""Training configuration: one dataclass with every default, loaded from YAML, overridden by CLI flags."""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..losses import EditLossWeights
from ..synth import MASK_STYLES, OCCLUDERS, WORLD_STYLES

STAGES = ("map", "edit", "joint")
RESUME_FIXED = ("image_size", "map_model", "edit_model", "whole_discriminator", "region_discriminator", "ema_decay",
                "seed", "betas")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` on top; nested dicts (model widths, loss weights) are merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML config's values; a `base: other.yaml` key (relative to the file) is read first and overridden, so a
    config that changes one thing says only that."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No config file {path}")
    if path.resolve() in _seen:
        raise ValueError(f"Config {path} is its own base (through {' -> '.join(p.name for p in _seen)})")
    values = yaml.safe_load(path.read_text()) or {}
    base = values.pop("base", None)
    if base is None:
        return values
    return _merged(read_config_file(path.parent / base, _seen + (path.resolve(),)), values)


@dataclass
class TrainConfig:
    """Everything a run needs besides paths; `train/configs/*.yaml` override these defaults."""

    image_size: int = 128
    map_model: dict = field(default_factory=lambda: {"base_channels": 16, "max_channels": 128, "depth": 5, "dropout": 0.2})
    edit_model: dict = field(default_factory=lambda: {"base_channels": 32, "max_channels": 192, "depth": 5, "dropout": 0.2})
    whole_discriminator: dict = field(default_factory=lambda: {"base_channels": 32, "layers": 4})
    region_discriminator: dict = field(default_factory=lambda: {"base_channels": 32, "layers": 3, "region_size": 64})
    loss_weights: dict = field(default_factory=dict)  # EditLossWeights fields; missing ones keep their defaults
    dice_weight: float = 1.0
    map_mask_weight: float = 1.0  # map: BCE weight of mask pixels against the rest (losses.map_loss's mask_weight)

    batch_size: int = 32  # per device, per step
    grad_accum: int = 1
    global_batch_size: int = 0  # > 0: samples per optimiser step over all processes; sets batch_size (see per_device_batch)
    max_steps: int = 10_000
    max_minutes: float = 0.0  # > 0: also stop (and finish the LR schedule) when this wall-clock budget is used
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine decay down to this fraction of the peak LR
    adv_start_step: int = 0  # edit/joint: adversarial terms off before this step (reconstruction warm-up)
    ema_decay: float = 0.0  # > 0: keep an EMA of the trained generator and save it
    # edit/joint: the loss sees the output composited over the region the pipeline pastes (the map grown by
    # pipeline.MAP_DILATION), so the ring of raw output pasted around the map is trained too
    loss_on_paste: bool = False
    # The saved pipeline's map_growth (None: the --init pipeline's). edit/joint train on maps grown by a random
    # 0..2×map_growth px, so the grown map the pipeline gives the editor is one it has learnt to fill.
    map_growth: int | None = None
    # edit/joint: share of samples whose editor input gets a pale or dark rim painted just outside the map
    # (data.paint_rims), as real masks' rims lie beyond the predicted map; needs loss_on_paste (the pasted
    # region covers the rim, so the output never shows it)
    rim_fraction: float = 0.0
    # map: share of samples with such a rim painted just outside the mask and added to the target map, so the map
    # takes in the rims real masks have instead of stopping a pixel short of them
    map_rim_fraction: float = 0.0

    mixed_precision: str = "no"  # no | bf16 | fp16
    channels_last: bool = True
    compile: bool = False
    num_workers: int = 4
    seed: int = 0
    hflip: bool = True
    color_jitter: float = 0.1  # max relative change of brightness, contrast and saturation
    align_jitter: float = 0.0  # > 0: move each crop as a real detection's alignment error would (data.jitter_alignment)
    tight_fraction: float = 0.0  # share of crops cut to a close-up photo's window, the rest mirrored (data.tight_photo)
    no_mask_fraction: float = 0.0  # share of training samples shown without a mask (empty map): "no mask" is an answer too
    # Masks rendered on the fly (face folders; a built dataset is fixed): the appearance families to train on
    # (None: synth.MASK_STYLES, what the embedded weights saw; synth.WORLD_STYLES has them all), families held out
    # of training (to measure generalisation on them), and shares of samples with a hard-negative collar under
    # the chin and with photographic degradation (see synth.make_sample). Validation keeps the default renderer.
    mask_styles: list[str] | None = None
    held_out_styles: list[str] = field(default_factory=list)
    hard_negative_fraction: float = 0.0
    degrade_fraction: float = 0.0
    occluder_fraction: float = 0.0  # a hand, glasses, a cap or hair in front of the mask (synth.add_occluder)
    occluders: list[str] | None = None  # which of synth.OCCLUDERS those are drawn from (None: all)
    high_fraction: float = 0.0  # masks worn high, up the nose bridge (synth.make_sample's high_probability)

    log_every: int = 50
    sample_every: int = 500
    val_every: int = 500
    val_samples: int = 256
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for name in ("batch_size", "grad_accum", "max_steps", "image_size", "val_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.no_mask_fraction < 1.0:
            raise ValueError(f"no_mask_fraction must be in [0, 1), got {self.no_mask_fraction}")
        if self.map_growth is not None and self.map_growth < 0:
            raise ValueError(f"map_growth must be >= 0, got {self.map_growth}")
        if self.align_jitter < 0:
            raise ValueError(f"align_jitter must be >= 0, got {self.align_jitter}")
        if self.map_mask_weight <= 0:
            raise ValueError(f"map_mask_weight must be > 0, got {self.map_mask_weight}")
        if self.rim_fraction > 0 and not self.loss_on_paste:
            raise ValueError("rim_fraction needs loss_on_paste: true (the painted rim must lie inside the pasted region)")
        for name in ("hard_negative_fraction", "degrade_fraction", "occluder_fraction", "rim_fraction", "map_rim_fraction",
                     "tight_fraction", "high_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = sorted(set(self.occluders or ()) - set(OCCLUDERS))
        if unknown or self.occluders == []:
            raise ValueError(f"occluders: unknown or none {unknown} (known: {list(OCCLUDERS)})")
        for name in ("mask_styles", "held_out_styles"):
            unknown = sorted(set(getattr(self, name) or ()) - set(WORLD_STYLES))
            if unknown:
                raise ValueError(f"{name}: unknown mask styles {unknown} (known: {list(WORLD_STYLES)})")
        if not self.train_styles:
            raise ValueError(f"held_out_styles {self.held_out_styles} leave no mask style to train on")
        self.betas = tuple(self.betas)
        EditLossWeights(**self.loss_weights)  # unknown loss names fail here, not mid-run

    def per_device_batch(self, processes: int) -> int:
        """The batch each process takes per forward pass: `global_batch_size` split over processes and
        accumulation steps (it must divide evenly), else `batch_size` as given."""
        if self.global_batch_size <= 0:
            return self.batch_size
        share = processes * self.grad_accum
        if self.global_batch_size % share:
            raise ValueError(f"global_batch_size {self.global_batch_size} does not divide over {processes} processes "
                             f"x grad_accum {self.grad_accum}: use a multiple of {share}")
        return self.global_batch_size // share

    def resume_conflicts(self, saved: dict) -> list[str]:
        """The settings of a checkpoint's config (`saved`, from `to_dict`) that a resumed run may not change:
        those that shape the models, optimisers and sample stream. Batch, LR, length and logging may change."""
        return [f"{k}: checkpoint {saved[k]!r}, now {getattr(self, k)!r}" for k in RESUME_FIXED
                if k in saved and _plain(saved[k]) != _plain(getattr(self, k))]

    @property
    def train_styles(self) -> tuple[str, ...]:
        """The mask styles rendered for training: `mask_styles` (default MASK_STYLES) less `held_out_styles`."""
        return tuple(s for s in (self.mask_styles or MASK_STYLES) if s not in self.held_out_styles)

    @property
    def synth_options(self) -> dict:
        """Keyword arguments for `synth.make_sample` when training samples are rendered on the fly."""
        return {"styles": self.train_styles, "hard_negative_probability": self.hard_negative_fraction,
                "degrade_probability": self.degrade_fraction, "occluder_probability": self.occluder_fraction,
                "occluders": tuple(self.occluders or OCCLUDERS), "high_probability": self.high_fraction}

    @property
    def edit_loss_weights(self) -> EditLossWeights:
        return EditLossWeights(**self.loss_weights)

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: dict | None = None) -> "TrainConfig":
        """Defaults ← YAML file (← its `base:` chain) ← overrides (CLI flags); unknown keys are an error that names
        them."""
        values = read_config_file(path) if path is not None else {}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown config keys {unknown} (known: {sorted(known)})")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)
