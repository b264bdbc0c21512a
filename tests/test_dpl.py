"""DPL (docs/decisions/dpl.md): parameter counts with ViT-B/16 shapes, the supernet against the subnet and plain CLIP
on the surgery layer, the found lengths (alpha -> lengths -> JSON), and the two trainers: search then train, α
checkpoint and resume, the bilevel step, ImageNet's held-out search images, the official α files."""
import pytest
import torch

from vlpeft.clip import TextEncoder, build_clip_from_state_dict, tokenize
from vlpeft.clip.random_weights import build_random_clip, tiny_openai_state_dict
from vlpeft.clip.surgery import ClipSurgery
from vlpeft.trainers.dpl import (
    CODE_OPTIONS, PAPER_OPTIONS, TOWERS, ArchitectureWeights, SubnetPrompts, SupernetPrompts, lengths_from_alpha,
    load_lengths, read_alpha, save_lengths, tower_shapes,
)

TINY = dict(seed=2, embed_dim=48, vision_width=128, vision_layers=3, patch_size=16, image_size=48, text_width=64,
            text_layers=3)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def vit_b16():
    return build_random_clip("ViT-B/16", seed=0)


@pytest.mark.parametrize("options, expected", [(PAPER_OPTIONS, 184_320), (CODE_OPTIONS, 322_560)])
def test_supernet_parameter_counts_vit_b16(vit_b16, options, expected):
    assert n_params(SupernetPrompts(vit_b16, options)) == expected  # 12 blocks x sum(options) x (512 + 768)
    weights = ArchitectureWeights({t: b for t, (b, _) in tower_shapes(vit_b16).items()}, options)
    assert n_params(weights) == 2 * 12 * len(options)


def test_subnet_parameter_count_is_the_sum_of_lengths_times_width(vit_b16):
    lengths = {"text": [0, 2, 4, 6] * 3, "vision": [6, 6, 0, 0, 2, 2, 4, 4, 0, 2, 4, 6]}
    expected = sum(lengths["text"]) * 512 + sum(lengths["vision"]) * 768
    assert n_params(SubnetPrompts(vit_b16, lengths)) == expected == 36 * 512 + 36 * 768


def _features(model):
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    tokens = tokenize(["a photo of a cat.", "a photo of a tench, a type of fish."])
    with torch.no_grad():
        return model.encode_image(images), TextEncoder(model)(model.token_embedding(tokens), tokens)


def test_zero_lengths_and_one_hot_alpha_match_plain_clip_and_the_subnet():
    sd = tiny_openai_state_dict(**TINY)
    plain = _features(build_clip_from_state_dict(sd).eval())
    # all-zero lengths: plain CLIP, exactly
    zero = build_clip_from_state_dict(sd).eval()
    SubnetPrompts(zero, {"text": [0, 0, 0], "vision": [0, 0, 0]}).attach(ClipSurgery(zero))
    assert all(torch.equal(a, b) for a, b in zip(_features(zero), plain))

    # a supernet whose alpha is one-hot on option c in every block equals the subnet of those lengths
    supernet_clip = build_clip_from_state_dict(sd).eval()
    supernet = SupernetPrompts(supernet_clip, PAPER_OPTIONS)
    weights = ArchitectureWeights({"text": 3, "vision": 3}, PAPER_OPTIONS)
    chosen = {"text": [2, 0, 6], "vision": [4, 6, 0]}
    with torch.no_grad():
        for tower, picks in chosen.items():
            for layer, c in enumerate(picks):
                weights.alpha[tower][layer].fill_(-30.0)
                weights.alpha[tower][layer][PAPER_OPTIONS.index(c)] = 30.0
    supernet.attach(ClipSurgery(supernet_clip), weights)
    assert weights.lengths() == chosen
    subnet_clip = build_clip_from_state_dict(sd).eval()
    subnet = SubnetPrompts(subnet_clip, chosen)
    with torch.no_grad():
        for tower, picks in chosen.items():
            index = 0
            for layer, c in enumerate(picks):
                if c:
                    subnet.prompts[tower][index].copy_(supernet.prompts[tower][layer][PAPER_OPTIONS.index(c) - 1])
                    index += 1
    subnet.attach(ClipSurgery(subnet_clip))
    for got, want, base in zip(_features(supernet_clip), _features(subnet_clip), plain):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert (got - base).abs().max() > 1e-3


