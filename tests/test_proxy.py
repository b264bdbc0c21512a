"""The testbed-as-proxy report: Kendall's tau, the t intervals, H as the papers compute it, ranks against the
published table, the bootstrap over seeds (on generated run folders in the testbed's layout)."""
import json
import math
import os

import pytest

from vlpeft.testbed import proxy


def test_kendall_tau_counts_pairs_and_handles_ties():
    assert proxy.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == (1.0, 6, 0)
    assert proxy.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == (-1.0, 0, 6)
    import random

    from scipy.stats import kendalltau

    rng = random.Random(0)
    for _ in range(20):  # tau-b, ties included, as scipy computes it
        x, y = [rng.randint(0, 4) for _ in range(9)], [rng.randint(0, 4) for _ in range(9)]
        assert proxy.kendall_tau(x, y)[0] == pytest.approx(kendalltau(x, y).statistic)
    tau_b, _, _ = proxy.kendall_tau([1, 1, 2, 3], [1, 2, 3, 4])  # a tie in x: tau-b
    assert tau_b == pytest.approx(5 / math.sqrt(5 * 6))
    with pytest.raises(ValueError):
        proxy.kendall_tau([1], [1])


def test_discordant_pairs_name_the_orderings_against_the_papers():
    rows = [{"trainer": "A", "H": 80.0, "published_H": 70.0}, {"trainer": "B", "H": 75.0, "published_H": 79.0},
            {"trainer": "C", "H": 60.0, "published_H": 72.0}]
    assert proxy.discordant_pairs(rows) == [("A", "B", 5.0, 9.0), ("A", "C", 20.0, 2.0)]  # B > C agrees


def test_t_interval():
    mean, half = proxy.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert math.isnan(proxy.t_interval([5.0])[1])


def _write(root, dataset, trainer, seed, base, new):
    for stage, acc in (("train_base", base), ("test_new", new)):
        path = os.path.join(root, "b2n", dataset, trainer, f"seed{seed}", stage)
        os.makedirs(path)
        with open(os.path.join(path, "results.json"), "w") as f:
            json.dump({"accuracy": acc}, f)


def test_report_ranks_methods_against_the_published_h(tmp_path):
    root = str(tmp_path)
    # testbed H order: PromptSRC > MaPLe > CoOp (published: PromptSRC 79.97 > MaPLe 78.55 > CoOp 71.66)
    accs = {"CoOp": (70, 50), "MaPLe": (80, 60), "PromptSRC": (85, 70), "DPDLoRA_lorss": (99, 99)}
    for trainer, (b, n) in accs.items():
        for seed, shift in ((1, -1.0), (2, 0.0), (3, 1.0)):
            for dataset in ("TestbedScenes", "TestbedSketchShapes"):
                _write(root, dataset, trainer, seed, b + shift, n + shift)
    _write(root, "TestbedScenes", "KgCoOp", 1, 60, 40)  # one seed, one dataset: not ranked
    result = proxy.proxy_report(proxy.collect(root), n_boot=200)
    rows = {r["trainer"]: r for r in result["rows"]}
    assert rows["MaPLe"]["H"] == pytest.approx(proxy.harmonic(80, 60))
    assert rows["MaPLe"]["H_ci"] == pytest.approx(proxy.t_interval(
        [proxy.harmonic(80 + d, 60 + d) for d in (-1, 0, 1)])[1])
    assert [r["trainer"] for r in result["rows"]] == ["DPDLoRA_lorss", "PromptSRC", "MaPLe", "CoOp"]
    assert rows["DPDLoRA_lorss"]["published_H"] is None  # an ablation variant has no published number
    assert rows["PromptSRC"]["published_rank"] == 1 and rows["CoOp"]["published_rank"] == 3
    tau = result["tau"]
    assert (tau["tau"], tau["concordant"], tau["discordant"], tau["methods"]) == (1.0, 3, 0, 3)
    assert tau["bootstrap_95"] == [1.0, 1.0] and result["incomplete"] == ["KgCoOp"]
    assert tau["discordant_pairs"] == []
    text = proxy.render(result)
    assert "Kendall tau" in text and "KgCoOp" in text
    assert proxy.main([root, "--bootstrap", "50", "--json", str(tmp_path / "proxy.json")]) == 0
    assert json.load(open(tmp_path / "proxy.json"))["tau"]["tau"] == 1.0
    two_json = str(tmp_path / "two.json")
    assert proxy.main([root, "--trainers", "CoOp", "MaPLe", "--bootstrap", "5", "--json", two_json]) == 0
    two = json.load(open(tmp_path / "two.json"))
    assert [r["trainer"] for r in two["rows"]] == ["MaPLe", "CoOp"] and two["tau"]["methods"] == 2
    with pytest.raises(SystemExit):  # a trainer without runs is an error that lists the ones found
        proxy.main([root, "--trainers", "CoOp", "IVLP"])
    assert proxy.published_method("DPC_maple") == "DPC+MaPLe" and proxy.published_method("DPL_cycle") is None


