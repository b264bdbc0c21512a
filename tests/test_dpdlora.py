"""DPD-LoRA (docs/decisions/dpdlora.md): parameter counts, the student starts at MaPLe, the LoRSS / mixing / gates
against a float64 reference of Eq. 4-7, merged = unmerged, L_orth and the KL, the two stages of one run (teacher
frozen in stage 2, resume in either stage, a teacher read from another run, evaluation from the student alone)."""
import copy
import importlib.util
import json
import os
import os.path as osp
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vlpeft.clip import build_clip_from_state_dict
from vlpeft.clip.random_weights import build_random_clip, tiny_openai_state_dict
from vlpeft.clip.surgery import ClipSurgery
from vlpeft.trainers.dpdlora import (BlockDelta, DPDLoRALearner, HierarchicalPrompts, LoRSSBank, PromptGate,
                                     orthogonality_loss)
from vlpeft.trainers.base import teacher_kl
from vlpeft.trainers.ivlp import PromptedCLIP
from vlpeft.trainers.maple import MultiModalPromptLearner

spec = importlib.util.spec_from_file_location("reference_clip", Path(__file__).with_name("reference_clip.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

CLASSNAMES = ["forest", "sea or lake", "Annual_Crop Land"]
TINY = dict(seed=4, embed_dim=48, vision_width=128, vision_layers=3, patch_size=16, image_size=48,
            text_width=64, text_layers=3)
MATS = {"qkv": ("q", "k", "v"), "qkvo": ("q", "k", "v", "out")}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def student(clip_model, depth=9, alpha=0.9, gate=True, mats="qkv", layers=None, learn_scales=True,
            shared_coupling=False, vision_mix="coupled"):
    prompts = HierarchicalPrompts(clip_model, CLASSNAMES, 2, depth, "a photo of a", alpha, vision_mix,
                                  shared_coupling)
    n_layers = layers or len(clip_model.transformer.resblocks)
    lorss = LoRSSBank(clip_model, 4, 3, MATS[mats], n_layers, learn_scales)
    widths = {"text": clip_model.ln_final.weight.shape[0], "vision": clip_model.visual.conv1.weight.shape[0]}
    gates = nn.ModuleDict({t: PromptGate(w) for t, w in widths.items()}) if gate else None
    return DPDLoRALearner(prompts, lorss, gates, alpha)


@pytest.fixture(scope="module")
def vit_b16():
    return build_random_clip("ViT-B/16", seed=0)


@pytest.mark.parametrize("variant, expected", [
    ({}, 4_662_490),  # MaPLe 3,555,072 + LoRSS factors 1,105,920 + 216 scales s_i + gates 1,282
    ({"learn_scales": False}, 4_662_274),  # fixed s_i: the count of the default placement without the scales
    ({"mats": "qkvo"}, 5_031_202),
    ({"mats": "qkvo", "layers": 9}, 4_662_490),  # q, k, v, out on the 9 prompted blocks: the same count
    ({"shared_coupling": True}, 1_510_618),  # DPD-LoRA-dagger: one coupling function for every block
    ({"shared_coupling": True, "learn_scales": False}, 1_510_402),
])
def test_parameter_counts_vit_b16(vit_b16, variant, expected):
    learner = student(vit_b16, **variant)
    assert n_params(learner) == expected
    assert n_params(learner.gates) == 513 + 769
    n_mats = 4 if variant.get("mats") == "qkvo" else 3
    lorss = learner.lorss.text  # [blocks, weights (q, k, v[, out]), sub-LoRAs, ...]
    assert lorss.A.shape == (variant.get("layers", 12), n_mats, 3, 4, 512) and lorss.B.shape[-2:] == (512, 4)
    assert all(torch.count_nonzero(t.B) == 0 for t in learner.lorss.towers().values())


def _tiny():
    return build_clip_from_state_dict(tiny_openai_state_dict(**TINY)).eval()


def _randomise(module, std=0.3, skip=()):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not any(name.startswith(s) for s in skip):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


@pytest.mark.parametrize("alpha", [None, 0.9])
def test_student_starts_exactly_at_maple(alpha):
    """B = 0: logits equal MaPLe's with the same prompts (with the interaction: MaPLe given the mixed prompts)."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    dpd = PromptedCLIP(student(_tiny(), depth=2, alpha=alpha), _tiny())
    learner = dpd.prompt_learner
    _randomise(learner.prompts, skip=("proj.",))
    _randomise(learner.gates)
    maple_prompts = MultiModalPromptLearner(_tiny(), CLASSNAMES, 2, 2, "a photo of a")
    maple_prompts.load_state_dict(learner.prompts.state_dict())
    if alpha is not None:  # MaPLe whose prompts are DPD-LoRA's mixed ones
        maple_prompts.text_prompt = learner.prompts.text_prompt
        maple_prompts.vision_prompts = learner.prompts.vision_prompts
    maple = PromptedCLIP(maple_prompts, _tiny())
    with torch.no_grad():
        torch.testing.assert_close(dpd(images), maple(images), atol=1e-5, rtol=1e-5)
        if alpha is not None:  # and the mixing changes the prompts: plain MaPLe differs
            plain = PromptedCLIP(MultiModalPromptLearner(_tiny(), CLASSNAMES, 2, 2, "a photo of a"), _tiny())
            plain.prompt_learner.load_state_dict(learner.prompts.state_dict())
            assert (plain(images) - maple(images)).abs().max() > 1e-3


def _lorss_weight(lorss, l, j):
    """sum_i s_i B_i A_i of block l's j-th weight in ``lorss``, term by term (Eq. 4)."""
    return sum(lorss.s[l, j, i] * lorss.B[l, j, i] @ lorss.A[l, j, i] for i in range(lorss.A.shape[2]))


@pytest.mark.parametrize("vision_mix", ["coupled", "prompt"])
def test_gates_and_mixing_against_a_float64_reference(vision_mix):
    """Both towers of a 3-block CLIP with prompts in blocks 0-1 (block 2: gate 1) against the reference forward with
    the prompts and dW_l = G(P~_l) (alpha LoRSS_l + (1 - alpha) LoRSS_{l-1}) written out from Eq. 4-7; then merged."""
    alpha, depth = 0.9, 2
    clip_model = _tiny()
    learner = student(clip_model, depth=depth, alpha=alpha, vision_mix=vision_mix)
    model = PromptedCLIP(learner, clip_model)
    _randomise(learner, std=0.2)
    with torch.no_grad():
        for t, bias in (("text", 1.0), ("vision", -0.5)):
            learner.gates[t].linear.bias.fill_(bias)
    sd = {k: v.double() for k, v in tiny_openai_state_dict(**TINY).items()}
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    p = copy.deepcopy(learner).double()  # the reference's prompts, gates and LoRSS in float64
    with torch.no_grad():
        p, learner64 = p.prompts, p
        own_text = [p.ctx] + list(p.compound_prompts_text)
        couplings = [p.proj] + list(p.compound_prompt_projections)
        own_vision = [c.weight @ t.T + c.bias[:, None] for c, t in zip(couplings, own_text)]
        own_vision = [v.T for v in own_vision]
        text = [own_text[0]] + [alpha * own_text[l] + (1 - alpha) * own_text[l - 1] for l in range(1, depth)]
        if vision_mix == "coupled":
            vision = [own_vision[0]] + [alpha * own_vision[l] + (1 - alpha) * own_vision[l - 1]
                                        for l in range(1, depth)]
        else:
            vision = [text[l] @ couplings[l].weight.T + couplings[l].bias for l in range(depth)]
        prompts = {"text": text, "vision": vision}

        def gate(tower, layer):
            if layer >= depth:
                return 1.0
            lin = learner64.gates[tower].linear
            return torch.sigmoid(lin.weight[0] @ prompts[tower][layer].mean(0) + lin.bias[0])

        def deltas(tower):
            bank = learner64.lorss.towers()[tower]
            out = {}
            for l in range(bank.A.shape[0]):
                out[l] = {}
                for j, m in enumerate("qkv"):
                    w = _lorss_weight(bank, l, j)
                    if l > 0:
                        w = alpha * w + (1 - alpha) * _lorss_weight(bank, l - 1, j)
                    out[l][m] = gate(tower, l) * w
            return out

        vision_edits = {"write": {l: (-2, vision[l]) for l in range(1, depth)}, "deltas": deltas("vision")}
        tokens = learner.tokenized_prompts
        emb = sd["token_embedding.weight"][tokens].clone()
        emb[:, 1:3] = text[0]
        text_edits = {"write": {l: (1, text[l]) for l in range(1, depth)}, "deltas": deltas("text")}
        expected = (ref.encode_image(sd, images, append=vision[0], edits=vision_edits),
                    ref.encode_text_embeddings(sd, emb, tokens, edits=text_edits))
        got = (model.image_encoder(images), model.text_encoder(learner(), tokens))
        for g, e in zip(got, expected):  # fp32 model against the float64 reference
            assert (g.double() - e).abs().max() < 1e-4 * e.abs().max()
        # the gates and LoRSS matter here (the comparison is not vacuous) ...
        assert any(abs(float(gate("text", l)) - 0.5) > 0.1 for l in range(depth))
        with model.surgery.disabled():
            assert (model.image_encoder(images).double() - expected[0]).abs().max() > 1e-2 * expected[0].abs().max()
        # ... and the merged model computes the same
        unmerged = model(images)
        model.surgery.merge()
        merged = model(images)
        model.surgery.unmerge()
    assert (merged - unmerged).abs().max() < 1e-4 * unmerged.abs().max()


def test_orthogonality_loss_is_zero_for_orthonormal_factors_only():
    bank = LoRSSBank(_tiny(), 4, 3, ("q", "k", "v", "out"), 2)
    assert orthogonality_loss(bank) > 0.5  # Kaiming A (rows of norm ~0.58), B = 0
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for lorss in bank.towers().values():
            a, b = lorss.A.view(-1, *lorss.A.shape[-2:]), lorss.B.view(-1, *lorss.B.shape[-2:])
            for i in range(a.shape[0]):
                a[i] = torch.linalg.qr(torch.randn(a.shape[2], 4, generator=g))[0].T  # orthonormal rows
                b[i] = torch.linalg.qr(torch.randn(b.shape[1], 4, generator=g))[0]  # orthonormal columns
    assert orthogonality_loss(bank) < 1e-5
    with torch.no_grad():
        bank.vision.B[1, 3, 1] *= 2.0  # block 1, out, sub-LoRA 1
    # one B_i^T B_i = 4 I: ||3 I||_F = 6, averaged over the 96 factors (2 towers x 2 blocks x 4 weights x 3 x {A, B})
    assert orthogonality_loss(bank).item() == pytest.approx(6 / 96, abs=1e-5)
    assert orthogonality_loss(bank, on="A") < 1e-5  # ORTH_ON A ignores B


def test_block_updates_mix_gate_and_are_recomputed_per_forward():
    bank = LoRSSBank(_tiny(), 4, 3, ("q", "k", "v", "out"), 3)
    _randomise(bank)
    gates = torch.tensor([0.25, 0.5, 1.0])
    bank.alpha, bank.gates = 0.7, lambda tower: gates
    x = torch.randn(5, 64)
    lorss = bank.text
    for l in range(3):
        for j in range(4):
            w = _lorss_weight(lorss, l, j)
            w = w if l == 0 else 0.7 * w + 0.3 * _lorss_weight(lorss, l - 1, j)
            torch.testing.assert_close(bank.effective("text")[l, j], gates[l] * w, rtol=1e-5, atol=1e-6)
    qkv, out = BlockDelta(bank, "text", 2, "qkv"), BlockDelta(bank, "text", 2, "out")
    torch.testing.assert_close(qkv.weight(), bank.effective("text")[2, :3].reshape(192, 64))  # as in_proj_weight
    torch.testing.assert_close(out(x), x @ bank.effective("text")[2, 3].T)
    surgery = ClipSurgery(_tiny())
    bank.attach(surgery, 0.7, lambda tower: gates)
    before = bank.effective("text")
    with torch.no_grad():
        lorss.B.mul_(2)
    assert bank.effective("text") is before  # reused within a forward ...
    surgery.merge()  # ... recomputed before merging and at each forward of the tower
    torch.testing.assert_close(bank.effective("text"), 2 * before)
    surgery.unmerge()
    with torch.no_grad():
        lorss.B.mul_(2)
        surgery.model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    torch.testing.assert_close(bank.effective("text"), 4 * before)


def test_kl_normalisations():
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    numel = teacher_kl(logits, teacher, "numel")
    batchmean = teacher_kl(logits, teacher, "batchmean")
    p_t = teacher.softmax(1)
    exact = (p_t * (p_t.log() - logits.log_softmax(1))).sum()
    assert numel == pytest.approx(float(exact) / 40, rel=1e-5) and batchmean == pytest.approx(float(exact) / 4,
                                                                                              rel=1e-5)


# ---------------------------------------------------------------- the trainer

def _opts(**extra):
    opts = {"DATASET.NAME": "EuroSAT", "DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "base",
            "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "OPTIM.MAX_EPOCH": 3, "TRAINER.DPDLORA.PREC": "fp32",
            "TRAINER.DPDLORA.PROMPT_DEPTH": 2, "TRAINER.DPDLORA.EARLY_STOP": 2, **extra}
    return opts


def _cfg(root, clip_path, out, **extra):
    from conftest import tiny_opts
    from vlpeft.config import get_cfg

    opts = {"DATASET.ROOT": root, "SEED": 1, "TRAINER.NAME": "DPDLoRA", "OUTPUT_DIR": out, **_opts(**extra)}
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(clip_path) + [x for kv in opts.items() for x in (kv[0], str(kv[1]))])
    return cfg


def _build(cfg, seed=1):
    from conftest import build_seeded

    return build_seeded(cfg, seed)


def _train_py(root, clip_path, out, *args, **extra):
    from conftest import tiny_opts
    from vlpeft.cli import main
    from vlpeft.engine.utils import close_logger

    opts = tiny_opts(clip_path, **_opts(**extra))
    main(["--root", root, "--seed", "1", "--trainer", "DPDLoRA", "--output-dir", str(out), *args] + opts)
    close_logger()
    return json.load(open(osp.join(out, "results.json")))


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_groups_and_config_checks(eurosat_root, tiny_clip_path, tmp_path):
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, str(tmp_path), **{"TRAINER.DPDLORA.LR_SCALE": 10.0}))
    optim = trainer._optims["prompt_learner"]
    groups = {g["name"]: g for g in optim.param_groups}
    assert [g["name"] for g in optim.param_groups] == ["prompt", "lora", "gate"]
    assert {k: g["initial_lr"] for k, g in groups.items()} == pytest.approx(
        {"prompt": 0.05, "lora": 0.035, "gate": 0.05})
    assert all(g["lr"] == pytest.approx(1e-5) for g in optim.param_groups)  # the constant warm-up, every group
    learner = trainer._models["prompt_learner"]
    assert {id(p) for p in groups["prompt"]["params"]} == {id(p) for p in learner.prompts.parameters()}
    assert any(p is learner.prompts.proj.weight for p in groups["prompt"]["params"])  # couplings: prompt group
    for key, value, message in (("KL_NORM", "mean", "KL_NORM"), ("EARLY_STOP", 0, "needs a stage-1 teacher"),
                                ("EARLY_STOP", 4, "cannot be larger"), ("ALPHA", 1.5, "ALPHA")):
        with pytest.raises(ValueError, match=message):
            _build(_cfg(eurosat_root, tiny_clip_path, str(tmp_path), **{f"TRAINER.DPDLORA.{key}": value}))


