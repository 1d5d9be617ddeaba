"""`UnmaskPipeline`: the one code path from a photo to an unmasked photo (app, CLI, training output, evaluation).

    photo ─► faces (detect → align to the training crop)  [aligned=True: the whole image is the crop]
          ─► MapGenerator → binary map                     [or the user's mask]
          ─► EditGenerator(crop ⊕ map) → crop×(1−M) + generated×M
          ─► RefineGenerator, when the weights have one and the face is larger than the crop: detail at 2×
          ─► paste back inside the mask only ─► result: image, mask, overlay, faces
"""

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from PIL import Image

from .blend import blend_patch, dilate, single_tone, to_tone
from .faces import (BOTTOM_TOUCH, TEMPLATE_LANDMARKS, DetectedFace, FaceDetector, align_face, below_matrix, below_zoom,
                    crop_scale, map_to_photo, marked_face, paste_back, reaches_below, refine_landmarks, warp_face)
from .model_card import render_model_card
from .io import ImageInput, images_to_tensor, load_image, load_mask, tensor_to_arrays
from .models import EditGenerator, LandmarkRefiner, MapGenerator, RefineGenerator
from .models.edit_generator import grow_map, paint_growth
from .models.map_generator import clean_maps
from .models.refine_generator import refine_inputs
from .models.hub import WEIGHTS_NAME, HubModule, resolve_weights
from .viz import overlay_mask

MAP_DILATION = 2  # pixels at the model's working size; see _assemble
# No face mask reaches above the eyes: the map module's pixels above this row of the aligned crop (the template's eye
# line less a fifth of the eye distance, as a fraction of the side) are caps, hair or sunglasses. Rendered masks worn
# high (synth.HIGH_RAISE) stay below it; respirator straps cross it at the crop's sides on 3 % of them, by 0.1 px.
MAP_TOP = float(TEMPLATE_LANDMARKS[:2, 1].mean() - 0.2 * (TEMPLATE_LANDMARKS[1, 0] - TEMPLATE_LANDMARKS[0, 0]))
BELOW_OVERLAP = 3  # crop pixels by which the fill below a face reaches under the face's own fill (see _below_part)
# The map below a face's crop keeps only pixels coloured like the mask where it leaves the crop (its last EDGE_ROWS
# rows): within BELOW_COLOUR times the spread of those colours (capped, plus a floor for a plain mask) of their
# mean. The zoomed-out crop's map also marks collars, scarves and shirts under the chin; those rarely match the mask.
EDGE_ROWS = 6
BELOW_COLOUR = 2.5
# A drawn mask over more than this share of the face's eyes-to-mouth box and of both eyes leaves nothing to predict
# the face from. The eyes count on their own: a mask painted up to the lower eyelids (an N95 worn high) fills most
# of the box but leaves the eyes, and is a mask to remove.
WHOLE_FACE = 0.9
EYE_HALF_SIDE = 0.05  # of the crop: the square around each eye's landmark that must be covered too


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, as PyTorch reports them)."""
    return any(getattr(torch.cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported",
                                                                         "_is_amx_tile_supported"))


DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default"
PIPELINE_CONFIG = "pipeline.json"
SUBFOLDERS = {"map": MapGenerator, "edit": EditGenerator}
# Weights without a refiner paste the editor's fill upscaled; without a landmark refiner, faces are aligned by the
# detector's landmarks alone.
OPTIONAL_SUBFOLDERS = {"refine": RefineGenerator, "align": LandmarkRefiner}
REQUIRED_FILES = [PIPELINE_CONFIG] + [f"{name}/{file}" for name in SUBFOLDERS for file in ("config.json", WEIGHTS_NAME)]


@dataclass
class FaceResult:
    """One processed face: where it was, and the aligned crops the models saw and made (`aligned_map`: the mask the
    map module found, or the drawn one, on the crop)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    aligned_input: Image.Image
    aligned_map: Image.Image
    aligned_output: Image.Image