def test_grid_taus_best_per_method_and_over_every_choice():
    published = {"A": 80.0, "B": 75.0, "C": 70.0}
    h = {"A": {"lo": 50.0, "hi": 40.0}, "B": {"lo": 45.0, "hi": 60.0}, "C": {"lo": 42.0}}
    taus = proxy.grid_taus(h, published)
    assert taus["best_per_method"] == pytest.approx(proxy.kendall_tau([50, 60, 42], [80, 75, 70])[0])  # B > A > C
    assert taus["max"] == (1.0, {"A": "lo", "B": "lo", "C": "lo"})  # 50 > 45 > 42
    assert taus["min"][0] == pytest.approx(proxy.kendall_tau([40, 60, 42], [80, 75, 70])[0])
    assert proxy.grid_taus(h, published, max_combinations=3)["max"] is None  # 4 choices: not enumerated


def _write_setting(root, trainer, seed, lr, base, new, dataset="TestbedScenes"):
    _write(root, dataset, trainer, seed, base, new)
    for stage in ("train_base", "test_new"):
        with open(os.path.join(root, "b2n", dataset, trainer, f"seed{seed}", stage, "config.yaml"), "w") as f:
            f.write(f"OPTIM:\n  LR: {lr}\n")


def test_grid_report_pools_folders_by_setting(tmp_path):
    # CoOp at two learning rates in two folders; MaPLe in both with the same runs; DPC differs under one setting
    for folder, lr, coop in (("a", 0.002, (70, 50)), ("b", 0.006, (90, 30))):
        root = str(tmp_path / folder)
        for seed in (1, 2):
            _write_setting(root, "CoOp", seed, lr, *coop)
            _write_setting(root, "MaPLe", seed, 0.0035, 80, 60)
            _write_setting(root, "DPC", seed, 0.002, 85 if folder == "a" else 86, 60)
    found, ambiguous = proxy.collect_settings([str(tmp_path / "a"), str(tmp_path / "b")], ["OPTIM.LR", "X.Y"])
    assert set(found) == {("CoOp", (0.002, None)), ("CoOp", (0.006, None)), ("MaPLe", (0.0035, None))}
    assert ambiguous == ["DPC"]
    assert found[("CoOp", (0.006, None))][2]["TestbedScenes"] == {"base": 90, "new": 30}
    text = proxy.grid_report([str(tmp_path / "a"), str(tmp_path / "b")], ["OPTIM.LR"])
    assert "LR 0.002: 58.33; LR 0.006: 45.00" in text  # H(70, 50), H(90, 30)
    assert "each at its best setting: 1.000" in text and "highest 1.000" in text and "lowest 1.000" in text
    assert "Left out (different runs under one setting): DPC" in text
    assert proxy.main([str(tmp_path / "a"), str(tmp_path / "b"), "--grid", "OPTIM.LR"]) == 0
    with pytest.raises(SystemExit):  # pooled without --grid, CoOp's runs disagree
        proxy.main([str(tmp_path / "a"), str(tmp_path / "b")])


def test_collect_pools_folders_of_different_datasets(tmp_path, capsys):
    both, first, second = (str(tmp_path / n) for n in ("both", "first", "second"))
    for trainer, (b, n) in {"CoOp": (70, 50), "MaPLe": (80, 60)}.items():
        for seed in (1, 2):
            for dataset, root in (("TestbedScenes", first), ("TestbedWarmLight", second)):
                shift = seed + (dataset == "TestbedWarmLight")
                _write(both, dataset, trainer, seed, b + shift, n - shift)
                _write(root, dataset, trainer, seed, b + shift, n - shift)
    pooled = proxy.collect([first, second])
    assert json.dumps(pooled, sort_keys=True) == json.dumps(proxy.collect(both), sort_keys=True)
    assert set(pooled["CoOp"][2]) == {"TestbedScenes", "TestbedWarmLight"}
    assert proxy.collect([first, first]) == proxy.collect(first)  # the same run twice agrees
    _write(str(tmp_path / "other"), "TestbedScenes", "CoOp", 1, 10, 10)
    with pytest.raises(ValueError, match="CoOp seed 1 on TestbedScenes"):
        proxy.collect([first, str(tmp_path / "other")])
    assert proxy.main([first, second, "--bootstrap", "20"]) == 0
    assert "Kendall tau" in capsys.readouterr().out
