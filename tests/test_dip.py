"""DIP (docs/decisions/dip.md): counts, the low-rank prompt operator, logits equal to the base method with the
equivalent prompts, the Alg. 1 / 2 terms, information density and its command."""
import json
import os.path as osp
import re

import pytest
import torch

from conftest import tiny_opts
from vlpeft.clip import load_clip
from vlpeft.clip.random_weights import build_random_clip
from vlpeft.density import density_report, information_density, prompt_matrices, spearman
from vlpeft.trainers.dip import (DIPMaPLePromptLearner, DIPPromptLearner, FullRankPrompt, LowRankPrompt,
                                 resample_prompts)
from vlpeft.trainers.ivlp import PromptedCLIP
from vlpeft.trainers.maple import MultiModalPromptLearner

CLASSNAMES = ["forest", "sea or lake", "Annual_Crop Land"]


def n_trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_dip_parameter_counts_vit_b16():
    clip_model = build_random_clip("ViT-B/16", seed=0)
    assert n_trainable(DIPPromptLearner(clip_model, CLASSNAMES, 4, "a photo of a", 1, 0.25, 0.02)) == 516
    deep = DIPPromptLearner(clip_model, CLASSNAMES, 4, "a photo of a", 1, 0.25, 0.02, depth=6)
    assert n_trainable(deep) == 3_096  # Table 12: 3.1K at depth 6
    maple = DIPMaPLePromptLearner(clip_model, CLASSNAMES, 4, 9, "a photo of a", 1, 64, 0.25, 0.02)
    assert n_trainable(maple) == 741_924  # App. B: (4 + 512) + (512 * 64 + 64 * 768) per layer x 9
    assert all(not any(n.endswith("bias") for n, _ in c.named_parameters()) for c in maple.compound_prompt_projections)
    # the frozen full-rank branch is the embedding of "a photo of a"
    words = clip_model.token_embedding(__import__("vlpeft.clip", fromlist=["tokenize"]).tokenize("a photo of a"))
    torch.testing.assert_close(deep.ctx.init, words[0, 1:5].float())


def test_low_rank_prompt_operator():
    torch.manual_seed(0)
    init = torch.randn(4, 16)
    prompt = LowRankPrompt(init, rank=2, dropout=0.5, std=0.02)
    assert prompt.A.shape == (4, 2) and prompt.B.shape == (2, 16)
    assert (prompt.equivalent() - init).abs().max() < 0.01  # sigma -> 0: starts near P_init
    with torch.no_grad():
        prompt.A.normal_()
        prompt.B.normal_()
    product = prompt.A @ prompt.B
    prompt.eval()
    with torch.no_grad():
        first = prompt()
        assert prompt() is first  # the equivalent P is computed once for inference...
        torch.testing.assert_close(first, init + product)
        prompt.A.mul_(2)  # ... and again once the factors change (an optimizer step, a checkpoint load)
        torch.testing.assert_close(prompt(), init + 2 * product)
    prompt.train()
    sample = prompt()
    assert prompt() is sample  # one dropout sample per forward, shared by its uses
    delta = (sample - init).detach()
    kept = delta != 0
    torch.testing.assert_close(delta[kept], (2 * product / 0.5)[kept])  # inverted dropout on the product only
    assert 0 < kept.float().mean() < 1
    prompt.resample()
    assert prompt() is not sample


