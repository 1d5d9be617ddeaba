import numpy as np
import pytest
import skimage.data
from PIL import Image

from unmask_hf.faces import TEMPLATE_LANDMARKS
from unmask_hf.synth import EXTRA_STYLES, MASK_STYLES, OCCLUDERS, WORLD_STYLES, add_occluder, make_sample, render_mask
from unmask_hf.training.config import TrainConfig


def face(size: int) -> np.ndarray:
    """The public-domain astronaut photo, face roughly centred, at size×size."""
    photo = Image.fromarray(skimage.data.astronaut()).crop((130, 20, 330, 220))
    return np.asarray(photo.resize((size, size), Image.LANCZOS))


@pytest.mark.parametrize("style", MASK_STYLES)
def test_same_seed_gives_identical_bytes(style):
    image = face(128)
    a, b = render_mask(image, 7, style), render_mask(image, 7, style)
    assert a.masked.tobytes() == b.masked.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    c = render_mask(image, np.random.default_rng(7), style)  # a Generator seeded alike gives the same mask
    assert c.masked.tobytes() == a.masked.tobytes()
    assert render_mask(image, 8, style).masked.tobytes() != a.masked.tobytes()


@pytest.mark.parametrize("size", [64, 128, 512])
@pytest.mark.parametrize("style", MASK_STYLES)
def test_map_is_exactly_the_changed_pixels(style, size):
    image = face(size)
    for seed in range(3 if size < 512 else 1):
        out = render_mask(image, seed, style)
        assert out.style == style
        assert out.masked.shape == image.shape and out.masked.dtype == np.uint8
        assert out.mask.shape == image.shape[:2] and out.mask.dtype == np.uint8
        assert set(np.unique(out.mask)) <= {0, 255}
        changed = (out.masked != image).any(axis=2)
        np.testing.assert_array_equal(out.mask == 255, changed)
        # A real mask: a sizeable region that covers the mouth.
        assert 0.05 < changed.mean() < 0.75
        mouth = (TEMPLATE_LANDMARKS[3:].mean(0) * size).astype(int)
        assert out.mask[mouth[1], mouth[0]] == 255


def test_soft_edges_blend_with_the_face():
    image = np.zeros((128, 128, 3), np.uint8)  # on black, a white mask's edge pixels are grey
    partial = 0
    for seed in range(10):
        out = render_mask(image, seed, "kn95")
        region = out.mask == 255
        partial += ((out.masked.max(2) > 0) & (out.masked.max(2) < 60) & region).sum()
        np.testing.assert_array_equal(region, (out.masked != image).any(2))
    assert partial > 0


@pytest.mark.parametrize("value", [0, 255])
def test_flat_faces_still_have_exact_maps(value):
    image = np.full((96, 96, 3), value, np.uint8)
    for seed in range(20):
        out = render_mask(image, seed)
        np.testing.assert_array_equal(out.mask == 255, (out.masked != image).any(2))


def test_landmarks_place_the_mask():
    image = face(128)
    template = TEMPLATE_LANDMARKS * 128
    centre = lambda m: np.argwhere(m.T == 255).mean(0)  # (x, y)
    base = render_mask(image, 3, "surgical", landmarks=template).mask
    moved = render_mask(image, 3, "surgical", landmarks=template + [15, 10]).mask
    np.testing.assert_allclose(centre(moved) - centre(base), [15, 10], atol=2)
    small = render_mask(image, 3, "surgical", landmarks=(template - 64) * 0.5 + 64).mask
    assert 0.15 < (small == 255).sum() / (base == 255).sum() < 0.35  # half the face, a quarter of the area


def test_style_choice():
    image = face(64)
    assert {render_mask(image, seed).style for seed in range(60)} == set(MASK_STYLES)
    assert {render_mask(image, seed, styles=("n95", "kn95")).style for seed in range(20)} == {"n95", "kn95"}
    with pytest.raises(ValueError, match="Unknown mask style"):
        render_mask(image, 0, "scarf")
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        render_mask(image[..., 0], 0)