def test_teacher_is_frozen_in_stage_two(eurosat_root, tiny_clip_path, tmp_path):
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, str(tmp_path), **{"TRAINER.DPDLORA.EARLY_STOP": 1}))
    trainer.before_train()  # stage 1: trains and freezes the teacher
    teacher = trainer.teacher
    lorss = teacher.prompt_learner.lorss
    assert teacher.surgery.merged and not any(p.requires_grad for p in teacher.parameters())
    trained = {k: v.clone() for k, v in lorss.state_dict().items()}
    assert all(torch.count_nonzero(t.B) for t in lorss.towers().values())  # stage 1 trained the teacher's LoRSS
    student = trainer._models["prompt_learner"].lorss
    assert all(torch.count_nonzero(t.B) == 0 for t in student.towers().values())  # the student's start fresh (B = 0)
    batch = next(iter(trainer.train_loader_x))
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10
    summary = trainer.forward_backward(batch)
    assert summary["loss_kl"] > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert _equal_states(lorss.state_dict(), trained)
    assert all(torch.count_nonzero(t.B) for t in student.towers().values())  # the student moved


def test_two_stages_resume_in_either_stage_and_evaluate_from_the_student(eurosat_root, tiny_clip_path, tmp_path):
    full = tmp_path / "full"
    result = _train_py(eurosat_root, tiny_clip_path, full, **{"TRAIN.CHECKPOINT_FREQ": 1})
    assert sorted(os.listdir(full / "teacher")) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]
    assert sorted(os.listdir(full / "prompt_learner")) == ["checkpoint"] + [f"model.pth.tar-{e}" for e in (1, 2, 3)]
    log = (full / "log.txt").read_text()
    assert log.index("DPD-LoRA stage 1") < log.index("epoch [2/2]") < log.index("DPD-LoRA stage 2") \
        < log.index("epoch [3/3]")
    final = _state(full / "prompt_learner" / "model.pth.tar-3")
    teacher = _state(full / "teacher" / "model.pth.tar-2")
    assert not any(k.startswith("prompts.classes") for k in final)  # checkpoints hold trainable tensors only

    def interrupted(name, keep):
        run = tmp_path / name
        for folder, files in keep.items():
            os.makedirs(run / folder)
            for f in files:
                shutil.copy(full / folder / f, run / folder / f)
            (run / folder / "checkpoint").write_text(files[-1] + "\n")
        return run

    in_stage_1 = interrupted("stage1", {"teacher": ["model.pth.tar-1"]})
    again = _train_py(eurosat_root, tiny_clip_path, in_stage_1)
    assert "stage 1 resumes at epoch 2" in (in_stage_1 / "log.txt").read_text()
    assert _equal_states(_state(in_stage_1 / "teacher" / "model.pth.tar-2"), teacher)
    assert _equal_states(_state(in_stage_1 / "prompt_learner" / "model.pth.tar-3"), final)
    assert again["accuracy"] == result["accuracy"]

    in_stage_2 = interrupted("stage2", {"teacher": ["model.pth.tar-1", "model.pth.tar-2"],
                                        "prompt_learner": ["model.pth.tar-1"]})
    _train_py(eurosat_root, tiny_clip_path, in_stage_2)
    log = (in_stage_2 / "log.txt").read_text()
    assert "DPD-LoRA stage 1" not in log and "epoch [1/3]" not in log and "epoch [2/3]" in log
    assert _equal_states(_state(in_stage_2 / "prompt_learner" / "model.pth.tar-3"), final)

    between = interrupted("between", {"teacher": ["model.pth.tar-1", "model.pth.tar-2"]})  # stopped after stage 1
    _train_py(eurosat_root, tiny_clip_path, between)
    assert "stage 1 finished earlier" in (between / "log.txt").read_text()
    assert _equal_states(_state(between / "prompt_learner" / "model.pth.tar-3"), final)

    # a stage-2 checkpoint without its teacher is refused
    orphan = interrupted("orphan", {"prompt_learner": ["model.pth.tar-1"]})
    with pytest.raises(RuntimeError, match="no finished stage-1 teacher"):
        _train_py(eurosat_root, tiny_clip_path, orphan)

    # --eval-only needs only the student
    student_only = interrupted("student_only", {"prompt_learner": ["model.pth.tar-3"]})
    evaluated = _train_py(eurosat_root, tiny_clip_path, tmp_path / "eval", "--eval-only", "--model-dir",
                          str(student_only), "--load-epoch", "3")
    assert evaluated["accuracy"] == result["accuracy"]
    assert not (tmp_path / "eval" / "teacher").exists()


