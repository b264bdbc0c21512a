"""``python -m vlpeft.dpl_plot`` (docs/decisions/dpl.md#dpl-plots): the α heatmap and evolution plots of a DPL search
run, the printed lengths, --epoch, the refusal to overwrite, the official code's .npy files and the error without α."""
import ast
import os
import re
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from vlpeft.dpl_plot import EVOLUTION, HEATMAP, main  # noqa: E402
from vlpeft.trainers.dpl import PAPER_OPTIONS, ArchitectureWeights, lengths_from_alpha, save_alpha  # noqa: E402

BLOCKS = {"text": 3, "vision": 4}


def printed_lengths(out):
    return {tower: ast.literal_eval(re.search(rf"^  {tower}: (\[.*\])$", out, re.M).group(1))
            for tower in ("text", "vision")}


@pytest.fixture
def run(tmp_path):
    """A search run folder with α of epochs 0, 1, 2 whose argmax differs between epochs; {epoch: lengths}."""
    torch.manual_seed(0)
    weights = ArchitectureWeights(BLOCKS, PAPER_OPTIONS)
    folder = tmp_path / "run"
    expected = {}
    for epoch in range(3):
        with torch.no_grad():
            for tower, blocks in BLOCKS.items():
                rows = torch.arange(blocks)
                weights.alpha[tower].zero_()
                weights.alpha[tower][rows, (rows + epoch) % len(PAPER_OPTIONS)] = 1.0 + epoch
        save_alpha(str(folder / "alpha"), epoch, weights)
        expected[epoch] = lengths_from_alpha({t: a.detach() for t, a in weights.alpha.items()}, PAPER_OPTIONS)
    (folder / "lengths.json").write_text("{}\n")
    return folder, expected


def test_run_folder_plots_and_last_epoch_lengths(run, capsys):
    folder, expected = run
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert printed_lengths(out) == expected[2]
    assert expected[2] != expected[1]
    for name in (HEATMAP, EVOLUTION):
        path = folder / "plots" / name
        assert path.is_file() and path.stat().st_size > 0
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(folder / "plots")) == sorted([HEATMAP, EVOLUTION])  # no temporary file left


def test_alpha_folder_epoch_and_overwrite(run, tmp_path, capsys):
    folder, expected = run
    out_dir = tmp_path / "figures"
    assert main([str(folder / "alpha"), "--epoch", "1", "--out", str(out_dir)]) == 0
    assert printed_lengths(capsys.readouterr().out) == expected[1]
    heatmap = out_dir / HEATMAP
    before = heatmap.read_bytes()

    # existing plots are not replaced without --overwrite
    assert main([str(folder / "alpha"), "--out", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert "already exist" in captured.err and "--overwrite" in captured.err and captured.out == ""
    assert heatmap.read_bytes() == before

    assert main([str(folder / "alpha"), "--epoch", "0", "--out", str(out_dir), "--overwrite"]) == 0
    assert printed_lengths(capsys.readouterr().out) == expected[0]
    assert heatmap.read_bytes() != before

    assert main([str(folder), "--epoch", "7"]) == 2
    assert "no α of epoch 7" in capsys.readouterr().err


def test_official_npy_files_have_swapped_names(tmp_path, capsys):
    folder = tmp_path / "official"
    folder.mkdir()
    text = np.zeros((3, 7), dtype=np.float32)
    vision = np.zeros((4, 7), dtype=np.float32)
    text[[0, 1, 2], [1, 5, 6]] = 1.0
    vision[[0, 1, 2, 3], [6, 0, 3, 2]] = 1.0
    np.save(folder / "alpha_e4_img.npy", text)  # the official code's "img" file holds the text α
    np.save(folder / "alpha_e4_txt.npy", vision)
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert printed_lengths(out) == {"text": [1, 5, 6], "vision": [6, 0, 3, 2]}
    assert "options [0, 1, 2, 3, 4, 5, 6]" in out
    assert (folder / "plots" / HEATMAP).stat().st_size > 0 and (folder / "plots" / EVOLUTION).stat().st_size > 0


def test_folder_without_alpha(tmp_path, capsys):
    (tmp_path / "run" / "alpha").mkdir(parents=True)
    assert main([str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no saved α" in err and "epoch_<E>.json" in err
    assert not (tmp_path / "run" / "plots").exists()
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_without_matplotlib_prints_lengths_and_exits_2(run, monkeypatch, capsys):
    folder, expected = run
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main([str(folder)]) == 2
    captured = capsys.readouterr()
    assert printed_lengths(captured.out) == expected[2]
    assert "pip install matplotlib" in captured.err
    assert not (folder / "plots").exists()
