"""The CPU testbed: the generated world, the downstream datasets, the pretraining shortcuts, the shipped tiny CLIP
and the embedded default of train.py."""
import json
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch

from vlpeft.testbed import CHECKPOINT
from vlpeft.testbed import datasets as tb
from vlpeft.testbed.world import (BACKGROUNDS, HELD_OUT_PAIRS, PRETRAIN_STYLES, SCENE_BACKGROUNDS, Scene, caption,
                                   random_scene, render)


def test_rendering_and_captions_are_deterministic():
    scene = Scene("star", "red", "striped", "small", "on the left", "blue", "photo", noise=5, blur=0.5, clutter=2)
    a, b = np.asarray(render(scene, 64, seed=3)), np.asarray(render(scene, 64, seed=3))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, np.asarray(render(scene, 64, seed=4)))
    assert not np.array_equal(a, np.asarray(render(Scene("heart", "red"), 64, seed=3)))
    assert caption(scene) == "a photo of a small red striped star on the left on a blue background."
    assert caption(scene, random.Random(1)) == caption(scene, random.Random(1))


def test_hard_negative_captions_change_one_attribute():
    from vlpeft.testbed.world import COLOURS, PATTERNS, SHAPES, caption_with_negative

    rng = random.Random(0)
    fields = []
    for _ in range(2000):
        scene = random_scene(rng)
        positive, negative = caption_with_negative(scene, rng)
        a, b = positive.rstrip(".").split(), negative.rstrip(".").split()
        assert positive != negative
        changed = [(x, y) for x, y in zip(a, b) if x != y]
        if len(a) == len(b) and len(changed) == 1:  # a swapped word
            x, y = changed[0]
            fields.append(next(f for f, names in (("shape", SHAPES), ("colour", COLOURS), ("pattern", PATTERNS))
                               if x in names and y in names))
        else:  # a pattern word added (plain object) or dropped (negative = plain)
            assert abs(len(a) - len(b)) == 1 and set(a) ^ set(b) <= set(PATTERNS)
            assert (scene.pattern == "plain") == (len(b) > len(a))
            fields.append("pattern")
        words = negative.split()
        for colour, shape in HELD_OUT_PAIRS:  # the negative never names a held-out pair
            if colour in words and shape.rstrip(".") in [w.rstrip(".") for w in words]:
                assert words.index(colour) > words.index(next(w for w in words if w.rstrip(".") == shape))
    assert 0.55 < fields.count("shape") / len(fields) < 0.65 and fields.count("colour") > 200


def test_pretraining_distribution_excludes_held_out_pairs_and_styles():
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(3000)]
    assert not {(s.colour, s.shape) for s in scenes} & set(HELD_OUT_PAIRS)
    assert {s.style for s in scenes} == set(PRETRAIN_STYLES)
    assert all(s.background != s.colour for s in scenes)
    assert {s.background for s in scenes} == set(BACKGROUNDS)  # TestbedScenes' unseen backgrounds never appear
    assert not set(SCENE_BACKGROUNDS) & set(BACKGROUNDS)


def test_unseen_backgrounds_render_in_their_colour():
    for name, rgb in SCENE_BACKGROUNDS.items():
        img = np.asarray(render(Scene("circle", "black", size="small", background=name), 64, seed=0), np.float32)
        corner = img[:8, :8].reshape(-1, 3).mean(0)  # away from the centred object
        assert np.abs(corner - np.array(rgb)).max() < 12, (name, corner)


def test_shades_and_the_colour_cast_render_as_named():
    from vlpeft.testbed.world import COLOURS, SHADE_COLOURS, cast_light, colour_rgb

    assert SHADE_COLOURS["dark red"] == (108, 20, 20) and SHADE_COLOURS["light blue"] == (148, 168, 238)
    assert colour_rgb("red") == COLOURS["red"] and not set(SHADE_COLOURS) & set(COLOURS)
    assert all(colour_rgb(name) == rgb for name, rgb in SHADE_COLOURS.items())
    assert colour_rgb("dark yellow") == (120, 108, 18)  # any colour has a dark and a light shade
    with pytest.raises(KeyError, match="dark <colour>"):
        colour_rgb("dark teal")
    for name in ("dark green", "green", "light green"):
        img = np.asarray(render(Scene("square", name, size="large", background="white"), 64, seed=0), np.float32)
        centre = img[28:36, 28:36].reshape(-1, 3).mean(0)  # the top-lit shading varies by at most 30%
        assert np.abs(centre / np.array(colour_rgb(name)) - 1).max() < 0.3 or np.abs(centre - colour_rgb(name)).max() < 25
    plain = render(Scene("circle", "white", background="grey"), 64, seed=1)
    cast = np.asarray(cast_light(plain), np.float32)
    np.testing.assert_allclose(cast, np.asarray(plain, np.float32) * [1.0, 0.7, 0.35], atol=0.5)  # rounded
    from vlpeft.testbed.world import WARM_LIGHT

    halfway = np.asarray(cast_light(plain, WARM_LIGHT), np.float32)  # half the cast: halfway between plain and cast
    np.testing.assert_allclose(halfway, (np.asarray(plain, np.float32) + cast) / 2, atol=1.0)