def test_make_sample():
    wide = Image.fromarray(skimage.data.astronaut()).crop((100, 20, 360, 220))  # 260×200: centre-cropped square
    sample = make_sample(np.asarray(wide), seed=5, size=96)
    assert set(sample) == {"image", "masked", "mask", "mask_style"}
    assert sample["image"].size == sample["masked"].size == sample["mask"].size == (96, 96)
    assert sample["image"].mode == "RGB" and sample["masked"].mode == "RGB" and sample["mask"].mode == "L"
    assert sample["mask_style"] in MASK_STYLES
    expected = wide.crop((30, 0, 230, 200)).resize((96, 96), Image.LANCZOS)
    np.testing.assert_array_equal(np.asarray(sample["image"]), np.asarray(expected))
    image, masked, mask = (np.asarray(sample[k]) for k in ("image", "masked", "mask"))
    np.testing.assert_array_equal(masked[mask == 0], image[mask == 0])
    again = make_sample(wide, seed=5, size=96)  # PIL input works too, same bytes
    assert again["masked"].tobytes() == sample["masked"].tobytes()
    assert make_sample(wide, seed=5, size=96, style="gaiter")["mask_style"] == "gaiter"


@pytest.mark.parametrize("style", EXTRA_STYLES)
def test_world_styles_are_seeded_and_their_maps_exact(style):
    image = face(128)
    for seed in range(4):
        out = render_mask(image, seed, style)
        assert out.masked.tobytes() == render_mask(image, seed, style).masked.tobytes()
        changed = (out.masked != image).any(axis=2)
        np.testing.assert_array_equal(out.mask == 255, changed)  # rims, loops, straps and cartridges included
        assert 0.05 < changed.mean() < 0.75
    assert render_mask(image, 1, style).masked.tobytes() != render_mask(image, 2, style).masked.tobytes()


def test_world_styles_are_opt_in():
    image = face(64)
    assert set(WORLD_STYLES) == set(MASK_STYLES) | set(EXTRA_STYLES)
    assert {render_mask(image, seed).style for seed in range(60)} <= set(MASK_STYLES)
    assert {render_mask(image, seed, styles=WORLD_STYLES).style for seed in range(120)} == set(WORLD_STYLES)
    assert make_sample(image, 4, 64, styles=EXTRA_STYLES)["mask_style"] in EXTRA_STYLES


def pair(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(sample[k]) for k in ("image", "masked", "mask"))


@pytest.mark.parametrize("option", ["hard_negative_probability", "degrade_probability"])
def test_sample_options_keep_the_pair_and_the_map(option):
    image = face(96)
    differs = 0
    for seed in range(6):
        plain_image, _, plain_mask = pair(make_sample(image, seed, 96, styles=WORLD_STYLES))
        truth, masked, mask = pair(make_sample(image, seed, 96, styles=WORLD_STYLES, **{option: 1.0}))
        np.testing.assert_array_equal(mask, plain_mask)  # the same mask, the same map
        np.testing.assert_array_equal((masked != truth).any(2), mask == 255)  # still exactly the changed pixels
        outside = mask == 0
        differs += (truth[outside] != plain_image[outside]).any(1).mean() > 0.01  # the photo itself changed
    assert differs >= 5
    assert make_sample(image, 0, 96, **{option: 0.0})["masked"].tobytes() == make_sample(image, 0, 96)["masked"].tobytes()


@pytest.mark.parametrize("kind", OCCLUDERS)
def test_occluders_sit_in_front_of_the_mask_and_leave_the_map(kind):
    image = face(96)
    hidden = 0
    for seed in range(6):
        rendered = render_mask(image, seed, styles=WORLD_STYLES)
        photo, masked, mask = add_occluder(image, rendered.masked, rendered.mask, np.random.default_rng(seed), kind=kind)
        assert (photo != image).any(2).mean() > 0.005  # drawn on the photo ...
        np.testing.assert_array_equal((masked != photo).any(2), mask == 255)  # ... and the pair differs only in the map
        assert not (mask > rendered.mask).any()  # the map only loses what the occluder hides
        hidden += (mask < rendered.mask).sum()
    assert hidden > 0 or kind in ("cap", "glasses")  # a cap stays above the mask; glasses may touch its top
    with pytest.raises(ValueError, match="Unknown occluder 'scarf'"):
        add_occluder(image, image, np.zeros((96, 96), np.uint8), np.random.default_rng(0), kind="scarf")


