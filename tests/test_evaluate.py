"""Evaluation: the inpainting baselines, the runner's summary (metrics.json), and train/evaluate.py end to end on
tiny generated faces with a tiny pipeline. Identical images → PSNR inf / SSIM 1 / IoU 1 is tested in test_metrics.py."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from unmask_hf import metrics
from unmask_hf.baselines import inpaint
from unmask_hf.dataset import BuildConfig, FaceFolder, build_masked_faces
from unmask_hf.evaluation import METHODS, OUR_MAP_METHODS, EvalData, evaluate
from unmask_hf.losses import load_perceptual_network

from .conftest import make_tiny_pipeline
from .test_losses import write_vgg
from .test_train import make_face_folder

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "train" / "evaluate.py")
evaluate_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate_script)


def strict_json(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    identities = make_face_folder(root / "faces", count=24, size=64)
    model = root / "tiny-model"
    make_tiny_pipeline(64).save_pretrained(model)
    return {"root": root, "faces": root / "faces", "identities": identities, "model": model,
            "vgg": write_vgg(root / "vgg.safetensors", "D", 2)}


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpainting_fills_only_the_mask(method):
    truth = np.asarray(Image.fromarray(skdata.astronaut()).resize((128, 128), Image.BICUBIC))
    mask = np.zeros((128, 128), bool)
    mask[70:100, 40:90] = True
    masked = truth.copy()
    masked[mask] = (40, 200, 60)  # a green "face mask"
    out = inpaint(masked, mask, method)
    assert out.shape == truth.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], masked[~mask])  # pixels outside the mask are kept exactly
    assert metrics.psnr(out, truth) > metrics.psnr(masked, truth) + 5  # filled from the surroundings, not green
    assert np.array_equal(inpaint(masked, mask.astype(np.uint8) * 255, method), out)  # 0/255 masks too


def test_inpainting_rejects_bad_input():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="method"):
        inpaint(image, np.ones((8, 8), bool), "patchmatch")
    with pytest.raises(ValueError, match="shape"):
        inpaint(image, np.ones((4, 4), bool))


def test_eval_data_from_a_face_folder_is_trainings_validation_split(setup):
    import argparse

    from unmask_hf.training.sources import open_sources

    args = argparse.Namespace(dataset=None, faces=setup["faces"], identities=setup["identities"], val_fraction=0.2)
    _, val, _ = open_sources(args)
    data = EvalData.from_face_folder(setup["faces"], setup["identities"], 0.2, 64, seed=1)
    faces = FaceFolder(setup["faces"], setup["identities"])
    assert data.source_ids == [str(f) for f in val] and len(data) == len(val) > 0
    assert data.identities == [faces.identities[faces.files.index(f)] for f in val]
    assert set(data.identities).isdisjoint(faces.identities[i] for i in faces.split(0.2)["train"])
    with pytest.raises(ValueError, match="no validation faces"):
        EvalData.from_face_folder(setup["faces"], setup["identities"], 0.0, 64, seed=1)


def test_evaluate_summary(setup):
    faces = FaceFolder(setup["faces"], setup["identities"])
    files = faces.files[:6] + faces.files[-1:]  # persons 0 and 1 (3 photos each), and one photo of person 7
    data = EvalData.from_files(files, faces.identities[:6] + faces.identities[-1:], 64, seed=1, description="tiny")
    pipe = make_tiny_pipeline(64)
    summary, grid = evaluate(pipe, data, limit=4, batch_size=3, encoder=metrics.IdentityEncoder(),
                             fd_network=load_perceptual_network(setup["vgg"]), grid_rows=3)
    # Person 1's photos 5 and 6 are not evaluated but are in the gallery; person 7 is not among the first 4.
    assert summary["samples"] == 4 and summary["verification_samples"] == 4
    assert list(summary["methods"]) == list(METHODS)
    per_method = {"psnr", "ssim", "psnr_bbox", "ssim_bbox", "l1_mask", "detail_ratio", "identity_distance",
                  "verification_distance", "verification_match_rate"}
    for name, method in summary["methods"].items():
        assert set(method) == {"label", "count", "seconds_per_image", "metrics", "fd_vgg"}
        assert method["count"] == 4
        expected = {"verification_distance", "verification_match_rate"} if name == "ground_truth" else (
            per_method | ({"iou", "dice", "pixel_accuracy"} if name in OUR_MAP_METHODS else set()))
        assert set(method["metrics"]) == expected, name
        for stats in method["metrics"].values():
            assert set(stats) == {"mean", "median", "count"} and stats["count"] == 4
            assert math.isfinite(stats["mean"]) and math.isfinite(stats["median"])
        assert (method["fd_vgg"] is None) == (name == "ground_truth")
        assert (method["seconds_per_image"] is None) == (name == "ground_truth")
    # The runner measures the samples themselves: the masked input's PSNR recomputed by hand.
    samples = [data.samples[i] for i in range(4)]
    by_hand = [metrics.psnr(s["masked"].permute(1, 2, 0).numpy(), s["image"].permute(1, 2, 0).numpy()) for s in samples]
    assert summary["methods"]["masked_input"]["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(by_hand))
    # One predicted map for all "our map" rows; the clean ground truth matches its own person best.
    ious = {summary["methods"][m]["metrics"]["iou"]["mean"] for m in OUR_MAP_METHODS}
    assert len(ious) == 1
    assert summary["methods"]["ground_truth"]["metrics"]["verification_distance"]["mean"] <= min(
        m["metrics"]["verification_distance"]["mean"] for m in summary["methods"].values())
    assert grid.size == (5 * 64 + 4 * 2, 14 + 3 * 64 + 2 * 2)  # 5 columns, 3 rows


def test_script_on_the_fly_faces(setup, tmp_path, capsys):
    out = tmp_path / "val"
    args = ["--faces", str(setup["faces"]), "--identities", str(setup["identities"]), "--val-fraction", "0.25",
            "--model", str(setup["model"]), "--out", str(out), "--limit", "4", "--batch-size", "3", "--no-identity",
            "--perceptual-weights", setup["vgg"]]
    evaluate_script.main(args)
    summary = strict_json(out / "metrics.json")
    assert summary["command"] == "python train/evaluate.py " + " ".join(args)
    assert summary["samples"] == 4 and "6 faces" in summary["data"]  # 2 people of 3 photos held out
    assert summary["fd_network"] == "vgg16" and summary["methods"]["ours"]["fd_vgg"] >= 0
    results = (out / "results.md").read_text().splitlines()
    assert results[0] == f"`{summary['command']}`"
    table = [line for line in results if line.startswith("| ")]
    assert len(table) == 1 + len(METHODS) and "FD-VGG" in table[0] and "Verif" not in table[0]
    assert any("Identity scores skipped" in line for line in results)
    assert Image.open(out / "samples.png").size == (5 * 64 + 8, 14 + 4 * 64 + 6)
    assert "wrote" in capsys.readouterr().out


def test_script_on_built_dataset(setup, tmp_path):
    built = tmp_path / "built"
    build_masked_faces(FaceFolder(setup["faces"], setup["identities"]), built,
                       BuildConfig(source="faces", size=64, val_fraction=0.25, test_fraction=0.25))
    out = tmp_path / "test"
    evaluate_script.main(["--dataset", str(built), "--split", "test", "--model", str(setup["model"]),
                          "--out", str(out), "--no-identity", "--no-fd"])
    summary = strict_json(out / "metrics.json")
    assert summary["samples"] == 6 and summary["data"].endswith("[test]")
    assert all(m["fd_vgg"] is None for m in summary["methods"].values())
    assert any("FD-VGG skipped" in note for note in summary["notes"])
    assert "FD-VGG" not in (out / "results.md").read_text().splitlines()[2]


def test_real_photos_contact_sheet(setup, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "astronaut.png")
    Image.fromarray(skdata.astronaut()[:, :300]).save(photos / "portrait.jpg")  # not square: padded, not squashed
    out = tmp_path / "real"
    evaluate_script.main(["--real", str(photos), "--model", str(setup["model"]), "--out", str(out)])
    sheet = Image.open(out / "real_contact_sheet.png")
    assert sheet.size == (3 * 256 + 2 * 2, 14 + 2 * 256 + 2)
    assert "unmask-hf" in sheet.info.get("Software", "")  # saved as an AI prediction


def test_real_contact_sheet_puts_other_weights_beside(tmp_path):
    from unmask_hf.evaluation import real_contact_sheet

    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    sheet, _ = real_contact_sheet(make_tiny_pipeline(64), [tmp_path / "astronaut.png"], cell=64,
                                  compare=make_tiny_pipeline(64))
    alone, _ = real_contact_sheet(make_tiny_pipeline(64), [tmp_path / "astronaut.png"], cell=64)
    assert sheet.height == alone.height and sheet.width == alone.width + 2 * (64 + 2)  # two more cells a row


def test_real_contact_sheet_zooms_on_each_face_found(tmp_path):
    from unmask_hf.evaluation import face_window, real_contact_sheet

    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    pipe = make_tiny_pipeline(64)
    faces = pipe(Image.open(tmp_path / "astronaut.png")).faces
    assert len(faces) == 1
    whole, _ = real_contact_sheet(pipe, [tmp_path / "astronaut.png"], cell=64)
    zoomed, _ = real_contact_sheet(pipe, [tmp_path / "astronaut.png"], cell=64, zoom=True)
    assert zoomed.size == whole.size  # one face: one row, as for the whole photo
    first_cell = (0, zoomed.height - 64, 64, zoomed.height)  # the one row sits under the labels
    expected = Image.open(tmp_path / "astronaut.png").convert("RGB").crop(face_window(faces[0].box)).resize((64, 64))
    difference = np.abs(np.asarray(zoomed.crop(first_cell), np.int16) - np.asarray(expected, np.int16)).mean()
    assert difference < 8  # the input cell is the photo cut to the face's window (resampling aside)
    assert np.abs(np.asarray(whole.crop(first_cell), np.int16) - np.asarray(expected, np.int16)).mean() > 20


def test_face_window_is_a_square_holding_the_face_and_what_is_below_it():
    from unmask_hf.evaluation import face_window

    x0, y0, x1, y1 = face_window((100, 50, 140, 110))  # 40 wide, 60 tall
    assert x1 - x0 == y1 - y0 == 108  # 1.8 × the longer side
    assert x0 < 100 and x1 > 140 and y0 < 50 and y1 > 110
    assert (y1 - 110) > (50 - y0)  # more room below the face (chin, collar) than above


def test_real_photos_benchmark_picks_photos_by_name(tmp_path, monkeypatch, capsys):
    from .test_designs import load_script

    bench = load_script(ROOT / "benchmarks" / "real_photos.py", "real_photos")
    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    monkeypatch.setattr("sys.argv", ["real_photos.py", str(tmp_path), "--families", "0", "--photos", "astronaut,nobody"])
    with pytest.raises(SystemExit, match="not in .*: nobody"):
        bench.main()
    monkeypatch.setattr("sys.argv", ["real_photos.py", str(tmp_path), "--families", "0", "--photos", "astronaut"])
    bench.main()
    assert "1 photos from" in capsys.readouterr().out


def test_photo_fill_benchmark_prints_the_reference_rows(astronaut_faces, tmp_path, monkeypatch, capsys):
    from .test_designs import load_script

    bench = load_script(ROOT / "benchmarks" / "photo_fill.py", "photo_fill")
    make_tiny_pipeline(64).save_pretrained(tmp_path / "tiny")
    monkeypatch.setattr("sys.argv", ["photo_fill.py", "--faces", str(astronaut_faces), "--split", "all", "--count", "2",
                                     "--size", "160", "--model", str(tmp_path / "tiny")])
    bench.main()
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ")[1:]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert list(rows)[1:] == ["map module's mask", "true mask as user mask", "reference: masked input",
                              "reference: Telea given the true mask"]
    psnr, iou = 0, -2  # columns
    assert float(rows["reference: Telea given the true mask"][psnr]) > float(rows["reference: masked input"][psnr])
    assert rows["reference: masked input"][iou] == "0.000" and rows["reference: Telea given the true mask"][iou] == "1.000"
    assert rows["reference: masked input"][-3] == "–"  # no seam where nothing was pasted


def test_faces_mode_only_has_the_validation_split(setup):
    with pytest.raises(SystemExit):
        evaluate_script.parse_args(["--faces", str(setup["faces"]), "--split", "test", "--out", "x"])


def test_revision_needs_a_hub_model(setup, capsys):
    with pytest.raises(SystemExit):
        evaluate_script.parse_args(["--faces", str(setup["faces"]), "--out", "x", "--revision", "v1"])
    assert "--revision pins a Hub model" in capsys.readouterr().err


def test_map_iou_by_style(setup, monkeypatch):
    import torch

    from unmask_hf.evaluation import map_iou_by_style
    from unmask_hf.training.data import PairedFaces

    pipe = make_tiny_pipeline(64)
    files = FaceFolder(setup["faces"]).files[:6]
    styles = ("surgical", "knit")
    monkeypatch.setattr(pipe, "predict_maps", lambda crops: torch.zeros_like(crops[:, :1]))
    assert map_iou_by_style(pipe, files, styles, batch_size=4) == {"surgical": 0.0, "knit": 0.0}
    monkeypatch.setattr(pipe, "predict_maps", lambda crops: torch.ones_like(crops[:, :1]))
    everything = map_iou_by_style(pipe, files, styles, batch_size=4)
    for style in styles:  # a map of the whole crop scores the true mask's share of it, for that style's masks
        truth = PairedFaces(files, 64, synth_options={"styles": (style,)})
        assert everything[style] == pytest.approx(np.mean([truth[i]["mask"].float().mean().item() for i in range(6)]))
    assert everything["surgical"] != map_iou_by_style(pipe, files, ("surgical",), seed=1)["surgical"]  # seed: masks
    assert map_iou_by_style(pipe, files, styles, collar=True) == pytest.approx(everything)  # a collar is not in the map
    occluded = map_iou_by_style(pipe, files, styles, occluder=True)  # what a hand or hair hides leaves the map
    assert all(occluded[style] <= everything[style] for style in styles)
    assert any(occluded[style] < everything[style] for style in styles)
    high = map_iou_by_style(pipe, files, styles, high=True)  # masks worn high cover more of the crop
    assert all(high[style] > everything[style] for style in styles)


def test_real_photos_benchmark_counts_faces_with_no_mask_found(tmp_path, monkeypatch):
    import torch

    from .test_designs import load_script

    bench = load_script(ROOT / "benchmarks" / "real_photos.py", "real_photos")
    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    photos = [tmp_path / "astronaut.png"] * 2
    pipe = make_tiny_pipeline(64)
    monkeypatch.setattr(pipe, "predict_maps", lambda crops: torch.zeros_like(crops[:, :1]))
    assert bench.mask_counts(pipe, photos) == (2, ["astronaut", "astronaut"], [0.0, 0.0])
    square = torch.zeros(1, 1, 64, 64)
    square[..., 32:48, 16:48] = 1  # an eighth of the crop
    monkeypatch.setattr(pipe, "predict_maps", lambda crops: square.expand(len(crops), 1, 64, 64))
    assert bench.mask_counts(pipe, photos) == (2, [], [0.125, 0.125])
