"""Hub plumbing shared by every model: config.json from the init args, strict safetensors-only loading."""

from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file

WEIGHTS_NAME = "model.safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt")
REPO_URL = "https://github.com/unmask-hf/unmask-hf"


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file as float32 tensors, with an error that names the file when it is damaged."""
    try:
        return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"Could not read weights file {path}: {e}") from e


def resolve_weights(model_id: str | Path, revision: str | None = None, **download_kwargs) -> Path:
    """Path of `model.safetensors` in a local folder or a Hub repo; pickle checkpoints are refused."""
    folder = Path(model_id)
    if folder.is_dir():
        path = folder / WEIGHTS_NAME
        if not path.is_file():
            pickles = [name for name in PICKLE_NAMES if (folder / name).exists()]
            hint = f" (found {pickles[0]}: pickle checkpoints are refused for safety; convert it to safetensors)" if pickles else ""
            raise FileNotFoundError(f"Missing weights file {path}{hint}")
        return path
    try:
        return Path(hf_hub_download(str(model_id), WEIGHTS_NAME, revision=revision, **download_kwargs))
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise FileNotFoundError(f"Could not get {WEIGHTS_NAME} from Hub repo {model_id!r} (revision {revision}): {e}") from e


class HubModule(
    torch.nn.Module,
    PyTorchModelHubMixin,
    library_name="unmask-hf",
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["unmask-hf", "face-mask-removal", "inpainting", "gan", "pytorch"],
    repo_url=REPO_URL,
):
    """Base of every unmask-hf model: `save_pretrained`/`push_to_hub` from the mixin, strict safetensors loading."""

    @classmethod
    def from_config_and_weights(cls, config: dict, weights: Path, config_name: str, strict: bool = True) -> "HubModule":
        """Build the model from its config and load `weights` (safetensors) into it, errors naming both."""
        try:
            model = cls(**config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Bad model config {config_name}: {e}") from e
        try:
            model.load_state_dict(load_safetensors(weights), strict=strict)
        except RuntimeError as e:
            raise ValueError(f"Weights in {weights} do not match the config in {config_name}: {e}") from e
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        # The mixin's default falls back to pickle files and loads non-strictly; we do neither.
        path = resolve_weights(model_id, revision, cache_dir=cache_dir, force_download=force_download,
                               local_files_only=local_files_only, token=token)
        model = cls.from_config_and_weights(model_kwargs, path, f"{cls.__name__}({model_kwargs})", strict=strict)
        return model.to(map_location)
