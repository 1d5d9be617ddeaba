import numpy as np
from PIL import Image
from skimage.data import coffee

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
    assert code == 1  # broken.png got no result
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_mask.png", "a_overlay.png", "a_unmasked.png", "b_mask.png", "b_overlay.png", "b_unmasked.png"]
    result = Image.open(out / "a_unmasked.png")
    assert result.size == (512, 512)
    assert "AI-generated prediction" in result.info["Description"]
    assert np.asarray(Image.open(out / "b_mask.png")).shape == (100, 80)


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nothing.jpg")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_cli_no_face_writes_nothing(tmp_path, astronaut_rgb, capsys):
    """A photo without a face is counted apart and gets no file (an unchanged copy is not a result), unless
    --aligned says the images are face crops; the exit code is 1 while any image got no result."""
    model = tmp_path / "model"
    make_tiny_pipeline().save_pretrained(model)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(coffee()).save(inputs / "coffee.png")
    out = tmp_path / "out"
    assert main([str(inputs / "coffee.png"), "--out", str(out), "--model", str(model)]) == 1
    printed = capsys.readouterr().out
    assert "no face found in 1 photo; nothing written" in printed and "wrote" not in printed
    assert not out.exists() or not any(out.iterdir())

    Image.fromarray(astronaut_rgb).save(inputs / "astronaut.jpg")
    assert main([str(inputs), "--out", str(out), "--model", str(model)]) == 1
    assert f"no face found in 1 photo; wrote 1 result(s) to {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_unmasked.png"]

    assert main([str(inputs), "--out", str(out), "--model", str(model), "--aligned"]) == 0
    assert f"wrote 2 result(s) to {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_unmasked.png", "coffee_unmasked.png"]