def test_sample_occluders_are_opt_in():
    image = face(96)
    assert make_sample(image, 3, 96, occluder_probability=0.0)["masked"].tobytes() == make_sample(image, 3, 96)["masked"].tobytes()
    truth, masked, mask = pair(make_sample(image, 3, 96, styles=WORLD_STYLES, occluder_probability=1.0))
    np.testing.assert_array_equal((masked != truth).any(2), mask == 255)
    assert TrainConfig(occluder_fraction=0.3).synth_options["occluder_probability"] == 0.3
    with pytest.raises(ValueError, match="occluder_fraction"):
        TrainConfig(occluder_fraction=-0.1)
    # One kind only (train/configs/map_sunglasses_cpu.yaml): every occluder drawn is then that kind.
    assert TrainConfig(occluders=["glasses"]).synth_options["occluders"] == ("glasses",)
    assert TrainConfig().synth_options["occluders"] == OCCLUDERS
    for bad in (["scarf"], []):
        with pytest.raises(ValueError, match="occluders"):
            TrainConfig(occluders=bad)
    eyes = np.rint(TEMPLATE_LANDMARKS[:2] * 96).astype(int)
    sunglasses = 0
    for seed in range(8):
        plain = np.asarray(make_sample(image, seed, 96)["image"]).astype(int)
        photo = np.asarray(make_sample(image, seed, 96, occluder_probability=1.0, occluders=("glasses",))["image"]).astype(int)
        changed_rows = np.flatnonzero((photo != plain).any((1, 2)))
        assert changed_rows.size and changed_rows.max() < TEMPLATE_LANDMARKS[3:, 1].min() * 96  # at the eyes, not the mouth
        sunglasses += all(photo[y - 1:y + 2, x - 1:x + 2].max() < 80 for x, y in eyes)  # dark lenses over both eyes
    assert 0 < sunglasses < 8


def test_masks_worn_high_reach_further_up_the_nose():
    image = face(96)
    assert make_sample(image, 3, 96, high_probability=0.0)["masked"].tobytes() == make_sample(image, 3, 96)["masked"].tobytes()
    raised = 0
    for seed in range(12):
        _, _, plain = pair(make_sample(image, seed, 96, styles=WORLD_STYLES))
        truth, masked, high = pair(make_sample(image, seed, 96, styles=WORLD_STYLES, high_probability=1.0))
        np.testing.assert_array_equal((masked != truth).any(2), high == 255)  # still exactly the changed pixels
        top = lambda mask: np.nonzero((mask[:, 40:56] == 255).any(1))[0].min()  # the top edge over the nose
        assert top(high) <= top(plain)  # a mask worn below the nose stays there; the others go up
        raised += top(high) < top(plain)
    assert raised >= 10
    assert TrainConfig(high_fraction=0.35).synth_options["high_probability"] == 0.35
    with pytest.raises(ValueError, match="high_fraction"):
        TrainConfig(high_fraction=2.0)


def test_config_selects_and_holds_out_styles():
    assert TrainConfig().synth_options["styles"] == MASK_STYLES
    config = TrainConfig(mask_styles=list(WORLD_STYLES), held_out_styles=["printed"])
    assert config.train_styles == tuple(s for s in WORLD_STYLES if s != "printed")
    with pytest.raises(ValueError, match=r"mask_styles: unknown mask styles \['scarf'\]"):
        TrainConfig(mask_styles=["cloth", "scarf"])
    with pytest.raises(ValueError, match="held_out_styles: unknown"):
        TrainConfig(held_out_styles=["balaclava"])
    with pytest.raises(ValueError, match="leave no mask style"):
        TrainConfig(mask_styles=["knit"], held_out_styles=["knit"])
    with pytest.raises(ValueError, match="degrade_fraction"):
        TrainConfig(degrade_fraction=1.5)
