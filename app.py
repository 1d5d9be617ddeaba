"""The Gradio app: unmask a photo in the browser, see the face mask the model found, correct it and re-run.

    python app.py                              # the weights embedded in the package, http://127.0.0.1:7860
    UNMASK_MODEL=org/name python app.py        # or --model org/name (or a local folder): other weights
    python app.py --model org/name --revision <sha> --lock-model   # a public server: pinned, visitors can't switch
    python app.py --host 0.0.0.0 --port 8080   # the port also from GRADIO_SERVER_PORT; --share: a public link

API (gradio_client), see README.md:
    /unmask(image, model, aligned, opacity)
    /unmask_with_mask(image, mask, model, aligned, opacity)     mask: white = remove
    /unmask_face(image, mark_by, points, model, opacity)        a face marked by hand: "eyes" or "box", "x, y, x, y"
All three return (result PNG, mask overlay, (before, after), per-face gallery, download PNG, editor value, status).

Every inference goes through `UnmaskPipeline`; this file is only the UI around it.
"""

import argparse
import os
import re
import tempfile
import time
import uuid
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reporting

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio import processing_utils, route_utils  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.datastructures import FormData  # noqa: E402
from starlette.formparsers import MultiPartException  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402

from unmask_hf import UnmaskPipeline, UnmaskResult  # noqa: E402
from unmask_hf.io import PREDICTION_LABEL, load_image, load_mask, save_prediction_png  # noqa: E402
from unmask_hf.viz import draw_points, fit_square, mask_layer, overlay_mask, square_box  # noqa: E402

EXAMPLES = sorted((Path(__file__).parent / "examples").glob("*.jpg"))
HUB_ID = re.compile(r"^\w[\w.-]*/\w[\w.-]*$")
OPACITY = 0.45  # the overlay's default opacity (the same as the pipeline's)
EDITOR_SIDE = 768  # the mask editor's square canvas: the photo is fitted into it, the drawn mask scaled back
MAX_FILE_SIZE = "30mb"  # uploads; a 50 MP photo (the pipeline's limit) is about this size as a JPEG
MARK_SIDE = 1024  # the preview to click eyes on: at most this many pixels a side, clicks scaled back to the photo
MARKS = ("eyes", "box")  # how a visitor marks a face the detector missed: its two eyes, or two corners of a box
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # in the marked points' text: "x, y, x, y", any separators
CACHE_CLEANUP = (60, 600)  # every minute, delete uploads and results older than 10 minutes (all of them on exit)


