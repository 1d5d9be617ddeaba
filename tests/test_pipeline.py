import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from unmask_hf import UnmaskPipeline
from unmask_hf.faces import BELOW_ANCHOR, BELOW_ZOOM, TEMPLATE_LANDMARKS, align_face
from unmask_hf.pipeline import MAP_DILATION, MAP_TOP, native_bf16_cpu
from unmask_hf.synth import HIGH_RAISE, WORLD_STYLES, render_mask
from unmask_hf.io import images_to_tensor, load_image
from unmask_hf.viz import overlay_mask

from .conftest import make_tiny_pipeline


def test_embedded_default_loads_and_warns_untrained():
    info = json.loads((UnmaskPipeline.from_pretrained.__globals__["DEFAULT_WEIGHTS"] / "pipeline.json").read_text())["info"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = UnmaskPipeline.from_pretrained(device="cpu")
    assert pipe.image_size == 128
    assert any("untrained" in str(w.message) for w in caught) == (info["status"] == "untrained")


def test_save_load_round_trip_bit_identical(tmp_path, tiny_pipeline, astronaut_rgb):
    tiny_pipeline.save_pretrained(tmp_path)
    for sub in ("map", "edit"):
        assert {p.name for p in (tmp_path / sub).iterdir()} == {"config.json", "model.safetensors"}
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: image-to-image" in card and "library_name: unmask-hf" in card and "license:" in card
    with pytest.warns(UserWarning, match="untrained"):
        loaded = UnmaskPipeline.from_pretrained(tmp_path, device="cpu")
    a, b = tiny_pipeline(astronaut_rgb, aligned=True), loaded(astronaut_rgb, aligned=True)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(np.asarray(a.mask), np.asarray(b.mask))


def test_model_card_lists_the_chunks_not_kept(tmp_path, tiny_pipeline):
    tiny_pipeline.info = {"status": "trained", "commands": ["python train/train.py --stage map"], "not_kept": [
        {"chunk": "a GPU chunk", "result": "24.75 dB against 25.22", "command": "python train/train.py --stage joint"},
        {"chunk": "CPU chunks", "result": "see the README"}]}
    tiny_pipeline.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "- Chunks measured and not kept" in card and "Not kept:" not in card
    assert "  - a GPU chunk: 24.75 dB against 25.22\n    `python train/train.py --stage joint`" in card
    assert "  - CPU chunks: see the README\n" in card
    saved = json.loads((tmp_path / "pipeline.json").read_text())["info"]["not_kept"]
    assert saved == tiny_pipeline.info["not_kept"]


def test_fp16_save_keeps_live_model_fp32(tmp_path, tiny_pipeline):
    tiny_pipeline.save_pretrained(tmp_path, dtype=torch.float16)
    assert next(tiny_pipeline.edit_generator.parameters()).dtype == torch.float32
    with pytest.warns(UserWarning):
        loaded = UnmaskPipeline.from_pretrained(tmp_path, device="cpu")
    assert next(loaded.edit_generator.parameters()).dtype == torch.float32


@pytest.mark.parametrize("shape", [(37, 53, 3), (700, 1000, 3), (64, 64), (80, 60, 4)])
def test_odd_sizes_and_modes_give_same_size(tiny_pipeline, shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    for aligned in (True, False):
        result = tiny_pipeline(image, aligned=aligned)
        size = (shape[1], shape[0])
        assert result.image.size == size and result.image.mode == "RGB"
        assert result.mask.size == result.changed.size == size and result.mask.mode == result.changed.mode == "L"
        assert result.overlay.size == size
        assert set(np.unique(np.asarray(result.mask))) <= {0, 255} and set(np.unique(np.asarray(result.changed))) <= {0, 255}


def test_grayscale_and_rgba_pil(tiny_pipeline, astronaut_rgb):
    for mode in ("L", "RGBA", "P", "CMYK"):
        image = Image.fromarray(astronaut_rgb).convert(mode)
        assert tiny_pipeline(image, aligned=True).image.size == (512, 512)


def test_user_mask_leaves_outside_pixels_exactly(tiny_pipeline, astronaut_rgb):
    mask = np.zeros(astronaut_rgb.shape[:2], dtype=np.uint8)
    mask[260:400, 150:360] = 255
    for aligned in (True, False):
        result = tiny_pipeline(astronaut_rgb, aligned=aligned, mask=Image.fromarray(mask))
        out = np.asarray(result.image)
        assert np.array_equal(out[mask == 0], astronaut_rgb[mask == 0])
        assert np.array_equal(np.asarray(result.mask) > 0, mask > 0)


def test_a_drawn_mask_in_a_batch_is_not_grown(tiny_pipeline, astronaut_rgb, monkeypatch):
    monkeypatch.setattr(tiny_pipeline, "map_growth", 1)
    mask = np.zeros(astronaut_rgb.shape[:2], dtype=np.uint8)
    mask[260:400, 150:360] = 255
    drawn, predicted = tiny_pipeline([astronaut_rgb, astronaut_rgb], aligned=True, mask=[Image.fromarray(mask), None])
    alone = tiny_pipeline(astronaut_rgb, aligned=True, mask=Image.fromarray(mask))
    assert np.array_equal(np.asarray(drawn.faces[0].aligned_map), np.asarray(alone.faces[0].aligned_map))
    diff = np.abs(np.asarray(drawn.image, np.int16) - np.asarray(alone.image, np.int16))
    assert (diff > 2).mean() < 1e-3  # the same fill as alone, up to float rounding with the batch size
    assert np.array_equal(np.asarray(drawn.mask) > 0, mask > 0)
    monkeypatch.setattr(tiny_pipeline, "predict_maps", lambda crops: pytest.fail("map module run for a drawn mask"))
    tiny_pipeline(astronaut_rgb, aligned=True, mask=Image.fromarray(mask))  # every region drawn: no map module


def test_aligned_composite_keeps_unmasked_pixels(tiny_pipeline, astronaut_rgb):
    result = tiny_pipeline(astronaut_rgb, aligned=True)
    keep = np.asarray(result.changed) == 0
    assert np.array_equal(np.asarray(result.image)[keep], astronaut_rgb[keep])
    face = result.faces[0]
    assert face.aligned_input.size == face.aligned_output.size == face.aligned_map.size == (64, 64)


def test_batch_equals_single(tiny_pipeline, astronaut_rgb):
    small = astronaut_rgb[::4, ::4]
    batch = tiny_pipeline([astronaut_rgb, small], aligned=True)
    assert len(batch) == 2
    for image, result in zip([astronaut_rgb, small], batch):
        # Same result up to float rounding (conv kernels may differ with the batch size).
        diff = np.abs(np.asarray(result.image, np.int16) - np.asarray(tiny_pipeline(image, aligned=True).image, np.int16))
        assert (diff > 2).mean() < 1e-3


def test_predict_tensor_api(tiny_pipeline):
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    maps, generated = tiny_pipeline.predict(x)
    assert maps.shape == (3, 1, 64, 64) and set(maps.unique().tolist()) <= {0.0, 1.0}
    assert generated.shape == (3, 3, 64, 64)


def test_bf16_autocast_by_default_only_on_a_cpu_that_computes_it(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr("unmask_hf.pipeline.native_bf16_cpu", lambda: native)
        assert make_tiny_pipeline().bf16 is native
    assert UnmaskPipeline.from_pretrained(bf16=False).bf16 is False  # asked for: kept either way
    assert make_tiny_pipeline().autocast().fast_dtype == torch.bfloat16
    assert isinstance(native_bf16_cpu(), bool)


def test_bf16_autocast_gives_the_fp32_result_to_rounding(tiny_pipeline, astronaut_rgb):
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    tiny_pipeline.bf16 = False
    maps = tiny_pipeline.predict_maps(x)  # one map for both, so the editor's outputs compare pixel for pixel
    results = {}
    for bf16 in (False, True):
        tiny_pipeline.bf16 = bf16
        with torch.inference_mode(), tiny_pipeline.autocast():
            probability = tiny_pipeline.map_generator.probability(x).float()
        regions, generated = tiny_pipeline.predict(x, maps=maps)
        assert tiny_pipeline.predict_maps(x).dtype == regions.dtype == generated.dtype == torch.float32
        result = tiny_pipeline(astronaut_rgb, aligned=True)
        keep = np.asarray(result.changed) == 0
        assert np.array_equal(np.asarray(result.image)[keep], astronaut_rgb[keep])
        results[bf16] = probability, generated
    (probability32, out32), (probability16, out16) = results[False], results[True]
    assert (probability32 - probability16).abs().max() < 0.05
    assert (out32 - out16).abs().mean() < 0.01 and (out32 - out16).abs().max() < 0.1  # on the [-1, 1] scale


def test_map_growth_grows_the_filled_region_and_round_trips(tmp_path, tiny_pipeline, monkeypatch):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    square = torch.zeros(2, 1, 64, 64)
    square[:, :, 20:40, 20:40] = 1
    monkeypatch.setattr(tiny_pipeline, "predict_maps", lambda crops: square)
    monkeypatch.setattr(tiny_pipeline, "map_growth", 2)
    x[:, :, 20:40, 20:40] = 0.25  # the mask's own colour
    seen = []
    generate = tiny_pipeline.edit_generator.generate
    monkeypatch.setattr(tiny_pipeline.edit_generator, "generate", lambda image, mask: seen.append(image) or generate(image, mask))
    maps, _ = tiny_pipeline.predict(x)
    assert maps[:, :, 18:42, 18:42].eq(1).all() and maps.sum() == 2 * 24 * 24  # 2 px on every side, no more
    ring = (maps - square).bool().expand(-1, 3, -1, -1)
    assert torch.allclose(seen[0][ring], torch.tensor(0.25))  # the editor sees its grown hole painted as the mask
    assert torch.equal(seen[0][~ring], x[~ring])  # and every other pixel as it is
    given, _ = tiny_pipeline.predict(x, square)  # a given mask is the exact region, on the crop as it is
    assert torch.equal(given, square) and torch.equal(seen[1], x)
    tiny_pipeline.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="untrained"):
        assert UnmaskPipeline.from_pretrained(tmp_path, device="cpu").map_growth == 2
    with pytest.raises(ValueError, match="map_growth"):
        UnmaskPipeline(tiny_pipeline.map_generator, tiny_pipeline.edit_generator, map_growth=-1)


@pytest.mark.parametrize("bad,message", [
    (b"not an image", "not a (readable|JPEG)"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.int64), "dtype"),
    ("/nonexistent/photo.jpg", "No such image"),
    (3.5, "Unsupported"),
])
def test_bad_inputs_raise_value_error(tiny_pipeline, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(bad)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10000, 6000)).save(path)  # 60 MP, tiny on disk
    with pytest.raises(ValueError, match="too large"):
        load_image(path)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.parametrize("sub", ["map", "edit"])