@pytest.fixture(scope="module")
def small_testbed(tmp_path_factory):
    """The three datasets with few images per class (generation is deterministic, so the layout is the real one)."""
    root = str(tmp_path_factory.mktemp("testbed"))
    saved = dict(tb.PER_CLASS)
    tb.PER_CLASS.update(train=16, val=4, test=6)
    try:
        for name in tb.SPECS:
            tb.generate(name, root)
    finally:
        tb.PER_CLASS.clear()
        tb.PER_CLASS.update(saved)
    return root


def test_generated_datasets_are_in_coop_format(small_testbed):
    from vlpeft.config import get_cfg
    from vlpeft.engine import build_dataset

    n_classes = {"TestbedSketchShapes": 12, "TestbedHeldoutPairs": 16, "TestbedFinePatterns": 12, "TestbedScenes": 12,
                 "TestbedShades": 12, "TestbedColourCast": 12, "TestbedDarkShades": 12, "TestbedWarmLight": 12}
    assert set(n_classes) == set(tb.SPECS)
    for name, n in n_classes.items():
        folder = osp.join(small_testbed, tb.SPECS[name].folder)
        split = json.load(open(osp.join(folder, f"split_zhou_{name}.json")))
        assert [len(split[k]) for k in ("train", "val", "test")] == [16 * n, 4 * n, 6 * n]
        assert all(osp.isfile(osp.join(folder, "images", rel)) for rel, _, _ in split["test"])
        for sub, expected in (("base", (n + 1) // 2), ("new", n - (n + 1) // 2)):
            cfg = get_cfg()
            cfg.merge_from_list(["DATASET.NAME", name, "DATASET.ROOT", small_testbed, "DATASET.NUM_SHOTS", 4,
                                 "DATASET.SUBSAMPLE_CLASSES", sub, "SEED", 1])
            ds = build_dataset(cfg)
            assert ds.num_classes == expected and len(ds.train_x) == 4 * expected
            if name == "TestbedFinePatterns" and sub == "new":
                assert ds.classnames == ["cyan striped square", "cyan dotted square", "cyan checkered square",
                                         "pink striped square", "pink dotted square", "pink checkered square"]
            if name == "TestbedScenes":  # each half: three pretraining backgrounds and three unseen ones
                backgrounds = [c[len("shape on a "):-len(" background")] for c in ds.classnames]
                assert [f"shape on a {b} background" for b in backgrounds] == ds.classnames
                assert len(set(backgrounds) & set(BACKGROUNDS)) == len(set(backgrounds) & set(SCENE_BACKGROUNDS)) == 3
            if name == "TestbedShades":  # each half: two hues, each dark / plain / light
                hues = ["red", "blue"] if sub == "base" else ["green", "purple"]
                assert ds.classnames == [f"{s}{h} shape" for h in hues for s in ("dark ", "", "light ")]
            if name in ("TestbedColourCast", "TestbedWarmLight"):
                assert ds.classnames == [f"{c} shape" for c in (tb.CAST_ORDER[:6] if sub == "base" else tb.CAST_ORDER[6:])]
            if name == "TestbedDarkShades":  # each half: two colours with their dark twin, two colours alone
                hues = [c[:-len(" shape")].split()[-1] for c in ds.classnames]
                assert len(ds.classnames) == 6 and sum(c.startswith("dark ") for c in ds.classnames) == 2
                assert sorted(hues.count(h) for h in set(hues)) == [1, 1, 2, 2]
                assert ds.classnames[:2] == (["red shape", "dark red shape"] if sub == "base"
                                             else ["purple shape", "dark purple shape"])


def test_truncated_text_forward_is_exact():
    from vlpeft.clip import tokenize
    from vlpeft.testbed.pretrain import CompactEmbedding, build_model, encode_text_truncated, world_token_ids

    model = build_model(seed=0).eval()
    texts = [caption(random_scene(random.Random(i)), random.Random(i)) for i in range(8)]
    tokens = tokenize(texts)
    embedding = CompactEmbedding(model.token_embedding, world_token_ids())
    with torch.no_grad():
        embedding.weight.add_(torch.randn_like(embedding.weight))  # "trained" rows
        fast = encode_text_truncated(model, embedding, tokens)
        embedding.write_back(model.token_embedding)
        full = model.encode_text(tokens, normalize=True)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


def test_pretraining_learns_on_a_toy_budget():
    from vlpeft.testbed.pretrain import pretrain

    torch.manual_seed(0)
    model = pretrain(steps=16, batch_size=32, pool_size=96, warmup=2, lr=1e-3, log_every=100)
    losses = model.pretrain_losses
    assert len(losses) == 16 and np.mean(losses[-4:]) < np.mean(losses[:4])  # the toy pool gets memorised
    assert model.logit_scale.exp().item() <= 100.0
    assert not model.training


def test_tower_depths_are_options_and_the_loader_reads_them(tmp_path):
    from vlpeft.clip import load_clip
    from vlpeft.testbed.pretrain import build_model, save_checkpoint

    shipped, same, deeper = build_model(0), build_model(0, text_layers=4), build_model(0, text_layers=6)
    for a, b in zip(shipped.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)  # the shipped architecture's depth: the very same initialisation
    assert (len(shipped.transformer.resblocks), len(deeper.transformer.resblocks)) == (4, 6)
    vision = {k: v for k, v in shipped.state_dict().items() if k.startswith("visual.")}
    assert all(torch.equal(v, deeper.state_dict()[k]) for k, v in vision.items())  # image tower untouched
    path = str(tmp_path / "t6.pt")
    save_checkpoint(deeper, path)
    loaded = load_clip("vlpeft-testbed", path)
    assert len(loaded.transformer.resblocks) == 6 and len(loaded.visual.transformer.resblocks) == 4
    tokens = __import__("vlpeft.clip", fromlist=["tokenize"]).tokenize(["a photo of a red ring."])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), deeper.half().float().encode_text(tokens),
                                   atol=1e-4, rtol=1e-4)
    both = build_model(0, text_layers=6, vision_layers=6)
    save_checkpoint(both, path)
    loaded = load_clip("vlpeft-testbed", path)
    assert len(loaded.transformer.resblocks) == len(loaded.visual.transformer.resblocks) == 6


