"""The blind test (frame.eval.blind, frame-blind): the sheet holds what the key says, the score reads an answer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from frame.cli.blind import main
from frame.eval.blind import COLUMNS, LABEL_HEIGHT, TILE_SIDE, check_key, score, sheet, shuffle


def two_sets(n_samples: int = 5, n_real: int = 7, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples dark, real images light, each image its own level (so a tile names its image)."""
    samples = torch.linspace(0.05, 0.3, n_samples).view(-1, 1, 1, 1).expand(-1, 3, side, side).clone()
    real = torch.linspace(0.6, 0.95, n_real).view(-1, 1, 1, 1).expand(-1, 3, side, side).clone()
    return samples, real


def test_shuffle_draws_n_of_each_and_the_key_names_the_samples():
    samples, real = two_sets()
    tiles, is_sample = shuffle(samples, real, 4, seed=1)
    assert len(tiles) == 8 and sum(is_sample) == 4
    levels = tiles[:, 0, 0, 0]
    assert all((level < 0.5) == flag for level, flag in zip(levels.tolist(), is_sample))
    assert len(set(levels.tolist())) == 8  # drawn without replacement
    again, key_again = shuffle(samples, real, 4, seed=1)
    assert torch.equal(again, tiles) and key_again == is_sample
    orders = {tuple(shuffle(samples, real, 4, seed=s)[1]) for s in range(6)}
    assert len(orders) > 1  # the seed shuffles


def test_shuffle_refuses_sets_it_cannot_draw_from():
    samples, real = two_sets()
    with pytest.raises(ValueError, match="between 1 and 5"):
        shuffle(samples, real, 6)
    with pytest.raises(ValueError, match="differ in size"):
        shuffle(samples, real[..., :4], 2)


def test_sheet_shows_each_tile_enlarged_without_smoothing_in_its_numbered_place(tmp_path):
    samples, real = two_sets(side=8)
    tiles, _ = shuffle(samples, real, 5, seed=0)  # 10 tiles: two rows of COLUMNS = 8
    path = tmp_path / "sheet.png"
    sheet(tiles).save(path)
    image = np.asarray(Image.open(path).convert("RGB")).astype(float) / 255
    factor = TILE_SIDE // 8
    side = 8 * factor
    for index, tile in enumerate(tiles):
        row, column = divmod(index, COLUMNS)
        top, left = row * (side + LABEL_HEIGHT) + LABEL_HEIGHT, column * (side + LABEL_HEIGHT) + LABEL_HEIGHT
        block = image[top : top + side, left : left + side]
        assert block.shape == (side, side, 3)
        assert np.abs(block - tile[0, 0, 0].item()).max() <= 1 / 255  # flat: enlarged by repetition
        label = image[top - LABEL_HEIGHT : top, left : left + side]
        assert label.min() < 0.5  # its number is written above it


def test_score_by_hand():
    key = [True, False, True, False, False, True]
    right = score(key, [1, 3, 6])
    assert (right.accuracy, right.samples_found, right.real_kept) == (1.0, 3, 3)
    assert right.p_value == pytest.approx(0.5**6)
    wrong = score(key, [2, 4, 5])
    assert (wrong.accuracy, wrong.samples_found, wrong.real_kept) == (0.0, 0, 0) and wrong.p_value == 1.0
    half = score(key, [1, 2, 3])  # two samples found, one real image called a sample
    assert half.accuracy == pytest.approx(4 / 6)
    low, high = half.accuracy_interval
    assert low < 4 / 6 < high
    with pytest.raises(ValueError, match="numbered 1 to 6"):
        score(key, [0, 7])
    with pytest.raises(ValueError, match="named twice"):
        score(key, [1, 1])


@pytest.mark.parametrize("key", [[], {"is_sample": "yes"}, {"is_sample": [1, 0]}, {"is_sample": [True, True]},
                                 {"is_sample": [True, False, False]}, {"other": [True, False]}])
def test_a_crafted_key_is_refused_naming_the_file(key):
    with pytest.raises(ValueError, match="k.json: not a blind-test key"):
        check_key(key, "k.json")


def test_frame_blind_writes_a_sheet_whose_key_scores_the_true_answer_one(tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(6):  # flat dark squares: no face among the real ones
        Image.fromarray(np.full((25, 25), 20 + 10 * i, dtype=np.uint8)).save(samples / f"{i}.png")
    out = tmp_path / "blind"
    assert main(["--samples", str(samples), "--data", "lfw_faces", "--n", "4", "--out", str(out), "--seed", "3"]) == 0
    key = json.loads((out / "key.json").read_text())
    assert sum(key["is_sample"]) == 4 and len(key["is_sample"]) == 8
    tiles = np.asarray(Image.open(out / "sheet.png").convert("L")).astype(float)
    side = 25 * -(-TILE_SIDE // 25)
    for index, flag in enumerate(key["is_sample"]):  # the key's samples are the flat tiles
        top, left = LABEL_HEIGHT, index * (side + LABEL_HEIGHT) + LABEL_HEIGHT
        assert (tiles[top : top + side, left : left + side].std() < 1) == flag
    truth = ",".join(str(i) for i, flag in enumerate(key["is_sample"], 1) if flag)
    capsys.readouterr()
    assert main(["--key", str(out / "key.json"), "--answer", truth]) == 0
    assert capsys.readouterr().out.startswith("accuracy 1.000")


def test_frame_blind_answers_a_bad_key_or_answer_in_one_line_with_status_two(tmp_path, capsys):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"is_sample": [True, False]}))
    broken = tmp_path / "broken.json"
    broken.write_bytes(b"\xff{")
    for argv, says in [
        (["--key", str(key)], "give --answer"),
        (["--key", str(broken), "--answer", "1"], "broken.json: not a blind-test key"),
        (["--key", str(tmp_path / "missing.json"), "--answer", "1"], "missing.json: No such file"),
        (["--key", "/dev/zero", "--answer", "1"], "/dev/zero: not a blind-test key (over"),
        (["--key", str(key), "--answer", "one"], "expected tile numbers"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, (argv, err)
    done = subprocess.run([sys.executable, "-m", "frame.cli.blind", "--key", str(key), "--answer", "3"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "frame-blind: error: answer: tiles are numbered 1 to 2, got [3] (--debug shows the traceback)"]


def test_frame_eval_points_to_a_person_when_the_classifier_reads_chance():
    from frame.cli.eval import chance_note
    from frame.eval.report import Score

    def acc(value, low, high):
        return {"c2st_acc": Score(value, 0.5, 1.0, interval=(low, high))}

    assert "frame-blind" in chance_note(acc(0.42, 0.31, 0.54))
    assert "frame-blind" in chance_note(acc(0.62, 0.50, 0.73))  # 1/2 still inside
    assert chance_note(acc(0.94, 0.85, 0.98)) is None  # told apart: nothing to add
    assert chance_note({"kid": Score(0.1, 0.0, 1.0)}) is None  # --no-c2st
    face = {"face_auc": Score(0.68, 0.5, 1.0, interval=(0.58, 0.78))}
    assert "the face judge, which knows faces, did (face_auc)" in chance_note({**acc(0.42, 0.31, 0.54), **face})
    face = {"face_auc": Score(0.55, 0.5, 1.0, interval=(0.45, 0.65))}
    assert "a person may still tell" in chance_note({**acc(0.42, 0.31, 0.54), **face})