def test_damaged_weight_file_is_named(tmp_path, tiny_pipeline, damage, sub):
    tiny_pipeline.save_pretrained(tmp_path)
    weights = tmp_path / sub / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises((ValueError, FileNotFoundError), match=str(weights).replace("\\", "\\\\")):
        UnmaskPipeline.from_pretrained(tmp_path, device="cpu")


def test_bad_config_file_is_named(tmp_path, tiny_pipeline):
    tiny_pipeline.save_pretrained(tmp_path)
    (tmp_path / "edit" / "config.json").write_text(json.dumps({"image_size": 100}))
    with pytest.raises(ValueError, match="edit/config.json"):
        UnmaskPipeline.from_pretrained(tmp_path, device="cpu")


def test_missing_local_folder():
    with pytest.raises(FileNotFoundError, match="No model folder"):
        UnmaskPipeline.from_pretrained("./does/not/exist")


def test_mismatched_module_sizes():
    a, b = make_tiny_pipeline(64), make_tiny_pipeline(128)
    with pytest.raises(ValueError, match="image_size"):
        UnmaskPipeline(a.map_generator, b.edit_generator)


def test_photo_path_processes_each_face_and_keeps_the_rest(tiny_pipeline, astronaut_rgb):
    canvas = np.full((600, 1100, 3), 200, np.uint8)
    canvas[40:552, 20:532] = astronaut_rgb
    canvas[60:572, 560:1072] = astronaut_rgb[:, ::-1]
    result = tiny_pipeline(canvas)
    assert len(result.faces) == 2 and not result.notes
    boxes = sorted(face.box[0] for face in result.faces)
    assert boxes[0] < 550 < boxes[1]  # one face on each half
    keep = np.asarray(result.changed) == 0
    assert np.array_equal(np.asarray(result.image)[keep], canvas[keep])
    assert all(face.aligned_input.size == (64, 64) for face in result.faces)