needs_checkpoint = pytest.mark.skipif(not osp.isfile(CHECKPOINT), reason="testbed checkpoint not built")


@needs_checkpoint
def test_shipped_checkpoint_loads_and_transfers_zero_shot(small_testbed):
    from vlpeft.clip import load_clip
    from vlpeft.clip.pretrained import resolve_clip_weights

    assert resolve_clip_weights("vlpeft-testbed") == __import__("pathlib").Path(CHECKPOINT)
    assert osp.getsize(CHECKPOINT) <= 20 * 2**20
    model = load_clip("vlpeft-testbed")
    assert model.visual.conv1.weight.shape == (128, 3, 16, 16)
    results = tb.zeroshot_report(model, root=small_testbed)
    # new halves of 6-8 classes, 6 test images each here: the pretrained model transfers (docs/TESTBED.md: >= 3x
    # chance on the full test sets; this small sample asserts 2x). Not on the two datasets built to defeat zero-shot
    # naming (unknown shade words, a colour cast): there the probe criterion is tested instead.
    for name, res in results.items():
        if name not in ("TestbedShades", "TestbedColourCast"):
            assert res["new"] >= 2 * res["new_chance"], (name, res)


@needs_checkpoint
def test_default_train_py_runs_base_to_new(small_testbed, tmp_path, capsys):
    from vlpeft.demo import run_demo

    rows = run_demo(root=small_testbed, output=str(tmp_path), opts=["OPTIM.MAX_EPOCH", 2])
    assert [r[0] for r in rows] == ["ZeroshotCLIP", "CoOp"]
    for _, base, new, h, _ in rows:
        assert 0 <= float(base) <= 100 and 0 <= float(new) <= 100
    out = capsys.readouterr().out
    assert "trainer" in out and "base" in out and "H" in out
    assert osp.isfile(osp.join(str(tmp_path), "b2n", "TestbedScenes", "CoOp", "seed1", "test_new",
                               "results.json"))
    # python -m vlpeft.results reads these real runs back into the same table
    from vlpeft.results import results

    report = results(str(tmp_path), seeds=[1], compare="published")  # the demo runs seed 1 only
    for name, base, new, h, _ in rows:
        table = next(t for t in report.tables if t.protocol == "base2new" and t.trainer == name)
        cells = table.row("TestbedScenes").cells
        assert (cells["base"][0], cells["new"][0]) == pytest.approx((float(base), float(new)), abs=0.05)  # demo: 1 decimal
        assert cells["H"][0] == pytest.approx(float(h), abs=0.05) and cells["base"][2] == 1
    assert not report.missing and not report.unfinished and not report.stale


