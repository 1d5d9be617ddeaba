import numpy as np
import pytest
import torch

from unmask_hf.blend import dilate
from unmask_hf.models import (EditGenerator, MapGenerator, MaskRegionDiscriminator, WholeDiscriminator, composite,
                              grow_map)
from unmask_hf.models.discriminators import mask_boxes


@pytest.mark.parametrize("size,depth", [(64, 4), (128, 5), (256, 5)])
def test_generator_shapes(size, depth):
    x = torch.randn(2, 3, size, size)
    m = (torch.rand(2, 1, size, size) > 0.5).float()
    kw = dict(base_channels=8, max_channels=32, depth=depth, image_size=size)
    out = MapGenerator(**kw)(x)
    assert out.shape == (2, 1, size, size) and out.abs().max() <= 1
    assert EditGenerator(**kw)(x, m).shape == (2, 3, size, size)


def test_map_probability_matches_tanh():
    gen = MapGenerator(base_channels=8, max_channels=16, depth=4, image_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(gen.probability(x), (gen(x) + 1) / 2, atol=1e-6, rtol=0)


def test_composite_keeps_outside_pixels():
    gen = EditGenerator(base_channels=8, max_channels=16, depth=4, image_size=64)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    m = torch.zeros(2, 1, 64, 64)
    m[:, :, 30:50, 10:40] = 1
    out = gen(x, m)
    assert torch.equal(out[m.expand_as(out) == 0], x[m.expand_as(x) == 0])
    torch.testing.assert_close(composite(x, torch.zeros_like(x), m), x * (1 - m))


@pytest.mark.parametrize("pixels", [0, 1, 2])
def test_grow_map_is_the_pipeline_s_dilate(pixels):
    masks = (torch.rand(3, 1, 40, 40) > 0.93).float()  # specks, some on the border
    grown = grow_map(masks, pixels)
    for m, g in zip(masks[:, 0].numpy(), grown[:, 0].numpy()):
        assert np.array_equal(g > 0.5, dilate(m > 0.5, pixels))


def test_composite_over_a_paste_region():
    gen = EditGenerator(base_channels=8, max_channels=16, depth=4, image_size=64).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    m = torch.zeros(1, 1, 64, 64)
    m[:, :, 30:50, 10:40] = 1
    paste = grow_map(m, 2)
    with torch.no_grad():
        out, generated = gen(x, m, paste), gen.generate(x, m)
    ring = ((paste - m) > 0).expand_as(x)
    assert ring.any() and torch.equal(out[ring], generated[ring])  # the ring shows the raw output, as pasted
    assert torch.equal(out[paste.expand_as(x) == 0], x[paste.expand_as(x) == 0])
    with torch.no_grad():
        both = gen(x, m, paste, raw=True)
    assert torch.equal(both[0], out) and torch.equal(both[1], generated)  # raw=True: the same, plus the raw output


def test_default_sizes_within_budget():
    params = sum(p.numel() for g in (MapGenerator(), EditGenerator()) for p in g.parameters())
    assert params <= 8_000_000
    assert params * 2 <= 16 * 2**20  # fp16 bytes


def test_discriminators():
    x = torch.randn(3, 3, 128, 128)
    m = torch.zeros(3, 1, 128, 128)
    m[0, :, 70:120, 30:100] = 1
    m[1, :, 0:5, 0:5] = 1  # tiny region: box grows to the minimum size
    assert WholeDiscriminator()(x).shape[:2] == (3, 1)
    region = MaskRegionDiscriminator(region_size=64)
    assert region.crop(x, m).shape == (3, 4, 64, 64)
    assert region(x, m).shape[:2] == (3, 1)
    boxes = mask_boxes(m)
    side = boxes[:, 2] - boxes[:, 0]
    assert torch.allclose(side, boxes[:, 3] - boxes[:, 1])  # square
    assert side[0] >= 70 and side[1] >= 16 and side[2] > 0  # m[2] is empty: a default box


@pytest.mark.parametrize("kwargs,message", [
    (dict(image_size=100), "multiple of"),
    (dict(depth=0), "depth"),
    (dict(base_channels=-1), "base_channels"),
    (dict(dropout=1.5), "dropout"),
    (dict(base_channels=64, max_channels=32), "max_channels"),
])
def test_bad_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MapGenerator(**kwargs)


def test_hub_mixin_round_trip(tmp_path):
    gen = MapGenerator(base_channels=8, max_channels=16, depth=4, image_size=64)
    gen.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    loaded = MapGenerator.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), loaded.state_dict().values()))


def test_hub_mixin_refuses_pickle(tmp_path):
    gen = MapGenerator(base_channels=8, max_channels=16, depth=4, image_size=64)
    gen.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(gen.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pickle"):
        MapGenerator.from_pretrained(tmp_path)


def test_clean_maps_removes_specks_and_fills_holes():
    from unmask_hf.models.map_generator import clean_maps

    maps = torch.zeros(2, 1, 128, 128)
    maps[0, :, 60:110, 30:100] = 1  # the mask
    maps[0, :, 80:84, 60:64] = 0  # a hole inside it
    maps[0, :, 95:97, 41:53] = 0  # a thin gap inside it, narrower than a pooled pixel (between pleats)
    maps[0, :, 10:12, 10:12] = 1  # a speck in the hair
    cleaned = clean_maps(maps)
    assert cleaned[0, 0, 82, 62] == 1 and cleaned[0, 0, 96, 45] == 1 and cleaned[0, 0, 11, 11] == 0
    assert cleaned[0, :, 60:110, 30:100].all() and cleaned[0].sum() == 50 * 70
    assert cleaned[1].sum() == 0  # empty stays empty
    maps[0, :, 60:75, 64:72] = 0  # a notch open to the mask's edge is no hole: it stays
    maps[0, :, 98:128, 90:94] = 1  # nor is a pocket between the mask and the crop's border
    cleaned = clean_maps(maps)
    assert not cleaned[0, 0, 60:75, 64:72].any() and cleaned[0, 0, 96, 45] == 1
    assert not cleaned[0, 0, 110:128, 94:100].any()


def test_clean_maps_treats_each_map_of_a_batch_on_its_own():
    """Part sizes are counted for all maps at once: a map's result must not depend on the maps beside it."""
    from unmask_hf.models.map_generator import clean_maps

    noise = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    blobs = torch.nn.functional.avg_pool2d(noise, 9, 1, 4)
    maps = (blobs > 0.5).float()  # many parts of many sizes
    maps[1] = 0
    maps[1, :, 40:56, 40:56] = 1  # a small mask, kept: the largest part of its own map
    maps[1, :, 100:102, 10:12] = 1  # and a speck beside it, dropped
    maps[2] = 0  # an empty map
    maps[3, :, 8:120, 8:120] = 1  # a part far larger than any other map's
    alone = torch.cat([clean_maps(maps[i:i + 1]) for i in range(len(maps))])
    assert torch.equal(clean_maps(maps), alone)
    assert alone[1].sum() == 16 * 16 and alone[2].sum() == 0