def test_teacher_read_from_another_run(eurosat_root, tiny_clip_path, tmp_path):
    first = tmp_path / "first"
    _train_py(eurosat_root, tiny_clip_path, first, **{"OPTIM.MAX_EPOCH": 2, "TRAINER.DPDLORA.EARLY_STOP": 1})
    sweep = tmp_path / "sweep"
    cfg = _cfg(eurosat_root, tiny_clip_path, str(sweep), **{
        "OPTIM.MAX_EPOCH": 2, "TRAINER.DPDLORA.EARLY_STOP": 1, "TRAINER.DPDLORA.TEACHER_DIR": str(first),
        "TRAINER.DPDLORA.KL_WEIGHT": 1.0})
    trainer = _build(cfg)
    trainer.before_train()
    read = trainer.teacher.prompt_learner.lorss
    saved = _state(first / "teacher" / "model.pth.tar-1")
    assert all(torch.equal(v.cpu(), saved[k]) for k, v in read.state_dict().items())
    assert not (sweep / "teacher").exists()  # nothing trained, nothing written
    other_seed = _cfg(eurosat_root, tiny_clip_path, str(tmp_path / "x"), **{
        "OPTIM.MAX_EPOCH": 2, "TRAINER.DPDLORA.EARLY_STOP": 1, "TRAINER.DPDLORA.TEACHER_DIR": str(first)})
    other_seed.SEED = 2
    with pytest.raises(ValueError, match="seed"):
        _build(other_seed).before_train()
    other_text_weight = _cfg(eurosat_root, tiny_clip_path, str(tmp_path / "z"), **{
        "OPTIM.MAX_EPOCH": 2, "TRAINER.DPDLORA.EARLY_STOP": 1, "TRAINER.DPDLORA.TEACHER_DIR": str(first),
        "TRAINER.DPDLORA.TEXT_LOSS_WEIGHT": 1.0})  # L_text acts in stage 1 too: another teacher
    with pytest.raises(ValueError, match="stage1"):
        _build(other_text_weight).before_train()
    missing = _cfg(eurosat_root, tiny_clip_path, str(tmp_path / "y"), **{
        "OPTIM.MAX_EPOCH": 3, "TRAINER.DPDLORA.EARLY_STOP": 2, "TRAINER.DPDLORA.TEACHER_DIR": str(first)})
    with pytest.raises(FileNotFoundError, match="teacher epochs saved there: \\[1\\]"):
        _build(missing).before_train()