def test_accuracy_table_runs_dpc_on_top_of_its_backbone_run(tmp_path, monkeypatch):
    """Every registered trainer and variant has a testbed config; DPC variants train their backbone first (or reuse
    it) and pass its train_base folder; the evaluation runs get the same options."""
    import vlpeft.testbed.accuracy as acc

    names = acc.testbed_trainers()
    assert {"DPC", "DPC_maple", "DPC_promptsrc"} <= set(names)
    assert [acc.backbone_of(n) for n in ("DPC", "DPC_maple", "DPC_promptsrc", "CoOp")] == \
        ["CoOp", "MaPLe", "PromptSRC", None]
    assert acc.config_file("DPC_maple").endswith("DPC/testbed_maple.yaml")
    calls = []

    def fake_run_train(flags, opts, output_dir, quiet=True):
        calls.append((flags[flags.index("--trainer") + 1], output_dir, list(map(str, opts))))
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "config.yaml"), "w") as f:
            f.write("OPTIM:\n  MAX_EPOCH: 3\n")
        return {"accuracy": 50.0, "elapsed_s": 1.0, "reused": False}

    monkeypatch.setattr(acc, "run_train", fake_run_train)
    acc.base_to_new("DPC_maple", "TestbedScenes", 2, str(tmp_path))
    trainers = [c[0] for c in calls]
    assert trainers == ["MaPLe", "MaPLe", "DPC", "DPC"]  # backbone train, its new-class test, DPC train, DPC test
    backbone_dir = calls[0][1]
    assert backbone_dir == os.path.join(str(tmp_path), "b2n", "TestbedScenes", "MaPLe", "seed2", "train_base")
    for _, out, opts in calls[2:]:
        assert opts[opts.index("TRAINER.DPC.BACKBONE_DIR") + 1] == backbone_dir
        assert out.startswith(os.path.join(str(tmp_path), "b2n", "TestbedScenes", "DPC_maple", "seed2"))


def test_probe_logistic_regression_fits_separable_features():
    from vlpeft.testbed.probe import fit_logistic_regression, linear_probe, predict

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1) * 3
    y = torch.arange(5).repeat_interleave(20)
    x = centres[y] + 0.1 * torch.randn(len(y), 16, generator=g)
    params = fit_logistic_regression(x, y, 5, weight_decay=1e-4)
    assert (predict(params, x) == y).all()
    res = linear_probe((x, y), (x[::2], y[::2]), (x[1::2], y[1::2]), 5)
    assert res["accuracy"] == 100.0 and res["val_accuracy"] == 100.0