def test_lengths_follow_the_option_list_and_round_trip(tmp_path):
    alpha = {"text": torch.tensor([[0.1, 0.9, 0.0, 0.0], [0.5, 0.5, 0.1, 0.0]]),  # tie: the first (0)
             "vision": torch.tensor([[0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 3.0, 0.0]])}
    lengths = lengths_from_alpha(alpha, PAPER_OPTIONS)
    assert lengths == {"text": [2, 0], "vision": [6, 4]}  # the index maps through the options, not to a count
    with pytest.raises(ValueError, match="expected \\[blocks, 7\\]"):
        lengths_from_alpha(alpha, CODE_OPTIONS)
    path = tmp_path / "lengths.json"
    record = save_lengths(str(path), lengths, PAPER_OPTIONS, epoch=60, source="alpha_e60")
    assert load_lengths(str(path)) == lengths and record["options"] == [0, 2, 4, 6]
    with pytest.raises(FileNotFoundError, match="no DPL lengths file"):
        load_lengths(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="distinct"):
        ArchitectureWeights({"text": 1, "vision": 1}, (0, 2, 2))


# ---------------------------------------------------------------- the trainers

def _cfg(root, clip_path, trainer, dataset="EuroSAT", out="", **extra):
    from conftest import tiny_opts
    from vlpeft.config import get_cfg

    opts = {"DATASET.NAME": dataset, "DATASET.ROOT": root, "DATASET.NUM_SHOTS": 2, "SEED": 1,
            "TRAINER.NAME": trainer, "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "TRAINER.DPL.VAL_BATCH_SIZE": 4,
            "OUTPUT_DIR": out, **extra}
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(clip_path) + [x for kv in opts.items() for x in (kv[0], str(kv[1]))])
    return cfg


def _build(cfg, seed=1):
    from conftest import build_seeded

    return build_seeded(cfg, seed)


def test_search_then_train_through_train_py(tmp_path, eurosat_root, tiny_clip_path):
    import json

    from conftest import tiny_opts
    from vlpeft.cli import main
    from vlpeft.engine.utils import close_logger

    common = ["--root", eurosat_root, "--seed", "1"]
    opts = tiny_opts(tiny_clip_path, **{"DATASET.NAME": "EuroSAT", "DATASET.NUM_SHOTS": 2,
                                        "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "TRAINER.DPL.VAL_BATCH_SIZE": 4})
    search = tmp_path / "search"
    main(common + ["--trainer", "DPLSearch", "--output-dir", str(search)] + opts)
    close_logger()
    assert sorted((search / "alpha").glob("epoch_*.json")) == [search / "alpha" / f"epoch_{e}.json" for e in (0, 1, 2)]
    record = json.loads((search / "lengths.json").read_text())
    alpha, options, epoch = read_alpha(str(search / "alpha"))
    assert epoch == 2 and record["options"] == [0, 2, 4, 6] and record["epoch"] == 2
    assert {t: record[t] for t in ("text", "vision")} == lengths_from_alpha(alpha, options)
    # α is a checkpointed model with its Adam state; a new trainer resumes it exactly
    saved = torch.load(search / "alpha" / "model.pth.tar-2", weights_only=False)
    assert saved["optimizer"]["state"] and set(saved["state_dict"]) == {"alpha.text", "alpha.vision"}
    assert not torch.equal(saved["state_dict"]["alpha.text"], json_alpha(search, 0)["text"])  # α was trained
    again = _build(_cfg(eurosat_root, tiny_clip_path, "DPLSearch", out=str(search)))
    again.resume_model_if_exist(str(search))
    assert all(torch.equal(again.alpha.alpha[t].detach().cpu(), saved["state_dict"][f"alpha.{t}"]) for t in TOWERS)

    train = tmp_path / "train"
    main(common + ["--trainer", "DPL", "--output-dir", str(train), "TRAINER.DPL.SEARCH_DIR", str(search)] + opts)
    close_logger()
    ckpt = torch.load(train / "prompt_learner" / "model.pth.tar-2", weights_only=False)
    expected = sum(record["text"]) * 64 + sum(record["vision"]) * 64
    assert sum(v.numel() for v in ckpt["state_dict"].values()) == expected
    assert json.loads((train / "results.json").read_text())["trainer"] == "DPL"


def json_alpha(run, epoch):
    alpha, _, _ = read_alpha(str(run / "alpha"), epoch)
    return alpha


def test_bilevel_step_moves_alpha_on_val_and_prompts_on_train(tmp_path, eurosat_root, tiny_clip_path):
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, "DPLSearch", out=str(tmp_path),
                          **{"OPTIM.WARMUP_EPOCH": 0, "OPTIM.LR": 0.1}))
    alpha = {t: a.detach().clone() for t, a in trainer.alpha.alpha.items()}
    prompts = [p.detach().clone() for p in trainer._models["prompt_learner"].parameters()]
    first, second = next(trainer.val_batches), next(trainer.val_batches)
    assert torch.equal(first["img"], second["img"])  # fixed_first: the first val batch at every step
    trainer.batch_idx, trainer.num_batches = 0, 10
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert {"loss", "loss_val", "acc"} <= set(summary)
    assert all(not torch.equal(trainer.alpha.alpha[t].detach(), alpha[t]) for t in TOWERS)
    assert any(not torch.equal(p.detach(), q) for p, q in zip(trainer._models["prompt_learner"].parameters(), prompts))
    assert trainer._optims["alpha"].state_dict()["state"][0]["step"] == 1  # one Adam step for α
    cycling = _build(_cfg(eurosat_root, tiny_clip_path, "DPLSearch", out=str(tmp_path),
                          **{"TRAINER.DPL.VAL_SAMPLER": "cycle"}))
    seen = {tuple(next(cycling.val_batches)["index"].tolist()) for _ in range(6)}
    assert len(seen) > 1


