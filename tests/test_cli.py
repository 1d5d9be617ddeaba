import numpy as np
from PIL import Image

from unmask_hf.cli import main

from .conftest import make_tiny_pipeline


def test_cli_over_folder(tmp_path, astronaut_rgb, monkeypatch):
    model = tmp_path / "model"
    make_tiny_pipeline().save_pretrained(model)
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    Image.fromarray(astronaut_rgb).save(inputs / "a.jpg")
    Image.fromarray(astronaut_rgb[:100, :80]).save(inputs / "sub" / "b.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    code = main([str(inputs), "--out", str(out), "--model", str(model), "--aligned", "--save-mask", "--save-overlay"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_mask.png", "a_overlay.png", "a_unmasked.png", "b_mask.png", "b_overlay.png", "b_unmasked.png"]
    result = Image.open(out / "a_unmasked.png")
    assert result.size == (512, 512)
    assert "AI-generated prediction" in result.info["Description"]
    assert np.asarray(Image.open(out / "b_mask.png")).shape == (100, 80)


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nothing.jpg")]) == 2
    assert "No such file" in capsys.readouterr().err
