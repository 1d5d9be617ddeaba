"""The model card (README.md) written beside saved weights: Hub metadata plus what people need to judge the model."""

from huggingface_hub import ModelCard, ModelCardData

STATUS_NOTES = {
    "untrained": "**Untrained**: these weights are the project's initialisation only (no training yet). "
                 "Outputs are not meaningful; they exist so that the app and the tests run out of the box.",
    "interim": "**Interim (CPU-trained)**: briefly trained on a CPU; a GPU-trained release will replace them.",
    "trained": "Trained with the project's own training script (see below).",
}

REFINER_NOTE = """**Detail stage** (`refine/`, `RefineGenerator`): for faces larger than the crop, the fill upscaled {scale}× over
   the photo's own pixels gets a learned residual inside the region, so the patch pasted back is not a soft blur."""
ALIGN_NOTE = """**Landmark refiner** (`align/`, `LandmarkRefiner`): before both modules, a small CNN corrects the face
   detector's five landmarks from the masked face itself (the detector guesses the nose and mouth under the mask),
   so the crop the modules see is aligned as in training."""

TEMPLATE = """---
{card_data}
---

# unmask-hf: face-mask removal ({status})

{status_note}

Two-stage GAN that removes a face mask from a photo and predicts the face underneath:
1. **Map module** (`map/`, `MapGenerator`): a modified U-Net that segments the face mask (binary map, 1 = mask pixel).
2. **Editing module** (`edit/`, `EditGenerator`): a U-Net of the same design that takes image ⊕ map and fills the
   masked region; the result is composited as input × (1 − M) + generated × M, so pixels outside the map are unchanged.
{extras}
Working size {image_size}×{image_size} (aligned face crops), map threshold {threshold}.

## Usage
```python
from unmask_hf import UnmaskPipeline
pipe = UnmaskPipeline.from_pretrained({load_arg})
result = pipe("photo.jpg")   # result.image, result.mask, result.overlay, result.faces
```

## Training
{training}

## Results
{results}

## Intended use and limitations
- For research, education and creative use: seeing what a masked face might look like, restoring photos.
- The output is an **AI-generated prediction, not a photograph of this person**. The region under the mask is
  invented from the training data; it is **not evidence of anyone's identity** and must not be used to identify people.
- Trained on aligned, mostly frontal faces with synthetic masks; strong poses, occlusions, unusual lighting and
  real masks unlike the synthetic ones degrade results. Performance across demographic groups has not been audited.
- Training data (listed under *Training*): CelebA faces (non-commercial research licence; the images are not owned
  by CelebA) and, where listed, FFHQ faces (CC BY-NC-SA 4.0 as a collection, each photo under its own Flickr
  licence), with masks rendered by the project's own procedural renderer.
"""


def _describe(value) -> str:
    """One line for a card entry: nested dicts as `key: value` pairs, floats rounded."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_describe(v)}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_model_card(pipe, repo_id: str | None = None) -> ModelCard:
    """Fill the template from `pipe.info` (status, commands, data, hardware, time, results markdown, and
    `not_kept`: chunks trained and measured but not installed, each a dict of chunk, result and command).

    `repo_id` (when pushing) goes into the usage example; without it the example loads the embedded weights.
    """
    info = pipe.info
    status = info.get("status", "untrained")
    # Trained weights inherit their training data's terms (CelebA: non-commercial research only); the code is Apache-2.0.
    licence = {"license": "apache-2.0"} if status == "untrained" else {
        "license": "other", "license_name": "celeba-non-commercial-research",
        "license_link": "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"}
    card_data = ModelCardData(
        library_name="unmask-hf", pipeline_tag="image-to-image", **licence,
        tags=["unmask-hf", "face-mask-removal", "inpainting", "gan", "pytorch", status],
        datasets=info.get("datasets"),
    )
    training_lines = [f"- {key.replace('_', ' ').capitalize()}: {_describe(value)}" for key, value in info.items()
                      if key not in ("status", "commands", "results", "datasets", "not_kept")]
    if info.get("commands"):
        training_lines.append("- Commands:\n```bash\n" + "\n".join(info["commands"]) + "\n```")
    if info.get("not_kept"):  # chunks trained from these weights that validation did not favour
        training_lines.append("- Chunks measured and not kept (the weights above stayed):\n" + "\n".join(
            f"  - {c['chunk']}: {c['result']}" + (f"\n    `{c['command']}`" if c.get("command") else "")
            for c in info["not_kept"]))
    extras = ([REFINER_NOTE.format(scale=pipe.refiner.scale)] if pipe.refiner is not None else []) + (
        [ALIGN_NOTE] if pipe.landmark_refiner is not None else [])
    return ModelCard(TEMPLATE.format(
        card_data=card_data.to_yaml(), status=status, status_note=STATUS_NOTES.get(status, ""),
        image_size=pipe.image_size, threshold=pipe.threshold, load_arg=repr(repo_id) if repo_id else "",
        extras="".join(f"{number}. {note}\n" for number, note in enumerate(extras, start=3)),
        training="\n".join(training_lines) or "Not recorded.", results=info.get("results", "Not measured yet."),
    ))