@dataclass
class UnmaskResult:
    """The unmasked photo (same size as the input); the face masks found (255 = mask: the map module's maps at the
    photo's size, or the drawn mask) and their overlay; what the fill replaced (`changed`: those maps grown a few
    pixels so the paste covers the mask's rim; every pixel outside it is the input's); per-face details."""

    image: Image.Image
    mask: Image.Image
    overlay: Image.Image
    faces: list[FaceResult]
    changed: Image.Image
    notes: list[str] = field(default_factory=list)


# per crop: the mask found (the map module's map or the drawn mask) S×S bool, the region the editor filled (that map
# grown by map_growth) S×S bool, generated S×S×3, composited S×S×3
_Output = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Crop:
    """A face crop on its way through the models, with what is needed to put it back."""

    photo_index: int
    crop: np.ndarray  # S×S×3 uint8
    matrix: np.ndarray | None  # 2×3 photo → crop affine; None when the photo itself is the crop
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    user_mask: np.ndarray | None  # S×S bool, when the user drew the mask
    big: np.ndarray | None = None  # the same face at the refiner's k×S, when the refiner adds detail for the paste


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Missing {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _load_module(cls: type[HubModule], folder: Path) -> HubModule:
    config = _read_json(folder / "config.json")
    return cls.from_config_and_weights(config, resolve_weights(folder), str(folder / "config.json")).eval()


class UnmaskPipeline:
    """Both modules plus the pre- and post-processing around them.

    >>> pipe = UnmaskPipeline.from_pretrained()            # the weights embedded in the package
    >>> result = pipe("photo.jpg")                          # result.image, .mask, .overlay, .faces
    """

    def __init__(self, map_generator: MapGenerator, edit_generator: EditGenerator, threshold: float = 0.5,
                 device: str | torch.device | None = None, info: dict | None = None, batch_size: int = 16,
                 map_growth: int = 0, refiner: RefineGenerator | None = None, fill_below: bool = True,
                 bf16: bool | None = None, landmark_refiner: LandmarkRefiner | None = None):
        if map_generator.unet.config.image_size != edit_generator.unet.config.image_size:
            raise ValueError("The map and edit modules must share one image_size")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if map_growth < 0:
            raise ValueError(f"map_growth must be >= 0, got {map_growth}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.map_generator = map_generator.eval().to(self.device)
        self.edit_generator = edit_generator.eval().to(self.device)
        # Optional detail stage: the fill of a face larger than the crop is refined at k× the working size.
        self.refiner = None if refiner is None else refiner.eval().to(self.device)
        # Optional: detected faces' landmarks corrected from the masked face itself before alignment.
        self.landmark_refiner = None if landmark_refiner is None else landmark_refiner.eval().to(self.device)
        self.threshold = threshold
        # Pixels the predicted map grows by before the editor fills it: on real photos the map module stops a
        # pixel short of the mask's rim, which the fill then shows as a pale line along its upper edge (README,
        # "Pasting back"). The grown ring is painted from the map's own pixels in the editor's input.
        self.map_growth = map_growth
        # Where a predicted map runs off the aligned crop's bottom edge (a mask hanging below the chin), fill its
        # continuation from a second crop reaching lower (README, "Masks that hang below the face's crop").
        self.fill_below = fill_below
        self.batch_size = batch_size
        # The modules run under bfloat16 autocast where a CPU computes bf16 natively (None: decide so): about a
        # quarter faster per face, within 0.01 dB (README, "Benchmarks"). Elsewhere bf16 is emulated and slower.
        self.bf16 = (self.device.type == "cpu" and native_bf16_cpu()) if bf16 is None else bf16
        self.info = info or {"status": "untrained"}  # how the weights were made; goes into the model card
        self._detector = None

    @property
    def image_size(self) -> int:
        return self.map_generator.unet.config.image_size

    # ---------------------------------------------------------------- loading and saving

    @classmethod
    def from_pretrained(cls, model_id: str | Path | None = None, revision: str | None = None,
                        device: str | torch.device | None = None, token: str | bool | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        bf16: bool | None = None) -> "UnmaskPipeline":
        """Load both modules: no argument → the embedded default weights; a folder → that folder; else a Hub repo id.
        `bf16`: run the modules under bfloat16 autocast (None: on a CPU that computes bf16 natively)."""
        folder = Path(model_id) if model_id is not None else DEFAULT_WEIGHTS
        if model_id is not None and not folder.is_dir():
            if folder.exists() or str(model_id).startswith((".", "/")) or str(model_id).count("/") > 1:
                raise FileNotFoundError(f"No model folder at {model_id}")
            try:
                folder = Path(snapshot_download(str(model_id), revision=revision, token=token, cache_dir=cache_dir,
                                                local_files_only=local_files_only,
                                                allow_patterns=[PIPELINE_CONFIG, "README.md", "map/*", "edit/*",
                                                                "refine/*", "align/*"]))
            except (RepositoryNotFoundError, RevisionNotFoundError) as e:
                raise FileNotFoundError(f"Hub repo {model_id!r} (revision {revision or 'main'}) not found: {e}") from e
            except LocalEntryNotFoundError as e:  # no connection and nothing cached, or a revision with no files
                raise FileNotFoundError(f"Could not get Hub repo {model_id!r} (revision {revision or 'main'}): {e}") from e
            except HfHubHTTPError as e:
                raise OSError(f"Could not download {model_id!r} from the Hub: {e}") from e
            missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
            if missing:
                raise FileNotFoundError(f"Hub repo {model_id!r} (revision {revision or 'main'}) has no {', '.join(missing)}")
        config = _read_json(folder / PIPELINE_CONFIG)
        modules = {name: _load_module(module_cls, folder / name) for name, module_cls in SUBFOLDERS.items()}
        modules |= {name: _load_module(module_cls, folder / name) for name, module_cls in OPTIONAL_SUBFOLDERS.items()
                    if (folder / name / "config.json").is_file()}
        info = config.get("info", {})
        if info.get("status") == "untrained":
            warnings.warn(f"The weights in {folder} are untrained: outputs are not meaningful yet.", stacklevel=2)
        return cls(modules["map"], modules["edit"], threshold=config.get("threshold", 0.5), device=device, info=info,
                   map_growth=config.get("map_growth", 0), refiner=modules.get("refine"), bf16=bf16,
                   landmark_refiner=modules.get("align"))

    def save_pretrained(self, save_directory: str | Path, dtype: torch.dtype | None = None,
                        repo_id: str | None = None) -> Path:
        """Write `pipeline.json`, `map/`, `edit/`, `refine/` and `align/` when there is a refiner or a landmark
        refiner (config.json + model.safetensors each) and the model card."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        modules = [("map", self.map_generator), ("edit", self.edit_generator), ("refine", self.refiner),
                   ("align", self.landmark_refiner)]
        for name, module in modules:
            if module is None:  # no stale module from an earlier save in the same folder
                shutil.rmtree(folder / name, ignore_errors=True)
                continue
            # Save a CPU copy so `dtype` (fp16 for the embedded weights) never touches the live model.
            copy = type(module)(**module._hub_mixin_config)
            copy.load_state_dict(module.state_dict())
            copy.to(dtype or torch.float32).save_pretrained(folder / name)
            (folder / name / "README.md").unlink(missing_ok=True)  # one card, at the top
        config = {"threshold": self.threshold, "map_growth": self.map_growth, "image_size": self.image_size,
                  "info": self.info}
        (folder / PIPELINE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        self.model_card(repo_id).save(folder / "README.md")
        return folder

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None,
                    dtype: torch.dtype | None = None, commit_message: str = "Upload unmask-hf pipeline") -> str:
        """Create the repo if needed and upload what `save_pretrained` writes; returns the commit URL."""
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, dtype=dtype, repo_id=repo_id)
            return str(api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message))

    def model_card(self, repo_id: str | None = None) -> ModelCard:
        """The README.md of a saved pipeline: metadata, intended use, limitations, training and results."""
        return render_model_card(self, repo_id)

    # ---------------------------------------------------------------- the models on tensors

    def autocast(self) -> torch.autocast:
        """The context the modules run in: bfloat16 autocast when `self.bf16`, else full precision."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.inference_mode()
    def predict_maps(self, crops: torch.Tensor, top: float = MAP_TOP) -> torch.Tensor:
        """Aligned crops N×3×S×S in [-1, 1] → binary maps N×1×S×S in {0, 1} (1 = mask pixel): nothing above the
        row `top` (a fraction of the side), specks removed."""
        crops = crops.to(self.device)
        with self.autocast():
            found = self.map_generator.probability(crops) > self.threshold
        found[..., : round(top * found.shape[-2]), :] = False
        return clean_maps(found.to(crops.dtype))

    def fill_inputs(self, crops: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For predicted maps N×1×S×S: (the regions the editor fills, the maps grown by `map_growth` px; the crops
        as the editor sees them, the grown ring painted from the map's own pixels)."""
        regions = grow_map(maps, self.map_growth)
        return regions, paint_growth(crops, maps, regions, self.map_growth)

    @torch.inference_mode()
    def predict(self, crops: torch.Tensor, masks: torch.Tensor | None = None,
                maps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned crops N×3×S×S in [-1, 1] → (filled regions N×1×S×S, generated crops N×3×S×S in [-1, 1]).

        The regions come from the map module's maps (`maps`, when already predicted) through `fill_inputs`;
        `masks` (N×1×S×S in {0, 1}: a user's or the true mask) are the exact regions instead. Composite with
        `models.composite`. Training validation and evaluation call this, so they measure what users get.
        """
        crops = crops.to(self.device)
        if masks is not None:
            regions, inputs = masks.to(self.device, crops.dtype), crops
        else:
            maps = self.predict_maps(crops) if maps is None else maps.to(self.device, crops.dtype)
            regions, inputs = self.fill_inputs(crops, maps)
        return regions, self._generate(inputs, regions)

    def _generate(self, inputs: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """The editor's raw output for crops and the regions to fill, in the crops' dtype."""
        with self.autocast():
            return self.edit_generator.generate(inputs, regions).to(inputs.dtype)

    @torch.inference_mode()
    def refine(self, big_crop: np.ndarray, generated: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The detail stage for one face: its crop at k× the working size (kS×kS×3 uint8), the editor's raw output
        (S×S×3 uint8) and the region pasted (S×S bool) → (the refined kS×kS×3 crop, that region at kS×kS)."""
        coarse, region_big = refine_inputs(images_to_tensor([big_crop]).to(self.device),
                                           images_to_tensor([generated]).to(self.device),
                                           torch.from_numpy(region)[None, None].to(self.device))
        with self.autocast():
            refined = self.refiner(coarse, region_big).float()
        return tensor_to_arrays(refined)[0], region_big[0, 0].cpu().numpy() > 0.5

    def _wants_detail(self, face_side: float) -> bool:
        """Whether a face `face_side` photo pixels across gets the detail stage: only a refiner and a face larger
        than the crop (a smaller face is pasted shrunk, with all the detail its pixels hold)."""
        return self.refiner is not None and face_side > self.image_size

    @torch.inference_mode()
    def _run(self, crops: list[_Crop]) -> list[_Output]:
        """Run the models over crops in batches → per crop (map, region filled, generated, composited: _Output)."""
        results = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            x = images_to_tensor([c.crop for c in chunk]).to(self.device)
            if all(c.user_mask is not None for c in chunk):  # every region drawn: no map module needed
                maps = regions = torch.zeros_like(x[:, :1])
                inputs = x
            else:
                maps = self.predict_maps(x)
                regions, inputs = self.fill_inputs(x, maps)
            for i, c in enumerate(chunk):
                if c.user_mask is not None:  # a drawn mask is the exact region, on the crop as it is
                    maps[i, 0] = regions[i, 0] = torch.from_numpy(c.user_mask).to(x)
                    inputs[i] = x[i]
            gen = tensor_to_arrays(self._generate(inputs, regions))
            for i, c in enumerate(chunk):
                found, region = maps[i, 0].cpu().numpy() > 0.5, regions[i, 0].cpu().numpy() > 0.5
                results.append((found, region, gen[i], np.where(region[..., None], gen[i], c.crop)))
        return results

    # ---------------------------------------------------------------- photos in, photos out

    def __call__(self, image: ImageInput | list[ImageInput], aligned: bool = False,
                 mask: ImageInput | list[ImageInput | None] | None = None,
                 face_box: tuple[float, float, float, float] | list | None = None,
                 eyes: tuple[tuple[float, float], tuple[float, float]] | list | None = None,
                 ) -> UnmaskResult | list[UnmaskResult]:
        """Unmask a photo (PIL image, H×W×3 uint8 array, path or bytes) or a list of them (run as one batch).

        aligned=True treats the whole image as one aligned face crop; `mask` replaces the map module's
        prediction with a user-drawn mask (white / opaque = remove), the same size as the image.
        `face_box` (x0, y0, x1, y1) or `eyes` ((x, y), (x, y)), in image pixels, mark the one face to unmask
        instead of detecting faces (for a face the detector misses). With a list of images, each of `mask`,
        `face_box` and `eyes` is a list of the same length (None entries: as if not given).
        """
        single = not isinstance(image, list)
        images = [image] if single else image
        masks, boxes, eye_pairs = ([value] if single else _per_image(value, len(images), name)
                                   for value, name in ((mask, "masks"), (face_box, "face boxes"), (eyes, "eye pairs")))
        if aligned and any(v is not None for v in boxes + eye_pairs):
            raise ValueError("aligned=True treats the whole image as the face: don't mark a face box or eyes too")
        photos = [load_image(im) for im in images]
        user_masks = [None if m is None else load_mask(m, p.size) for m, p in zip(masks, photos)]
        marks = [None if b is None and e is None else marked_face(p.size, box=b, eyes=e)
                 for b, e, p in zip(boxes, eye_pairs, photos)]
        notes: list[list[str]] = [[] for _ in photos]
        crops: list[_Crop] = []
        for i, (photo, user_mask, mark) in enumerate(zip(photos, user_masks, marks)):
            if user_mask is not None and not user_mask.any():
                notes[i].append("The drawn mask is empty: nothing was changed. Paint over the face mask to remove it.")
                continue
            found = (self._aligned_crops(i, photo, user_mask) if aligned
                     else self._face_crops(i, photo, user_mask, notes[i], mark))
            crops += _drop_covered_faces(found, notes[i])
        outputs = self._run(crops)
        # A mask hanging below a face's crop: the same face once more on a crop that reaches lower (faces.below_matrix).
        belows = [self._below_crop(c, region, photos[c.photo_index]) for c, (_, region, _, _) in zip(crops, outputs)]
        below_outputs = iter(self._run([b[0] for b in belows if b is not None]))
        belows = [None if b is None else (*b, next(below_outputs)) for b in belows]
        results = []
        for i, (photo, user_mask) in enumerate(zip(photos, user_masks)):
            mine = [piece for piece in zip(crops, outputs, belows) if piece[0].photo_index == i]
            results.append(self._assemble(photo, user_mask, mine, notes[i]))
        return results[0] if single else results

    def _aligned_crops(self, index: int, photo: Image.Image, user_mask: np.ndarray | None) -> list[_Crop]:
        size = self.image_size
        crop = np.asarray(photo.resize((size, size), Image.BICUBIC))
        small_mask = None
        if user_mask is not None:
            small_mask = np.asarray(Image.fromarray(user_mask).resize((size, size), Image.BILINEAR)) > 0
        big = None
        if self._wants_detail(max(photo.size)):
            big = np.asarray(photo.resize((size * self.refiner.scale,) * 2, Image.BICUBIC))
        return [_Crop(index, crop, None, (0.0, 0.0, float(photo.width), float(photo.height)), None, small_mask, big)]

    @property
    def detector(self) -> FaceDetector:
        """The face detector, loaded on first use (aligned inputs never need it)."""
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    def _face_crops(self, index: int, photo: Image.Image, user_mask: np.ndarray | None, notes: list[str],
                    mark: DetectedFace | None = None) -> list[_Crop]:
        """One aligned crop per detected face, or for the face the user marked (the user's mask warped along with it)."""
        rgb = np.asarray(photo)
        faces = [mark] if mark is not None else self.detector(rgb)
        if mark is None and self.landmark_refiner is not None:  # a user's marks are kept as given
            faces = [replace(f, landmarks=refine_landmarks(rgb, f.landmarks, self.landmark_refiner)) for f in faces]
        if not faces:
            if user_mask is not None:
                notes.append("No face found: the drawn mask was filled treating the whole image as one face.")
                return self._aligned_crops(index, photo, user_mask)
            notes.append("No face found in the image: nothing was changed.")
            return []
        mask_rgb = None if user_mask is None else np.repeat(user_mask[..., None].astype(np.uint8) * 255, 3, axis=2)
        crops = []
        for face in faces:
            aligned = align_face(rgb, face.landmarks, self.image_size)
            # The same warp for the user's mask, so it lands on the same crop pixels as the face (not mirrored past
            # the photo's edge: the mask must not grow there).
            user_crop = None if mask_rgb is None else align_face(mask_rgb, face.landmarks, self.image_size,
                                                                 mirror=False).crop[..., 0] > 127
            big = None
            if self._wants_detail(self.image_size / crop_scale(aligned.matrix)):
                big = align_face(rgb, face.landmarks, self.image_size * self.refiner.scale).crop
            crops.append(_Crop(index, aligned.crop, aligned.matrix, face.box, face.landmarks, user_crop, big))
        return crops

    def _assemble(self, photo: Image.Image, user_mask: np.ndarray | None,
                  pieces: list[tuple[_Crop, _Output, tuple[_Crop, np.ndarray, _Output] | None]],
                  notes: list[str]) -> UnmaskResult:
        original = np.asarray(photo)
        out = original.copy()
        h, w = out.shape[:2]
        found_mask = np.zeros((h, w), dtype=bool)  # the face masks found: the map module's maps at the photo's size
        changed = np.zeros((h, w), dtype=bool)  # what the fill replaced: those maps grown for the paste
        faces = []
        for crop, (found, region, generated, composited), below in pieces:
            if below is not None:  # first the fill below the crop, so the face's own fill is feathered onto it
                below_crop, part, (_, _, below_generated, _) = below
                out, pasted = paste_back(out, below_generated, dilate(part, MAP_DILATION), below_crop.matrix)
                changed |= pasted > 0
                found_mask |= map_to_photo(part, below_crop.matrix, w, h)
            # Grow the map a little so the paste covers the mask's rim instead of letting fabric show through;
            # a user's mask is the exact limit (the crop-space copy only says which face covers which part).
            paste = dilate(region, MAP_DILATION)
            patch = generated
            if crop.big is not None:
                patch, paste = self.refine(crop.big, generated, paste)
            if crop.matrix is None:
                out, region_full = self._paste_aligned(out, paste, patch, user_mask)
                found_mask |= _resize_map(found, w, h)
            else:
                detail_scale = len(patch) / len(region)  # patch pixels per pixel the editor generated
                out, pasted = paste_back(out, patch, paste, crop.matrix * detail_scale, user_mask, detail_scale)
                region_full = pasted > 0
                found_mask |= map_to_photo(found, crop.matrix, w, h)
            changed |= region_full
            if user_mask is None and not region.any():
                notes.append(f"No face mask found on the face at {_box_text(crop.box)}: it was left as it is.")
            faces.append(FaceResult(crop.box, crop.landmarks, Image.fromarray(crop.crop),
                                    Image.fromarray(found.astype(np.uint8) * 255), Image.fromarray(composited)))
        if user_mask is not None and pieces:  # the user's mask is the contract: nothing outside it changes
            out = np.where(user_mask[..., None], out, original)
            found_mask = changed = user_mask
        tone = single_tone(original, changed)
        if tone is not None:  # a black-and-white photo stays black and white (the models paint skin colour)
            out[changed] = to_tone(out[changed], tone)
        mask = Image.fromarray(found_mask.astype(np.uint8) * 255)
        return UnmaskResult(Image.fromarray(out), mask, overlay_mask(photo, mask), faces,
                            Image.fromarray(changed.astype(np.uint8) * 255), notes)

    def _below_crop(self, crop: _Crop, region: np.ndarray, photo: Image.Image) -> tuple[_Crop, np.ndarray] | None:
        """When `region`, the predicted map on `crop`, runs off the crop's bottom edge inside the photo (and
        `fill_below` is on): the same face on a crop reaching lower (faces.below_matrix) and the part of it to paste
        (`_below_part`). The editor fills that crop's own map down to the face crop's edge and only the part below
        it, so clothing its map also marks stays as context. Else None; a drawn mask is exact and an aligned input
        is the whole photo: neither gets one."""
        if (not self.fill_below or crop.matrix is None or crop.user_mask is not None
                or not reaches_below(region, crop.matrix, *photo.size)):
            return None
        matrix = below_matrix(crop.matrix, self.image_size)
        lower = warp_face(np.asarray(photo), matrix, self.image_size).crop
        zoom = below_zoom(1)  # face crop → this crop, in fractions of the side: its eyes sit higher
        top = zoom[1, 1] * MAP_TOP + zoom[1, 2]
        lower_map = self.predict_maps(images_to_tensor([lower]).to(self.device), top)[0, 0].cpu().numpy() > 0.5
        part, above_edge = _below_part(region, crop.crop, lower_map, lower)
        # Empty, or still running off this crop's bottom: what hangs that low is a scarf, a hand or a mask cut by the
        # photo's edge, with no chin or neck below it to fill towards (the dev photos: a skin patch on a bandana, a
        # pale band, a filled hand).
        if not part.any() or part[-1].sum() >= BOTTOM_TOUCH * self.image_size:
            return None
        hole = (lower_map & above_edge[:, None]) | part
        return _Crop(crop.photo_index, lower, matrix, crop.box, crop.landmarks, hole), part

    def _paste_aligned(self, photo: np.ndarray, paste: np.ndarray, patch: np.ndarray,
                       user_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Composite at full resolution: the pasted region (grown as in the detection path) and the patch
        (the generated crop, or its refined version at k×S) are resized up and blended in (`blend.blend_patch`),
        pixels outside stay exact."""
        h, w = photo.shape[:2]
        if user_mask is not None:
            full = user_mask
        else:
            full = _resize_map(paste, w, h)
        big = np.asarray(Image.fromarray(patch).resize((w, h), Image.BICUBIC))
        upscale = max(h, w) / self.image_size  # photo pixels per pixel the editor generated: where grain goes
        return blend_patch(photo, big, full, max(h, w), upscale, exact_edge=user_mask is not None), full


def _below_part(region: np.ndarray, crop: np.ndarray, below_region: np.ndarray,
                below_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part of the map on a face's `below` crop (`below_region` on `below_crop`) that goes on where `region`, the
    map on the face's own `crop`, runs off that crop's bottom edge: from BELOW_OVERLAP pixels above the edge down,
    the pixels coloured like the mask at the edge that continue it straight down from the columns where it leaves
    the crop. Also returns which rows of the `below` crop lie above the face crop's bottom edge."""
    size = len(region)
    edge = crop[-EDGE_ROWS:][region[-EDGE_ROWS:]].astype(np.float32)
    spread = min(float(np.linalg.norm(edge.std(0))), 30.0) + 12.0  # 12: sensor noise and shading on a plain mask
    alike = np.linalg.norm(below_crop.astype(np.float32) - edge.mean(0), axis=2) < BELOW_COLOUR * spread
    # Each below-crop pixel centre's column and row in the face crop's coordinates.
    to_face, centres = np.linalg.inv(below_zoom(size)), np.arange(size) + 0.5
    x, y = to_face[0, 0] * centres + to_face[0, 2], to_face[1, 1] * centres + to_face[1, 2]
    rows = y >= size - BELOW_OVERLAP
    edge_columns = np.zeros(size, bool)  # below-crop columns where `region` leaves the face crop
    inside = (x >= 0) & (x < size)
    edge_columns[inside] = region[-1, x[inside].astype(int)]
    allowed = below_region & alike & rows[:, None]
    part = np.zeros_like(allowed)
    first = int(np.argmax(rows))
    part[first] = allowed[first] & edge_columns
    for r in range(first + 1, size):  # straight down only: a mask narrows below the chin, clothing widens
        part[r] = allowed[r] & part[r - 1]
    return part, y < size


def _resize_map(crop_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """An S×S bool map of a whole-photo crop (aligned input) at the photo's size: bilinear, then > 0.5."""
    soft = F.interpolate(torch.from_numpy(crop_map.astype(np.float32))[None, None], size=(height, width),
                         mode="bilinear", align_corners=False)
    return soft[0, 0].numpy() > 0.5


def _per_image(value, count: int, name: str) -> list:
    """A per-image argument of a batch call: a list of `count` entries, or one value (None too) for every image."""
    if not isinstance(value, list):
        return [value] * count
    if len(value) != count:
        raise ValueError(f"Got {len(value)} {name} for {count} images")
    return value


def _covered(mask: np.ndarray, part: tuple[float, float, float, float]) -> float:
    """Share of `part` (left, top, right, bottom, in fractions of the side) that a square S×S bool mask covers."""
    size = mask.shape[0]
    left, top, right, bottom = (round(v * size) for v in part)
    return float(mask[top:bottom + 1, left:right + 1].mean())


def _drop_covered_faces(crops: list[_Crop], notes: list[str]) -> list[_Crop]:
    """The crops whose drawn mask leaves some of the face visible; a note for each one left unchanged."""
    # The eyes-to-mouth box and a square around each eye, in the aligned crop's template.
    parts = [(*TEMPLATE_LANDMARKS.min(0), *TEMPLATE_LANDMARKS.max(0))]
    half = EYE_HALF_SIDE
    parts += [(x - half, y - half, x + half, y + half) for x, y in TEMPLATE_LANDMARKS[:2]]
    kept = []
    for crop in crops:
        if crop.user_mask is not None and all(_covered(crop.user_mask, part) > WHOLE_FACE for part in parts):
            notes.append(f"The drawn mask covers the whole face at {_box_text(crop.box)} (eyes included): there is "
                         "nothing left to predict it from, so it was left unchanged. Paint over the face mask only.")
            continue
        kept.append(crop)
    return kept


def _box_text(box: tuple[float, float, float, float]) -> str:
    x0, y0, x1, y1 = (round(v) for v in box)
    return f"x {x0}-{x1}, y {y0}-{y1}"