@needs_checkpoint
def test_probe_matches_train_py_zero_shot(small_testbed, tmp_path):
    import vlpeft.testbed.accuracy as acc
    from vlpeft.testbed.probe import main

    out = str(tmp_path / "probe.json")
    summary = main(["--datasets", "TestbedScenes", "--seeds", "1", "--root", small_testbed, "--json", out])
    row = json.load(open(out))["datasets"]["TestbedScenes"]
    run = row["runs"][0]
    assert row["zero_shot"] == pytest.approx(summary["TestbedScenes"]["zero_shot"])
    assert 0 <= row["zero_shot"] <= 100 and 0 <= row["probe"] <= 100
    assert row["gap"] == pytest.approx(row["probe"] - row["zero_shot"])
    assert (run["num_classes"], run["n_train"], run["n_test"]) == (6, 6 * 16, 6 * 6)
    # the same split through train.py (ZeroshotCLIP --eval-only, base half) gives the same zero-shot accuracy
    record = acc.run_train(acc._flags("ZeroshotCLIP", 1, small_testbed) + ["--eval-only"],
                           ["DATASET.NAME", "TestbedScenes", "DATASET.NUM_SHOTS", 16,
                            "DATASET.SUBSAMPLE_CLASSES", "base"], str(tmp_path / "zs"))
    assert record["accuracy"] == pytest.approx(row["zero_shot"], abs=1e-3)
    new = acc.run_train(acc._flags("ZeroshotCLIP", 1, small_testbed) + ["--eval-only"],
                        ["DATASET.NAME", "TestbedScenes", "DATASET.NUM_SHOTS", 16,
                         "DATASET.SUBSAMPLE_CLASSES", "new"], str(tmp_path / "zs_new"))
    assert new["accuracy"] == pytest.approx(row["zero_shot_new"], abs=1e-3) and run["chance_new"] == 100 / 6
    assert row["meets_transfer"] == (min(row["zero_shot"], row["zero_shot_new"]) >= 3 * 100 / 6)


def test_probe_runs_on_another_tower(small_testbed, tmp_path, capsys):
    from vlpeft.clip import load_clip
    from vlpeft.testbed.pretrain import build_model, save_checkpoint
    from vlpeft.testbed.probe import build_zeroshot_trainer, main
    from vlpeft.trainers.zsclip import zeroshot_text_features

    path = str(tmp_path / "t2.pt")
    save_checkpoint(build_model(0, text_layers=2), path)
    opts = ["MODEL.BACKBONE.PATH", path]
    trainer = build_zeroshot_trainer("TestbedScenes", 1, str(tmp_path / "zs"), small_testbed, opts=opts)
    expected = zeroshot_text_features(load_clip("vlpeft-testbed", path), trainer.dm.dataset.classnames,
                                      trainer.templates(), "cpu")
    torch.testing.assert_close(trainer.model.text_features.cpu(), expected)  # the classifier is the given tower's
    out = str(tmp_path / "probe.json")
    main(["--datasets", "TestbedScenes", "--seeds", "1", "--root", small_testbed, "--json", out, *opts])
    assert f"config overrides: MODEL.BACKBONE.PATH {path}" in capsys.readouterr().out
    record = json.load(open(out))
    assert record["opts"] == opts and record["datasets"]["TestbedScenes"]["runs"][0]["n_train"] == 6 * 16


@needs_checkpoint
def test_proxy_datasets_have_the_real_suites_profile(tmp_path_factory):
    """The proxy benchmark's datasets, generated at full size, on seed 1 (docs/TESTBED.md gives seeds 1-5): room to
    learn (the linear probe on the frozen 16-shot base features beats zero-shot by at least 15 points) and transfer
    (zero-shot at least 3x chance on the base and the new half)."""
    from vlpeft.testbed.probe import probe_one, summarise

    root = str(tmp_path_factory.mktemp("proxy_testbed"))
    assert set(tb.PROXY_DATASETS) <= set(tb.SPECS) and len(set(tb.PROXY_DATASETS.values())) >= 3
    for name in tb.PROXY_DATASETS:
        row = probe_one(name, 1, root)
        assert row["n_test"] == 6 * 50 and row["probe"] - row["zero_shot"] >= 15, row
        assert min(row["zero_shot"], row["zero_shot_new"]) >= 3 * 100 / 6, row
        summary = summarise([row])
        assert summary["meets_criterion"] and summary["meets_transfer"]