def test_without_kl_no_teacher_is_trained(eurosat_root, tiny_clip_path, tmp_path):
    out = tmp_path / "xd"
    _train_py(eurosat_root, tiny_clip_path, out, **{"TRAINER.DPDLORA.KL_WEIGHT": 0.0, "TRAINER.DPDLORA.EARLY_STOP": 0,
                                                    "TRAINER.DPDLORA.GATE": False})
    assert not (out / "teacher").exists()
    log = (out / "log.txt").read_text()
    assert "no stage-1 teacher" in log and "loss_kl" not in log and "loss_orth" in log


def test_a_whole_number_for_a_float_key_is_read_as_a_float():
    """``TRAINER.DPDLORA.LR_SCALE 10`` (Table 4a's rates) works as typed; an int key still refuses a float."""
    from vlpeft.cli import build_parser, setup_cfg

    cfg = setup_cfg(build_parser().parse_args(["--trainer", "DPDLoRA", "TRAINER.DPDLORA.LR_SCALE", "10",
                                               "TRAINER.DPDLORA.KL_WEIGHT", "0", "TRAINER.DPDLORA.EARLY_STOP", "3"]))
    c = cfg.TRAINER.DPDLORA
    assert (c.LR_SCALE, c.KL_WEIGHT, c.EARLY_STOP) == (10.0, 0.0, 3) and isinstance(c.LR_SCALE, float)
    with pytest.raises(ValueError, match="Invalid config"):
        setup_cfg(build_parser().parse_args(["--trainer", "DPDLoRA", "TRAINER.DPDLORA.EARLY_STOP", "2.5"]))


def test_student_init_teacher_starts_from_the_teachers_lorss(eurosat_root, tiny_clip_path, tmp_path, capsys):
    trainer = _build(_cfg(eurosat_root, tiny_clip_path, str(tmp_path), **{
        "OPTIM.MAX_EPOCH": 2, "TRAINER.DPDLORA.EARLY_STOP": 1, "TRAINER.DPDLORA.STUDENT_INIT": "teacher"}))
    trainer.before_train()
    teacher = trainer.teacher.prompt_learner.lorss.state_dict()
    student = trainer._models["prompt_learner"].lorss.state_dict()
    assert _equal_states(student, teacher) and torch.count_nonzero(student["text.B"]) > 0
    assert "the student's LoRSS start from the teacher's" in capsys.readouterr().out