def test_imagenet_search_holds_out_training_images(tmp_path, tiny_clip_path):
    from vlpeft.datasets.synthetic import make_layout

    make_layout("ImageNet", tmp_path, num_classes=4, per_class=(8, 0, 3), image_size=32, seed=0)
    trainer = _build(_cfg(str(tmp_path), tiny_clip_path, "DPLSearch", dataset="ImageNet", out=str(tmp_path / "o")))
    held = trainer.search_val_items()
    dataset = trainer.dm.dataset
    held_paths = {d.impath for d in held}
    assert len(held) == 4 * 2  # min(K, 4) = 2 per class
    assert not held_paths & {d.impath for d in dataset.test}  # never a test image (ImageNet's val is its test set)
    assert not held_paths & {d.impath for d in dataset.train_x}  # nor a few-shot training image


def test_dpl_reads_explicit_lengths_and_the_official_alpha_files(tmp_path, eurosat_root, tiny_clip_path):
    import numpy as np

    explicit = _build(_cfg(eurosat_root, tiny_clip_path, "DPL", **{"TRAINER.DPL.LENGTHS_TEXT": "[3]",
                                                                   "TRAINER.DPL.LENGTHS_VISION": "[0, 5]"}))
    assert explicit._models["prompt_learner"].prompts.lengths == {"text": [3, 3], "vision": [0, 5]}
    official = tmp_path / "official"
    official.mkdir()
    text, image = np.zeros((2, 7), np.float32), np.zeros((2, 7), np.float32)
    text[0, 6], text[1, 1], image[0, 0], image[1, 4] = 1, 1, 1, 1
    np.save(official / "alpha_e80_img.npy", text)  # the official names are swapped
    np.save(official / "alpha_e80_txt.npy", image)
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, "DPL", **{"TRAINER.DPL.SEARCH_DIR": str(official)}))
    assert trainer._models["prompt_learner"].prompts.lengths == {"text": [6, 1], "vision": [0, 4]}
    with pytest.raises(ValueError, match="SEARCH_DIR"):
        _build(_cfg(eurosat_root, tiny_clip_path, "DPL"))


def test_text_inputs_follow_the_official_training_stage():
    from vlpeft.trainers.dpl import text_templates

    ensemble = text_templates("ensemble", "DescribableTextures")
    assert len(ensemble) == len(set(ensemble)) == 60 and ensemble[-1] == "itap of the {}."  # the EOT position used
    assert text_templates("custom", "DescribableTextures") == ["a texture of {}."]
    assert text_templates("custom", "EuroSAT") == ["a centered satellite photo of {}."]
    assert text_templates("default", "EuroSAT") == ["a photo of a {}."]


def test_plain_and_prompted_text_features_are_cached_apart(eurosat_root, tiny_clip_path):
    """The text-feature cache keys on the surgery being enabled: DPL+KD's teacher (prompts off) and the student
    (prompts on) never read each other's features."""
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, "DPL", **{"TRAINER.DPL.LENGTHS_TEXT": "[4]",
                                                                  "TRAINER.DPL.LENGTHS_VISION": "[4]"}))
    model = trainer.model
    with torch.no_grad():
        with model.surgery.disabled():
            plain = model.text_features().clone()
        prompted = model.text_features().clone()
        with model.surgery.disabled():
            again = model.text_features()
    assert (plain - prompted).abs().max() > 1e-3 and torch.equal(again, plain)