@needs_checkpoint
def test_bench_proxy_runs_ranks_and_reuses(small_testbed, tmp_path):
    from vlpeft.testbed.bench import main, proxy_trainers

    names = proxy_trainers()
    assert {"ZeroshotCLIP", "CoOp", "DPC", "DPC_maple", "DPC_promptsrc", "DPDLoRA", "DPL"} <= set(names)
    assert not {"ZeroshotCLIP2", "DPDLoRA_lorss", "DPL_cycle"} & set(names)  # no published row of their own
    argv = ["--proxy", "--trainers", "ZeroshotCLIP", "CoOp", "--datasets", "TestbedShades", "TestbedScenes",
            "--seeds", "1", "2", "--workers", "1", "--root", small_testbed, "--output", str(tmp_path),
            "OPTIM.MAX_EPOCH", "2"]
    result = main(argv)
    rows = {r["trainer"]: r for r in result["rows"]}
    assert set(rows) == {"ZeroshotCLIP", "CoOp"} and len(result["runs"]) == 8
    zs = [r for r in result["runs"] if r["trainer"] == "ZeroshotCLIP"]
    assert len({(r["dataset"], r["base"]) for r in zs}) == 2  # zero-shot: the same on both seeds of a dataset
    assert rows["ZeroshotCLIP"]["base_ci"] == pytest.approx(0.0, abs=1e-9)
    assert rows["CoOp"]["published_H"] == 71.66 and result["tau"]["methods"] == 2
    assert set(result["per_dataset_H"]["CoOp"]) == {"TestbedShades", "TestbedScenes"}
    h = result["per_dataset_H"]
    for dataset, tau in result["per_dataset_tau"].items():  # 2 methods, published ZeroshotCLIP 71.70 > CoOp 71.66
        gap = h["ZeroshotCLIP"][dataset] - h["CoOp"][dataset]
        assert (tau == (1.0 if gap > 0 else -1.0)) if gap else tau != tau  # equal H: a tie, tau undefined
    assert result["cpu_s"] > 0 and result["opts"] == ["OPTIM.MAX_EPOCH", "2"]
    report = open(osp.join(str(tmp_path), "proxy.md")).read()
    assert "Config overrides for every run: OPTIM.MAX_EPOCH 2" in report
    # two trainers are too few for the reference scale, and the report says which methods it needs
    assert "Reference scale (python -m vlpeft.testbed.reference): not computed" in report and "DPDLoRA" in report
    again = main(argv)  # finished runs are reused, never re-run; the report is the same
    assert all(r["reused"] for r in again["runs"]) and again["rows"] == result["rows"]


def test_bench_refuses_config_overrides_read_as_trainers(tmp_path, capsys):
    from vlpeft.testbed.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--proxy", "--trainers", "CoOp", "MODEL.BACKBONE.PATH", "t8.pt", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not os.listdir(tmp_path)  # nothing generated or run
    assert "MODEL.BACKBONE.PATH in --trainers looks like a config key" in capsys.readouterr().err


def test_bench_reports_a_failed_trainer_runs_the_others_and_fails(tmp_path, capsys):
    from vlpeft.testbed.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--proxy", "--trainers", "NoSuchTrainer", "ZeroshotCLIP", "--datasets", "TestbedScenes", "--seeds", "1",
              "--workers", "1", "--root", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
              "--bootstrap", "10"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED TestbedScenes seed1 NoSuchTrainer: FileNotFoundError: NoSuchTrainer has no testbed config" in out
    record = json.load(open(tmp_path / "out" / "proxy.json"))
    assert [f[:2] for f in record["failed"]] == [["TestbedScenes", 1]] and "NoSuchTrainer: " in record["failed"][0][2]
    # the trainer after the failed one still ran, and the summary counts it
    assert [r["trainer"] for r in record["rows"]] == ["ZeroshotCLIP"] and len(record["runs"]) == 1
    assert "1 base-to-new runs (0 earlier ones reused)" in out