def test_no_face_leaves_photo_unchanged_and_says_so(tiny_pipeline):
    flat = np.full((300, 400, 3), 90, np.uint8)
    result = tiny_pipeline(flat)
    assert result.faces == [] and any("No face" in note for note in result.notes)
    assert np.array_equal(np.asarray(result.image), flat) and not np.asarray(result.mask).any()


def test_masks_from_brush_layers_and_grayscale_agree(tmp_path):
    from unmask_hf.io import load_mask

    layer = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (0, 0, 3, 3))  # a red stroke on a transparent layer
    layer.save(tmp_path / "layer.png")
    gray = Image.new("L", (10, 10))
    gray.paste(255, (0, 0, 3, 3))
    for source in (layer, tmp_path / "layer.png", gray, np.asarray(gray), np.asarray(gray) > 0):
        assert load_mask(source, (10, 10)).sum() == 9
    assert load_mask(gray, (20, 20)).shape == (20, 20)


def test_a_marked_face_is_unmasked_where_detection_found_none(tiny_pipeline, astronaut_rgb):
    # The astronaut's face in a photo too dark to detect: marked by its eyes, or by a box around it.
    dark = (astronaut_rgb // 16).astype(np.uint8)
    assert tiny_pipeline(dark).faces == []
    eyes = ((247, 104), (204, 101))  # any click order
    by_eyes, by_box = tiny_pipeline(dark, eyes=eyes), tiny_pipeline(dark, face_box=(178, 59, 270, 174))
    for result in (by_eyes, by_box):
        assert len(result.faces) == 1 and not result.notes
        changed = np.argwhere((np.asarray(result.image) != dark).any(2))
        keep = np.asarray(result.changed) == 0
        assert np.array_equal(np.asarray(result.image)[keep], dark[keep])
        # Whatever was filled lies on that face's crop, or below it where the map runs off the crop's bottom.
        size = tiny_pipeline.image_size
        matrix = align_face(dark, result.faces[0].landmarks, size).matrix
        x, y = (changed[:, ::-1] @ matrix[:, :2].T + matrix[:, 2]).T
        lowest = size * (1 + (BELOW_ZOOM - 1) * (1 - BELOW_ANCHOR))
        grown = MAP_DILATION * BELOW_ZOOM + 1  # the paste's growth, on the crop below
        assert (x > -grown).all() and (x < size + grown).all() and (y > -grown).all() and (y < lowest + grown).all()
    assert np.allclose(by_eyes.faces[0].landmarks[:2], [[204, 101], [247, 104]])
    # A batch takes one mark per image.
    batch = tiny_pipeline([dark, dark], eyes=[eyes, None])
    assert len(batch[0].faces) == 1 and batch[1].faces == []


@pytest.mark.parametrize("mark,message", [
    ({"face_box": (10, 10, 12, 60)}, "too small"),
    ({"face_box": (600, 600, 700, 700)}, "off the 512x512 photo"),
    ({"face_box": (0, 0, float("nan"), 50)}, "finite"),
    ({"face_box": (1, 2, 3)}, "as 4 numbers"),
    ({"eyes": ((100, 100), (101, 101))}, "too close"),
    ({"eyes": ((100, 100), (520, 100))}, "off the 512x512 photo"),
    ({"eyes": ((1, 2), (3, 4)), "face_box": (0, 0, 50, 50)}, "not both"),
    ({"eyes": ((200, 100), (250, 100)), "aligned": True}, "aligned=True"),
])
def test_bad_face_marks_are_clear_errors(tiny_pipeline, astronaut_rgb, mark, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(astronaut_rgb, **mark)


@pytest.mark.parametrize("aligned", [True, False])
def test_drawn_mask_empty_or_over_the_whole_face_changes_nothing(tiny_pipeline, astronaut_rgb, aligned):
    empty = np.zeros(astronaut_rgb.shape[:2], np.uint8)
    result = tiny_pipeline(astronaut_rgb, aligned=aligned, mask=empty)
    assert any("drawn mask is empty" in note for note in result.notes)
    assert np.array_equal(np.asarray(result.image), astronaut_rgb) and not np.asarray(result.mask).any()
    everything = np.full(astronaut_rgb.shape[:2], 255, np.uint8)
    result = tiny_pipeline(astronaut_rgb, aligned=aligned, mask=everything)
    assert any("covers the whole face" in note for note in result.notes) and result.faces == []
    assert np.array_equal(np.asarray(result.image), astronaut_rgb) and not np.asarray(result.mask).any()
    # Mouth and chin only (the face's lower half): filled as usual.
    lower = empty.copy()
    lower[260:400, 150:360] = 255
    assert not tiny_pipeline(astronaut_rgb, aligned=aligned, mask=lower).notes
    # Up to just under the eyes (a mask worn high, nearly all of the eyes-to-mouth box): filled too.
    if aligned:  # the astronaut crop's eyes are at the template's place (the detected face's are close)
        high = empty.copy()
        high[round(0.45 * 512):, :] = 255
        assert not tiny_pipeline(astronaut_rgb, aligned=True, mask=high).notes


def test_the_map_stops_above_the_eyes(tiny_pipeline, monkeypatch):
    # What the map module marks above the eye line (a cap, hair, sunglasses) is no face mask and is not filled.
    monkeypatch.setattr(tiny_pipeline.map_generator, "probability", lambda crops: torch.ones_like(crops[:, :1]))
    x = torch.zeros(2, 3, 64, 64)
    top = round(MAP_TOP * 64)
    maps = tiny_pipeline.predict_maps(x)
    assert not maps[..., :top, :].any() and maps[..., top:, :].all()
    assert tiny_pipeline.predict_maps(x, top=0).all()
    assert MAP_TOP < TEMPLATE_LANDMARKS[:2, 1].min() - 0.03  # the eyes themselves are below the cut
    # The renderer's masks worn highest reach it only with a respirator's strap pixel or two.
    face = np.full((128, 128, 3), 150, np.uint8)
    for style in WORLD_STYLES:
        for seed in range(3):
            mask = render_mask(face, seed, style, raise_by=HIGH_RAISE[1]).mask > 127
            assert mask[:round(MAP_TOP * 128)].sum() <= 0.002 * mask.sum()


def test_a_face_without_a_mask_is_left_as_it_is(tiny_pipeline, astronaut_rgb, monkeypatch):
    monkeypatch.setattr(tiny_pipeline, "predict_maps", lambda crops: torch.zeros_like(crops[:, :1]))
    for aligned in (False, True):
        result = tiny_pipeline(astronaut_rgb, aligned=aligned)
        assert np.array_equal(np.asarray(result.image), astronaut_rgb) and not np.asarray(result.mask).any()
        assert len(result.faces) == 1 and any("No face mask found on the face" in n for n in result.notes)


def test_a_black_and_white_photo_stays_black_and_white(tiny_pipeline, astronaut_rgb):
    # The (untrained) editor paints colours; on a greyscale photo (with a pink mask) what changed is grey too, the
    # rest untouched.
    grey = np.repeat(np.asarray(Image.fromarray(astronaut_rgb).convert("L"))[..., None], 3, axis=2)
    grey[150:200, 185:270] = (220, 110, 170)
    mask = np.zeros(grey.shape[:2], dtype=np.uint8)
    mask[150:200, 185:270] = 255
    for photo in (grey, astronaut_rgb):
        for aligned in (True, False):
            result = tiny_pipeline(photo, aligned=aligned, mask=Image.fromarray(mask))
            out, changed = np.asarray(result.image).astype(np.int16), np.asarray(result.changed) > 0
            spread = (out.max(-1) - out.min(-1))[changed]
            assert changed.any() and np.array_equal(out[~changed], photo[~changed])
            if photo is grey:
                assert spread.max() <= 1
            else:
                assert spread.mean() > 10  # a colour photo keeps the colours the editor made


NAVY, RED = np.array([30, 40, 110]), np.array([200, 30, 30])


def colour_maps(*colours, tops=None):
    """A stand-in map module: marks the crop pixels of any of these colours (`tops` collects the eye-line cut each
    call asks for; the stand-in marks above it too)."""
    def predict_maps(crops, top=MAP_TOP):
        if tops is not None:
            tops.append(top)
        near = [(crops - torch.tensor(c / 127.5 - 1, dtype=crops.dtype).view(1, 3, 1, 1)).abs().amax(1, keepdim=True) < 0.1
                for c in colours]
        return torch.stack(near).any(0).to(crops.dtype)
    return predict_maps


def test_the_mask_is_the_map_found_and_changed_is_what_the_paste_replaced(tiny_pipeline, astronaut_rgb, monkeypatch):
    # A navy mask over the mouth (inside the face's crop); the stand-in map module marks exactly its pixels.
    photo = astronaut_rgb.copy()
    photo[150:200, 185:270] = NAVY
    navy = np.zeros(photo.shape[:2], bool)
    navy[150:200, 185:270] = True
    monkeypatch.setattr(tiny_pipeline, "predict_maps", colour_maps(NAVY))
    monkeypatch.setattr(tiny_pipeline, "map_growth", 1)
    result = tiny_pipeline(photo)
    found, changed = np.asarray(result.mask) > 0, np.asarray(result.changed) > 0
    iou = (found & navy).sum() / (found | navy).sum()
    assert iou > 0.85  # the map at the photo's size (64 px crops here: a crop pixel is ~3 photo pixels)
    assert (found & ~changed).sum() == 0 and changed.sum() > 1.2 * found.sum()  # the paste's growth is not in it
    assert np.array_equal(np.asarray(result.image)[~changed], photo[~changed])
    assert np.array_equal(np.asarray(result.faces[0].aligned_map) > 0, colour_maps(NAVY)(
        images_to_tensor([result.faces[0].aligned_input]))[0, 0].numpy() > 0)  # the map, not the grown region
    assert np.array_equal(np.asarray(result.overlay), np.asarray(overlay_mask(Image.fromarray(photo), result.mask)))


def crop_bottom_in_photo(result, photo, size: int) -> float:
    """The photo row where the face's aligned crop ends, under its centre."""
    matrix = align_face(photo, result.faces[0].landmarks, size).matrix
    return float((np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2] @ [size / 2, size, 1])[1])


def test_a_mask_hanging_below_the_face_s_crop_is_filled_below_it(tiny_pipeline, astronaut_rgb, monkeypatch):
    # A navy mask from the nose to well below the chin, then a red shirt the map module also marks.
    photo = astronaut_rgb.copy()
    photo[140:240, 180:275] = NAVY
    photo[240:340, 150:300] = RED
    tops = []
    monkeypatch.setattr(tiny_pipeline, "predict_maps", colour_maps(NAVY, RED, tops=tops))
    filled = []  # what the editor is asked to fill: the face's crop, then the crop reaching lower
    generate = tiny_pipeline.edit_generator.generate
    monkeypatch.setattr(tiny_pipeline.edit_generator, "generate",
                        lambda image, region: filled.append((image, region)) or generate(image, region))
    result = tiny_pipeline(photo)
    assert len(filled) == 2
    assert tops == [MAP_TOP, pytest.approx(BELOW_ANCHOR + (MAP_TOP - BELOW_ANCHOR) / BELOW_ZOOM)]  # its eyes sit higher
    lower, hole = filled[1]
    shirt = colour_maps(RED)(lower) > 0
    assert shirt.sum() > 100 and hole.sum() > 0 and not hole[shirt].any()  # the shirt is context, not filled
    found, changed = np.asarray(result.mask) > 0, np.asarray(result.changed) > 0
    bottom = crop_bottom_in_photo(result, photo, tiny_pipeline.image_size)
    for mask in (found, changed):
        assert bottom < 210 and np.flatnonzero(mask.any(1)).max() > bottom + 25  # found and filled well below the crop
        assert not mask[250:].any()  # the shirt is not the mask's colour: left alone (but for the paste's 2 px growth)
    assert np.array_equal(np.asarray(result.image)[~changed], photo[~changed])
    tiny_pipeline.fill_below = False
    single_pass = np.asarray(tiny_pipeline(photo).changed) > 0
    assert np.flatnonzero(single_pass.any(1)).max() < bottom + 5


def test_a_mask_running_past_the_lower_crop_too_gets_no_fill_below(tiny_pipeline, astronaut_rgb, monkeypatch):
    # Navy from the nose to the photo's bottom edge: a scarf, or a mask the photo cuts off. Nothing to fill towards.
    photo = astronaut_rgb.copy()
    photo[140:, 180:275] = NAVY
    monkeypatch.setattr(tiny_pipeline, "predict_maps", colour_maps(NAVY))
    result = tiny_pipeline(photo)
    bottom = crop_bottom_in_photo(result, photo, tiny_pipeline.image_size)
    changed = np.asarray(result.changed) > 0
    assert changed.any() and np.flatnonzero(changed.any(1)).max() < bottom + 5  # the fill stops at the crop
    tiny_pipeline.fill_below = False
    assert np.array_equal(np.asarray(tiny_pipeline(photo).image), np.asarray(result.image))


def test_a_drawn_mask_gets_no_second_crop_below_the_face(tiny_pipeline, astronaut_rgb, monkeypatch):
    import unmask_hf.pipeline

    monkeypatch.setattr(unmask_hf.pipeline, "warp_face", lambda *args: pytest.fail("a below crop for a drawn mask"))
    drawn = np.zeros(astronaut_rgb.shape[:2], bool)
    drawn[140:400, 180:275] = True
    result = tiny_pipeline(astronaut_rgb, mask=drawn)
    assert np.array_equal(np.asarray(result.mask) > 0, drawn)


def test_the_part_below_keeps_the_mask_s_continuation_only():
    from unmask_hf.pipeline import _below_part

    size = 64
    crop, region = np.full((size, size, 3), 150, np.uint8), np.zeros((size, size), bool)
    crop[40:, 20:44], region[40:, 20:44] = NAVY, True  # the mask runs off the crop's bottom in columns 20-43
    below, below_region = np.full((size, size, 3), 150, np.uint8), np.zeros((size, size), bool)
    below[30:56, 23:41] = NAVY  # its continuation on the zoomed-out crop (columns 20-43 / 1.3, about 23-40)
    below[56:, 10:54] = RED  # a shirt under it
    below[58:, 0:6] = NAVY  # a navy patch apart from the mask
    below_region[30:, :] = True  # the map module marks all of it
    part, above_edge = _below_part(region, crop, below_region, below)
    assert above_edge[:50].all() and not above_edge[51:].any()
    # The face's crop ends at row 50 of the zoomed-out one (BELOW_ANCHOR, BELOW_ZOOM); the part starts a little above.
    assert part[50:56, 25:39].all()  # the continuation below the face's crop
    assert not part[:47].any()  # nothing higher up: the face's own crop covers that
    assert not part[56:].any()  # neither the shirt nor the separate patch