def _randomise(module, std=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(std=std)


def test_dip_logits_equal_coop_with_the_equivalent_prompts(tiny_clip_path):
    from vlpeft.trainers.coop import PromptLearner
    from vlpeft.trainers.base import PromptCLIP
    from conftest import cfg_with

    torch.manual_seed(0)
    dip_clip, coop_clip = load_clip("tiny", tiny_clip_path), load_clip("tiny", tiny_clip_path)
    learner = DIPPromptLearner(dip_clip, CLASSNAMES, 4, "a photo of a", 2, 0.25, 0.02)
    _randomise(learner)
    coop = PromptLearner(cfg_with(**{"TRAINER.COOP.CTX_INIT": "a photo of a"}), CLASSNAMES, coop_clip)
    with torch.no_grad():
        coop.ctx.copy_(learner.ctx.init + learner.ctx.A @ learner.ctx.B)
    images = torch.randn(2, 3, 32, 32)
    dip_model, coop_model = PromptedCLIP(learner, dip_clip).eval(), PromptCLIP(coop, coop_clip).eval()
    with torch.no_grad():
        torch.testing.assert_close(dip_model(images), coop_model(images), atol=1e-5, rtol=1e-5)


def test_dip_maple_logits_equal_maple_with_the_equivalent_prompts_and_couplings(tiny_clip_path):
    torch.manual_seed(0)
    dip_clip, maple_clip = load_clip("tiny", tiny_clip_path), load_clip("tiny", tiny_clip_path)
    dip = DIPMaPLePromptLearner(dip_clip, CLASSNAMES, 4, 2, "a photo of a", 1, 8, 0.25, 0.02)
    _randomise(dip)
    maple = MultiModalPromptLearner(maple_clip, CLASSNAMES, 4, 2, "a photo of a")
    dip.eval()
    with torch.no_grad():
        maple.ctx.copy_(dip.text_prompt(0))
        maple.compound_prompts_text[0].copy_(dip.text_prompt(1))
        for mine, theirs in [(dip.proj, maple.proj), (dip.compound_prompt_projections[0],
                                                        maple.compound_prompt_projections[0])]:
            theirs.weight.copy_(mine[1].weight @ mine[0].weight)
            theirs.bias.zero_()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(PromptedCLIP(dip, dip_clip).eval()(images),
                                   PromptedCLIP(maple, maple_clip).eval()(images), atol=1e-5, rtol=1e-5)
    # in training, the vision prompt is coupled from the same dropout sample the text tower reads
    dip.train()
    resample_prompts(dip)
    text = dip.text_prompt(1)
    assert dip.text_prompt(1) is text
    torch.testing.assert_close(dip.vision_prompts(1), dip.compound_prompt_projections[0](text))


def test_information_density():
    u, _ = torch.linalg.qr(torch.randn(8, 4))
    v, _ = torch.linalg.qr(torch.randn(16, 4))
    matrix = (u * torch.tensor([4.0, 3.0, 2.0, 1.0])) @ v.t()  # singular values 4, 3, 2, 1
    assert information_density(matrix, 1).item() == pytest.approx(0.4, abs=1e-5)
    assert information_density(matrix, 2).item() == pytest.approx(0.7, abs=1e-5)
    assert information_density(torch.outer(torch.randn(4), torch.randn(9)), 1).item() == pytest.approx(1.0, abs=1e-5)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_prompt_matrices_of_every_prompt_learner_layout():
    A, B, init = torch.randn(4, 1), torch.randn(1, 8), torch.randn(4, 8)
    found = prompt_matrices({
        "ctx.A": A, "ctx.B": B, "ctx.init": init,  # DIP
        "prompts.text_deep.0": torch.randn(4, 8), "prompts.vision_ctx": torch.randn(4, 12),  # IVLP inside DsRA
        "adapters.M.text_attn": torch.randn(8, 5), "adapters.R.shared_all": torch.randn(2, 5),
        "compound_prompts_text.0": torch.randn(2, 8), "compound_prompt_projections.0.weight": torch.randn(12, 8),
        "proj.weight": torch.randn(12, 8), "classes.token_prefix": torch.randn(3, 1, 8),
    })
    assert sorted(found) == ["compound_prompts_text.0", "ctx", "prompts.text_deep.0", "prompts.vision_ctx"]
    torch.testing.assert_close(found["ctx"], init + A @ B)
    csc = density_report({"ctx": torch.randn(3, 4, 8)})  # class-specific CoOp context: mean over classes
    assert set(csc) == {"ctx"} and 0.25 <= csc["ctx"][1] <= 1.0 and csc["ctx"][2] >= csc["ctx"][1]


@pytest.mark.parametrize("algorithm", ["id_objective", "sv_penalty"])
def test_density_algorithms_raise_information_density(algorithm):
    """Alg. 1 / 2 alone (no CE) on a full-rank prompt: the top singular direction gains weight."""
    from types import SimpleNamespace

    from vlpeft.trainers.dip import DIP

    torch.manual_seed(0)
    prompt = FullRankPrompt(0.1 * torch.randn(4, 16))  # the scale of word embeddings
    learner = SimpleNamespace(prompts=lambda: [prompt()])
    trainer = SimpleNamespace(trainer_cfg=SimpleNamespace(ALGORITHM=algorithm, ID_K=1 if algorithm == "id_objective"
                                                          else 3, LAMBDA=1.0),
                              model=SimpleNamespace(prompt_learner=learner))
    sigma = torch.linalg.svdvals(prompt.weight.detach())
    term = DIP.density_term(trainer)
    expected = -sigma[0] / sigma.sum() if algorithm == "id_objective" else (torch.arange(2, 5) * sigma[1:]).sum()
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    before = information_density(prompt.weight.detach(), 1).item()
    optim = torch.optim.SGD(prompt.parameters(), lr=0.01)
    for _ in range(20):
        optim.zero_grad()
        DIP.density_term(trainer).backward()
        optim.step()
    assert information_density(prompt.weight.detach(), 1).item() > before + 0.05


def test_dip_training_logs_density_and_the_command_reads_any_checkpoint(eurosat_root, tiny_clip_path, tmp_path):
    from vlpeft.cli import main
    from vlpeft.density import main as density_main

    out = str(tmp_path / "dip")
    main([str(a) for a in ["--root", eurosat_root, "--seed", 1, "--trainer", "DIP", "--output-dir", out,
                           "--dataset-config-file", "configs/datasets/eurosat.yaml",
                           *tiny_opts(tiny_clip_path, **{"OPTIM.LR": 0.5, "OPTIM.MAX_EPOCH": 3}),
                           "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.CHECKPOINT_FREQ", 1,
                           "TRAINER.DIP.PREC", "fp32", "TRAINER.DIP.PROMPT_DEPTH", 2]])
    log = open(osp.join(out, "log.txt")).read()
    logged = re.findall(r"information density \(epoch (\d)\): ctx ID1 ([\d.]+) ID2 ([\d.]+); deep.0 ID1", log)
    assert [e for e, _, _ in logged] == ["1", "2", "3"]
    checkpoint = torch.load(osp.join(out, "prompt_learner", "model.pth.tar-3"), weights_only=True)["state_dict"]
    assert sorted(checkpoint) == ["ctx.A", "ctx.B", "ctx.init", "deep.0.A", "deep.0.B", "deep.0.init"]
    rows = density_main([out, "--evaluate", "new", "--json", str(tmp_path / "id.json")])
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["density"]["ctx"][1] == pytest.approx(float(logged[-1][1]), abs=1e-4)
    assert all(0 <= r["accuracy"] <= 100 for r in rows)
    assert json.load(open(tmp_path / "id.json"))[0]["epoch"] == 1
    # a CoOp checkpoint works the same way
    coop = str(tmp_path / "coop")
    main([str(a) for a in ["--root", eurosat_root, "--seed", 1, "--trainer", "CoOp", "--output-dir", coop,
                           "--dataset-config-file", "configs/datasets/eurosat.yaml",
                           *tiny_opts(tiny_clip_path, **{"OPTIM.MAX_EPOCH": 1}), "DATASET.NUM_SHOTS", 2,
                           "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", 4]])
    (row,) = density_main([osp.join(coop, "prompt_learner", "model.pth.tar-1")])
    assert set(row["density"]) == {"ctx"} and 0.25 <= row["density"]["ctx"][1] <= 1


def test_sweep_selects_on_the_val_split_only(eurosat_root, tiny_clip_path, tmp_path):
    from vlpeft.sweep import sweep

    out = tmp_path / "sweep"
    rows = sweep("DIP", "configs/trainers/DIP/vit_b16_ep20_ctxv1.yaml", ["configs/datasets/eurosat.yaml"], [1],
                 [("TRAINER.DIP.DROPOUT", ["0.0", "0.5"])], str(out), root=eurosat_root, shots=4,
                 opts=tiny_opts(tiny_clip_path, **{"OPTIM.MAX_EPOCH": 1}) + ["TRAINER.DIP.PREC", "fp32"])
    selection = json.load(open(out / "selection.json"))
    assert selection["best"] == dict(rows[0][0]) and selection["split"] == "val"
    means = {p["point"]["TRAINER.DIP.DROPOUT"]: p["mean"] for p in selection["points"]}
    assert selection["best_mean_val_accuracy"] == max(means.values())
    for dropout in ("0.0", "0.5"):
        run = out / f"DROPOUT{dropout}" / "eurosat" / "seed1"
        assert json.load(open(run / "results.json"))["split"] == "val"
        log = (run / "log.txt").read_text()
        assert "Evaluate on the *val* set" in log and "Evaluate on the *test* set" not in log


def test_sweep_h_objective_holds_out_half_of_the_base_classes(eurosat_root, tiny_clip_path, tmp_path):
    from vlpeft.results import harmonic
    from vlpeft.sweep import sweep

    out = tmp_path / "sweep"
    rows = sweep("CoOp", "configs/trainers/CoOp/vit_b16.yaml", ["configs/datasets/eurosat.yaml"], [1],
                 [("OPTIM.LR", ["0.002", "0.02"])], str(out), root=eurosat_root, shots=4, objective="h",
                 opts=tiny_opts(tiny_clip_path, **{"OPTIM.MAX_EPOCH": 1}) + ["TRAINER.COOP.PREC", "fp32"])
    selection = json.load(open(out / "selection.json"))
    assert selection["objective"] == "h" and selection["best"] == dict(rows[0][0])
    for entry in selection["points"]:
        run = out / f"LR{entry['point']['OPTIM.LR']}" / "eurosat" / "seed1"
        base = json.load(open(run / "pseudo_base" / "results.json"))
        new = json.load(open(run / "pseudo_new" / "results.json"))
        assert base["split"] == new["split"] == "val"
        assert (base["subsample_classes"], new["subsample_classes"]) == ("pseudo_base", "pseudo_new")
        assert entry["mean"] == pytest.approx(harmonic(base["accuracy"], new["accuracy"]))
        # EuroSAT's 10 classes: base 0-4, pseudo-base 0-2 (trained and scored), pseudo-new 3-4 (scored only)
        assert "Evaluate on the *test* set" not in (run / "pseudo_new" / "log.txt").read_text()
        assert re.search(r"# classes\s+3\b", (run / "pseudo_base" / "log.txt").read_text())
        assert re.search(r"# classes\s+2\b", (run / "pseudo_new" / "log.txt").read_text())
    assert selection["best_val_h"] == max(p["mean"] for p in selection["points"])
    with pytest.raises(ValueError, match="subsample base"):
        sweep("CoOp", "cfg.yaml", ["a"], [1], [("OPTIM.LR", ["1"])], str(tmp_path), subsample="all", objective="h")


def test_sweep_ties_keep_grid_order(tmp_path, monkeypatch):
    import vlpeft.testbed.accuracy as bench
    from vlpeft.sweep import sweep

    # means equal up to float summation: 54.17 + 62.5 and 50.0 + 66.67 (the session-4 DIP testbed sweep)
    accuracy = {("0.002", "a"): 54.166666666666664, ("0.002", "b"): 62.5, ("0.02", "a"): 50.0,
                ("0.02", "b"): 66.66666666666667, ("0.2", "a"): 40.0, ("0.2", "b"): 40.0}
    monkeypatch.setattr(bench, "run_train", lambda flags, opts, out, quiet: {
        "split": "val", "accuracy": accuracy[(opts[opts.index("OPTIM.LR") + 1], opts[1])]})
    rows = sweep("DIP", "cfg.yaml", ["a", "b"], [1], [("OPTIM.LR", ["0.2", "0.002", "0.02"])], str(tmp_path))
    assert rows[0][1] != rows[1][1]  # the float sums differ...
    assert [dict(p)["OPTIM.LR"] for p, _, _ in rows] == ["0.002", "0.02", "0.2"]  # ...the grid order decides


def test_sweep_h_objective_ranks_by_h_not_by_base_accuracy(tmp_path, monkeypatch):
    import vlpeft.testbed.accuracy as bench
    from vlpeft.sweep import sweep

    # lr 0.1 learns the trained classes best and costs the held-out ones most
    accuracy = {("0.1", "pseudo_base"): 90.0, ("0.1", "pseudo_new"): 20.0,
                ("0.01", "pseudo_base"): 70.0, ("0.01", "pseudo_new"): 50.0}
    calls = []

    def fake_run(flags, opts, out, quiet):
        sub = opts[opts.index("DATASET.SUBSAMPLE_CLASSES") + 1]
        calls.append((sub, "--eval-only" in flags, out))
        return {"split": "val", "accuracy": accuracy[(opts[opts.index("OPTIM.LR") + 1], sub)]}

    monkeypatch.setattr(bench, "run_train", fake_run)
    monkeypatch.setattr(bench, "last_epoch", lambda run_dir: 5)
    rows = sweep("CoOp", "cfg.yaml", ["a"], [1], [("OPTIM.LR", ["0.1", "0.01"])], str(tmp_path), objective="h")
    assert [dict(p)["OPTIM.LR"] for p, _, _ in rows] == ["0.01", "0.1"]
    assert rows[0][1] == pytest.approx(2 * 70 * 50 / 120) and rows[1][1] == pytest.approx(2 * 90 * 20 / 110)
    assert [(sub, evaluates_only) for sub, evaluates_only, _ in calls[:2]] == [("pseudo_base", False),
                                                                                ("pseudo_new", True)]


def test_density_plot_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    from vlpeft.density import plot

    rows = [{"epoch": e, "mean_id": {1: 0.3 + 0.01 * e, 2: 0.5 + 0.01 * e}, "accuracy": 60.0 + e} for e in (1, 2, 3)]
    path = str(tmp_path / "density.png")
    assert plot(rows, [1, 2], path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