@needs_checkpoint
def test_bench_runs_each_trainer_with_its_val_selection(small_testbed, tmp_path):
    import yaml

    from vlpeft.testbed.bench import main, selected_opts

    def write_selection(folder, means):
        os.makedirs(folder, exist_ok=True)
        points = [{"point": {"OPTIM.LR": lr}, "mean": m, "accuracies": [m]} for lr, m in means]
        with open(osp.join(folder, "selection.json"), "w") as f:
            json.dump({"points": sorted(points, key=lambda p: -p["mean"])}, f)
        return osp.join(folder, "selection.json")

    # CoOp's testbed recipe has lr 0.002: on a tie the recipe is kept (no override), else the best point
    assert selected_opts("CoOp", write_selection(str(tmp_path / "tie"), [("0.0006", 70.0), ("0.002", 70.0)])) == []
    selections = str(tmp_path / "sel")
    write_selection(osp.join(selections, "CoOp"), [("0.0006", 60.0), ("0.002", 65.0), ("0.006", 70.0)])
    argv = ["--proxy", "--trainers", "ZeroshotCLIP", "CoOp", "--datasets", "TestbedScenes", "--seeds", "1",
            "--workers", "1", "--root", small_testbed, "--output", str(tmp_path / "out"), "--bootstrap", "10",
            "--selections", selections, "OPTIM.MAX_EPOCH", "1"]
    result = main(argv)
    assert result["selections"] == {"CoOp": ["OPTIM.LR", "0.006"]}
    config = tmp_path / "out" / "b2n" / "TestbedScenes" / "CoOp" / "seed1" / "train_base" / "config.yaml"
    assert yaml.safe_load(open(config))["OPTIM"]["LR"] == 0.006
    write_selection(osp.join(selections, "CoOp"), [("0.0006", 75.0), ("0.002", 65.0)])  # another selection:
    with pytest.raises(SystemExit):  # the finished run is not reused under other settings
        main(argv)
    assert "was run with OPTIM.LR 0.006, not 0.0006" in json.load(open(tmp_path / "out" / "proxy.json"))["failed"][0][2]


def test_epoch_scale_runs_every_setting_counted_in_epochs_k_times_longer():
    from vlpeft.testbed.bench import epoch_scale_opts

    def as_dict(opts):
        return dict(zip(opts[::2], opts[1::2]))

    promptsrc = as_dict(epoch_scale_opts("PromptSRC", 4))  # testbed recipe: 10 epochs, warm-up 1, GPA N(8, 1)
    assert {k: promptsrc[k] for k in ("OPTIM.MAX_EPOCH", "OPTIM.WARMUP_EPOCH", "TRAINER.PROMPTSRC.GPA_MEAN",
                                      "TRAINER.PROMPTSRC.GPA_STD")} == {
        "OPTIM.MAX_EPOCH": "40", "OPTIM.WARMUP_EPOCH": "4", "TRAINER.PROMPTSRC.GPA_MEAN": "32",
        "TRAINER.PROMPTSRC.GPA_STD": "4"}
    dpdlora = as_dict(epoch_scale_opts("DPDLoRA", 2))  # stage 1 stops at epoch 3 of 10
    assert dpdlora["OPTIM.MAX_EPOCH"] == "20" and dpdlora["TRAINER.DPDLORA.EARLY_STOP"] == "6"
    assert "TRAINER.DPL.ALPHA_EPOCH" not in as_dict(epoch_scale_opts("DPL", 2))  # -1, "the last", stays
    assert as_dict(epoch_scale_opts("CoOp", 3))["OPTIM.MAX_EPOCH"] == "150"
    assert epoch_scale_opts("CoOp", 1) == [] and epoch_scale_opts("ZeroshotCLIP", 4) == []  # no training to scale
    with pytest.raises(ValueError, match="whole number"):
        epoch_scale_opts("CoOp", 0)


def test_bench_epoch_scale_reaches_first_stages_and_refuses_a_clashing_override(tmp_path, capsys, monkeypatch):
    from vlpeft.testbed import bench

    seen = {}

    def fake_run_all(units, trainers, output, root, opts, workers, trainer_opts):
        seen.update(trainer_opts)
        return [], []

    monkeypatch.setattr(bench, "run_all", fake_run_all)
    monkeypatch.setattr(bench, "report", lambda *a, **k: ("", {}))
    argv = ["--proxy", "--trainers", "DPC_maple", "--datasets", "TestbedScenes", "--seeds", "1",
            "--root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--epoch-scale", "2"]
    result = bench.main(argv)
    assert set(seen) == {"DPC_maple", "MaPLe"}  # the backbone DPC trains on runs as long
    assert seen["MaPLe"] == bench.epoch_scale_opts("MaPLe", 2) and "OPTIM.MAX_EPOCH" in seen["MaPLe"]
    assert result["epoch_scale"] == 2 and "Every trainer at 2x its testbed epochs" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        bench.main([str(tmp_path / "data2") if a == str(tmp_path / "data") else a for a in argv]
                   + ["OPTIM.MAX_EPOCH", "2"])
    assert exit_info.value.code == 2 and not (tmp_path / "data2").exists()  # refused before anything is generated
    assert "--epoch-scale 2 sets OPTIM.MAX_EPOCH" in capsys.readouterr().err