def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's `processing_utils.save_pil_to_cache`, except that the file appears whole: written aside, then renamed.

    gradio names every image output after the hash of its bytes and rewrites that file in place. Two users sending
    the same photo get byte-identical outputs (the overlay, the gallery's crops...), so one request truncated the
    file while the server was sending it to the other: "Too little data for declared Content-Length" on the server,
    "peer closed connection without sending complete message body" for that client (gradio 6.31)."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / processing_utils.hash_bytes(data) / f"{name}.{format}").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with staging:
            staging.write(data)
        os.replace(staging.name, path)  # a response being sent keeps reading the old copy: the same bytes
    except BaseException:
        Path(staging.name).unlink(missing_ok=True)  # a failed save leaves nothing delete_cache would not see
        raise
    return str(path)


processing_utils.save_pil_to_cache = save_pil_to_cache  # gradio's components call it through the module
_parse_upload = route_utils.GradioMultiPartParser.parse


async def parse_upload(self: route_utils.GradioMultiPartParser) -> FormData:
    """gradio's upload parser, except that an upload cut off mid-transfer leaves no file behind (gradio removes the
    partial file of a refused upload but not of a client that hung up, and delete_cache never sees it) and is
    answered as a bad request, not logged as a server error."""
    try:
        return await _parse_upload(self)
    except ClientDisconnect as e:
        for file in self._files_to_close_on_error:
            file.close()
            Path(file.name).unlink(missing_ok=True)
        raise MultiPartException("The upload was cut off before it ended.") from e


route_utils.GradioMultiPartParser.parse = parse_upload
_delete_old_files = route_utils.delete_files_created_by_app


def delete_old_files(blocks: gr.Blocks, age: int | None) -> None:
    """gradio's clean-up (delete_cache), run on copies of the sets of files it tracks. gradio walks the live sets in a
    worker thread while requests add files to them; under load that raised "Set changed size during iteration",
    which ended its clean-up task for good (a 30-minute soak at 8 users kept every upload and result)."""
    live = blocks.temp_file_sets
    before = [set(files) for files in live]  # set() copies in C, holding the GIL: nothing is added meanwhile
    blocks.temp_file_sets = [set(files) for files in before]
    try:
        _delete_old_files(blocks, age)
    finally:
        left, blocks.temp_file_sets = blocks.temp_file_sets, live
    for files, was, kept in zip(live, before, left):
        files.difference_update(was - kept)  # forget what was deleted; files added meanwhile stay tracked


route_utils.delete_files_created_by_app = delete_old_files  # gradio's clean-up task calls it through the module


@lru_cache(maxsize=2)  # switching between two models does not reload them each time
def load_pipeline(model_id: str, revision: str | None = None) -> UnmaskPipeline:
    return UnmaskPipeline.from_pretrained(model_id or None, revision=revision)


def build_demo(default_model: str = "", revision: str | None = None, lock_model: bool = False) -> gr.Blocks:
    """The whole UI; `default_model` ("" = the embedded weights, at `revision` if it is a Hub id) is what the model
    box starts with. `lock_model`: the server runs only that model (the box is read-only and other ids are refused)."""

    def pipeline_for(model_id: str) -> UnmaskPipeline:
        model_id = (model_id or "").strip()
        if lock_model and model_id != default_model:
            raise gr.Error(f"This server runs only its own model ({default_model or 'the built-in one'}).",
                           print_exception=False)
        # Visitors may pick the embedded weights, the app's own model or a Hub repo, not arbitrary server folders.
        if model_id not in ("", default_model) and not HUB_ID.match(model_id):
            raise gr.Error(f"{model_id!r} is not a Hub model id like org/name (leave it empty for the built-in model).",
                           print_exception=False)
        try:
            return load_pipeline(model_id, revision if model_id == default_model else None)
        except (OSError, ValueError) as e:
            raise gr.Error(f"Could not load the model {model_id or '(built-in)'}: {e}", print_exception=False) from e

    def run(image: dict | None, mask: dict | None, model_id: str, aligned: bool, opacity: float,
            progress: gr.Progress, face: dict | None = None) -> tuple:
        # The events skip gradio's preprocessing, so every file is opened by unmask_hf.io, which refuses huge
        # images before decoding and explains bad files; its messages name the upload, not the server's path.
        if image is None:
            raise gr.Error("Upload a photo first (or pick an example).", print_exception=False)
        progress(0.05, desc="Loading the model")
        pipe = pipeline_for(model_id)
        progress(0.2, desc="Finding faces and unmasking")
        start = time.perf_counter()
        try:
            photo = load_image(image["path"])
            user_mask = None if mask is None else load_mask(mask["path"], photo.size)
            result = pipe(photo, aligned=aligned, mask=user_mask, **(face or {}))
        except ValueError as e:
            message = str(e).replace(image["path"], image.get("orig_name") or "the image")
            if mask is not None:
                message = message.replace(mask["path"], mask.get("orig_name") or "the mask")
            raise gr.Error(message, print_exception=False) from e
        seconds = time.perf_counter() - start
        progress(0.9, desc="Preparing the results")
        for note in result.notes:
            gr.Warning(note)
        return outputs(photo, result, pipe, opacity, seconds)

    def outputs(photo: Image.Image, result: UnmaskResult, pipe: UnmaskPipeline, opacity: float,
                seconds: float) -> tuple:
        path = Path(download.GRADIO_CACHE) / "unmask-hf" / uuid.uuid4().hex / "unmasked.png"
        path.parent.mkdir(parents=True)  # inside gradio's cache, so delete_cache removes it
        save_prediction_png(result.image, path)  # the statement travels in the PNG's metadata
        faces = [(image, f"face {i}: {what}") for i, face in enumerate(result.faces, 1)
                 for image, what in ((face.aligned_input, "aligned input"), (face.aligned_map, "mask map"),
                                     (face.aligned_output, "output"))]
        # Background and layer exactly fill the editor's fixed canvas: gradio centres layers on the canvas, so
        # anything smaller would not line up with the photo. The layer is what the fill replaced (the mask found,
        # grown over its rim), so re-running it unedited gives the same result.
        editor_value = {"background": fit_square(photo, EDITOR_SIDE),
                        "layers": [fit_square(mask_layer(result.changed), EDITOR_SIDE, (0, 0, 0, 0))], "composite": None}
        lines = [f"**{len(result.faces)} face(s) unmasked** in {seconds:.2f} s (faces processed at "
                 f"{pipe.image_size}×{pipe.image_size} px). _{PREDICTION_LABEL}._" if result.faces
                 else "**Nothing was unmasked.** If the photo shows a face, mark it yourself under "
                      "*Mark the face yourself* below (click its two eyes), or run it as an aligned face crop there."]
        lines += [f"⚠️ {note}" for note in result.notes]
        if pipe.info.get("status") == "untrained":
            lines.append("⚠️ This model is untrained: its results are not meaningful.")
        return (str(path), overlay_mask(photo, result.mask, opacity), (photo, str(path)), faces,
                gr.DownloadButton(value=str(path), interactive=True), editor_value, "\n\n".join(lines),
                (photo, result.mask))

    def unmask(image: dict | None, model: str, aligned: bool, opacity: float, progress=gr.Progress()) -> tuple:
        """Remove the face masks in a photo: the model finds each face, predicts its mask and fills it in."""
        return run(image, None, model, aligned, opacity, progress)

    def unmask_with_mask(image: dict | None, mask: dict | None, model: str, aligned: bool, opacity: float,
                         progress=gr.Progress()) -> tuple:
        """Fill exactly the region of `mask` (white = remove; scaled to the photo's size); nothing else changes."""
        if mask is None:
            raise gr.Error("Draw the mask first (run Unmask, then correct the mask in the editor).",
                           print_exception=False)
        return run(image, mask, model, aligned, opacity, progress)

    def unmask_face(image: dict | None, mark_by: str, points: str, model: str, opacity: float,
                    progress=gr.Progress()) -> tuple:
        """Unmask the one face marked by hand: `points` "x, y, x, y" in photo pixels are its two eyes
        (`mark_by` "eyes") or two opposite corners of a box around it ("box"). For faces the detector misses."""
        numbers = NUMBER.findall(points or "")
        if len(numbers) != 4:
            raise gr.Error("Mark the face first: click the centre of each eye on the photo (or two opposite corners "
                           "of a box around the face).", print_exception=False)
        x0, y0, x1, y1 = map(float, numbers)
        if mark_by not in MARKS:
            raise gr.Error(f"Mark the face by {' or '.join(MARKS)}, not {mark_by!r}.", print_exception=False)
        face = {"eyes": ((x0, y0), (x1, y1))} if mark_by == "eyes" else {"face_box": (x0, y0, x1, y1)}
        return run(image, None, model, False, opacity, progress, face)

    def marking_canvas(image: dict | None) -> tuple:
        """A new photo: its preview to click on (at most MARK_SIDE px), the click scale, and no points yet."""
        if image is None:
            return None, None, 1.0, ""
        try:
            photo = load_image(image["path"])
        except ValueError:  # the Unmask button explains bad files
            return None, None, 1.0, ""
        preview = photo.copy()
        preview.thumbnail((MARK_SIDE, MARK_SIDE))
        return preview, preview, photo.width / preview.width, ""

    def add_mark(points: str, scale: float, event: gr.SelectData) -> str:
        """A click on the preview → one more point in photo pixels; the last two clicks are kept."""
        x, y = event.index
        clicked = NUMBER.findall(points or "")[-2:] + [f"{x * scale:.0f}", f"{y * scale:.0f}"]
        return ", ".join(f"{a}, {b}" for a, b in zip(clicked[::2], clicked[1::2]))

    def draw_marks(preview: Image.Image | None, points: str, scale: float, mark_by: str) -> Image.Image | None:
        if preview is None:
            return None
        values = [float(v) / scale for v in NUMBER.findall(points or "")]
        return draw_points(preview, list(zip(values[::2], values[1::2])), box=mark_by == "box")

    def editor_mask(editor: dict | None, last: tuple[Image.Image, Image.Image] | None) -> Image.Image:
        """The editor's paint layers (opaque = mask) as one black-and-white mask of the photo's part of the canvas."""
        layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
        if not layers or last is None:
            raise gr.Error("Run Unmask first: the editor then shows the predicted mask to correct.",
                           print_exception=False)
        painted = np.any([load_mask(layer, (EDITOR_SIDE, EDITOR_SIDE)) for layer in layers], axis=0)
        return Image.fromarray(painted.astype(np.uint8) * 255, "L").crop(square_box(last[0].size, EDITOR_SIDE))

    def recolor(last: tuple[Image.Image, Image.Image] | None, opacity: float) -> Image.Image | None:
        return None if last is None else overlay_mask(*last, opacity)

    with gr.Blocks(title="unmask-hf: face-mask removal", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# unmask-hf: remove face masks from photos\n"
                    "Upload a photo of people wearing face masks: each face is found, its mask segmented and the face "
                    f"underneath predicted. **Every result is an {PREDICTION_LABEL}.** "
                    "Photos are processed in memory and deleted from the server within minutes.")
        # (photo, mask) of the visitor's last result, for the opacity slider and the editor; freed after 30 minutes.
        last_result = gr.State(None, time_to_live=1800)
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="Photo with face masks", sources=["upload", "webcam", "clipboard"],
                                 type="filepath", image_mode=None, height=420, elem_id="photo")
                unmask_button = gr.Button("Unmask", variant="primary", elem_id="unmask")
                with gr.Accordion("Settings", open=False):
                    model = gr.Textbox(value=default_model, label="Model", interactive=not lock_model,
                                       placeholder="empty: the built-in model; or a Hugging Face Hub id like org/name",
                                       elem_id="model")
                    aligned = gr.Checkbox(False, label="The photo is an aligned face crop (skip face detection)")
                if EXAMPLES:
                    gr.Examples([[str(p)] for p in EXAMPLES], inputs=[photo],
                                label="Examples: NASA's public-domain astronaut photo with rendered masks")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                result = gr.Image(label=f"Result: {PREDICTION_LABEL}", format="png", interactive=False, height=420,
                                  elem_id="result")
                download = gr.DownloadButton("Download PNG", interactive=False, elem_id="download")
        with gr.Row():
            with gr.Column():
                overlay = gr.Image(label="The face mask the model found (tinted)", interactive=False, height=440,
                                   elem_id="overlay")
                opacity = gr.Slider(0.0, 1.0, value=OPACITY, step=0.05, label="Overlay opacity")
            before_after = gr.ImageSlider(label=f"Before / after ({PREDICTION_LABEL})", height=440,
                                          elem_id="before-after")
        gallery = gr.Gallery(label=f"Per face: aligned input | mask map | output ({PREDICTION_LABEL})", columns=3,
                             height="auto", elem_id="faces")
        with gr.Accordion("Mark the face yourself (when no face is found)", open=False, elem_id="mark-face"):
            gr.Markdown("Tight crops, unusual poses or dark masks can hide a face from the detector. Click the centre "
                        "of each eye on the photo below (or two opposite corners of a box around the face), then "
                        "press *Unmask this face*. If the photo is already a face crop, run it as one.")
            with gr.Row():
                marker = gr.Image(label="Click on the photo", interactive=False, height=420, elem_id="marker")
                with gr.Column():
                    mark_by = gr.Radio(list(MARKS), value="eyes", label="Mark by", elem_id="mark-by")
                    points = gr.Textbox(label="Marked points (x, y in photo pixels)", placeholder="x, y, x, y",
                                        elem_id="points")
                    unmask_face_button = gr.Button("Unmask this face", variant="primary", elem_id="unmask-face")
                    as_crop_button = gr.Button("Run as an aligned face crop", elem_id="as-crop")
        marker_preview = gr.State(None)  # the photo's preview without marks
        marker_scale = gr.State(1.0)  # photo pixels per preview pixel

        with gr.Accordion("Correct the mask", open=True):
            gr.Markdown("The predicted mask is painted over the photo. Paint where the model missed the mask, erase "
                        "where it took too much, then re-run: only the painted region is filled.")
            editor = gr.ImageEditor(label="Mask (painted = remove)", type="pil", image_mode="RGBA", format="png",
                                    sources=[], transforms=[], layers=gr.LayerOptions(allow_additional_layers=False),
                                    brush=gr.Brush(colors=[("#ff3060", 0.7)], color_mode="fixed"), eraser=gr.Eraser(),
                                    canvas_size=(EDITOR_SIDE, EDITOR_SIDE), fixed_canvas=True, height=560,
                                    elem_id="editor")
            rerun = gr.Button("Re-run with my mask", variant="primary", elem_id="rerun")
            drawn_mask = gr.Image(visible=False, type="filepath", image_mode="L", format="png")

        results = [result, overlay, before_after, gallery, download, editor, status, last_result]
        inference = dict(outputs=results, preprocess=False, concurrency_id="model")  # one model run at a time
        unmask_button.click(unmask, [photo, model, aligned, opacity], api_name="unmask", **inference)
        rerun.click(editor_mask, [editor, last_result], drawn_mask, api_visibility="private").success(
            unmask_with_mask, [photo, drawn_mask, model, aligned, opacity], api_name="unmask_with_mask", **inference)
        unmask_face_button.click(unmask_face, [photo, mark_by, points, model, opacity], api_name="unmask_face",
                                 **inference)
        as_crop_button.click(lambda image, model, opacity, progress=gr.Progress():
                             run(image, None, model, True, opacity, progress),
                             [photo, model, opacity], api_visibility="private", **inference)
        photo.change(marking_canvas, [photo], [marker, marker_preview, marker_scale, points], api_visibility="private",
                     preprocess=False, show_progress="hidden")
        marker.select(add_mark, [points, marker_scale], points, api_visibility="private", show_progress="hidden")
        gr.on([points.change, mark_by.change], draw_marks, [marker_preview, points, marker_scale, mark_by], marker,
              api_visibility="private", show_progress="hidden")
        opacity.change(recolor, [last_result, opacity], overlay, api_visibility="private", show_progress="hidden",
                       trigger_mode="always_last")  # while dragging: the newest value once the last one is drawn
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The unmask-hf web app (Gradio).")
    parser.add_argument("--model", default=os.environ.get("UNMASK_MODEL", ""),
                        help="Hub repo id or local folder (default: $UNMASK_MODEL, else the embedded weights)")
    parser.add_argument("--revision", default=os.environ.get("UNMASK_REVISION") or None,
                        help="Hub revision of --model to pin: a commit sha, branch or tag (default: $UNMASK_REVISION)")
    parser.add_argument("--lock-model", action="store_true", default=os.environ.get("UNMASK_LOCK_MODEL", "") == "1",
                        help="serve only --model: visitors cannot make the server download other Hub repos "
                             "(default: $UNMASK_LOCK_MODEL=1)")
    parser.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also serve on a temporary public *.gradio.live link")
    parser.add_argument("--concurrency", type=int, default=1, help="model runs at once (default: 1)")
    parser.add_argument("--queue-size", type=int, default=16, help="requests that may wait; more are refused")
    args = parser.parse_args(argv)
    if args.revision and not args.model:
        parser.error("--revision pins a Hub model: give --model org/name too")
    load_pipeline(args.model, args.revision)  # fail at startup, not on the first visitor, if the model cannot be loaded
    demo = build_demo(args.model, args.revision, args.lock_model)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE)


if __name__ == "__main__":
    main()
