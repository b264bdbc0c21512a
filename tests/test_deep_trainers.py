"""The deep baselines on the surgery layer: parameter counts with ViT-B/16 shapes and logits equal to the float64
reference (tests/reference_clip.py) given the same prompt tensors."""
import pytest
import torch

import reference_clip as ref
from conftest import cfg_with
from vlpeft.clip import load_clip, load_state_dict_any, tokenize
from vlpeft.clip.random_weights import build_random_clip
from vlpeft.config import get_cfg

CLASSNAMES = ["Annual_Crop Land", "Forest", "sea or lake"]


@pytest.fixture(scope="module")
def vit_b16():
    return build_random_clip("ViT-B/16", seed=0)


@pytest.fixture()
def tiny(tiny_clip_path):
    """A fresh tiny CLIP per test (the surgery layer attaches hooks to it) and its float64 state dict."""
    return load_clip("tiny", tiny_clip_path), {k: v.double() if v.is_floating_point() else v
                                               for k, v in load_state_dict_any(tiny_clip_path).items()}


def n_trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def ivlp_learner(clip_model, n_text, n_vision, depth_text, depth_vision, ctx_init="a photo of a"):
    from vlpeft.trainers.ivlp import VLPromptLearner

    return VLPromptLearner(clip_model, CLASSNAMES, n_text, n_vision, depth_text, depth_vision, ctx_init)


@pytest.mark.parametrize("n_ctx, depth, expected", [(4, 9, 46_080), (2, 12, 30_720)])
def test_ivlp_parameter_counts_vit_b16(vit_b16, n_ctx, depth, expected):
    learner = ivlp_learner(vit_b16, n_ctx, n_ctx, depth, depth)
    assert n_trainable(learner) == expected
    # checkpoints hold the prompts only (class-dependent buffers are not persistent)
    assert all(k == "ctx" or k == "vision_ctx" or k.startswith(("text_deep.", "vision_deep."))
               for k in learner.state_dict())
    assert len(learner.state_dict()) == 1 + 2 * (depth - 1) + 1


def _normalise(x):
    return x / x.norm(dim=-1, keepdim=True)


def _randomised_logits(learner, clip_model, std):
    """(model, images, logits) of ``learner`` attached to ``clip_model`` with every tensor drawn N(0, std^2)."""
    from vlpeft.trainers.ivlp import PromptedCLIP

    with torch.no_grad():
        for p in learner.parameters():
            p.normal_(std=std)
        model = PromptedCLIP(learner, clip_model).eval()
        images = torch.randn(3, 3, 32, 32)
        return model, images, model(images)


def _reference_logits(sd, images, text_emb, tokens, vision_append, vision_edits, text_edits):
    img = ref.encode_image(sd, images.double(), append=vision_append, edits=vision_edits)
    txt = ref.encode_text_embeddings(sd, text_emb, tokens, edits=text_edits)
    return sd["logit_scale"].exp() * _normalise(img) @ _normalise(txt).t()


@pytest.mark.parametrize("n_text, n_vision, depth_text, depth_vision, ctx_init", [
    (4, 4, 2, 2, "a photo of a"),
    (2, 3, 2, 1, "a photo of a"),  # MaPLe's quirk: "of a" stays as fixed words; vision prompts at the input only
    (5, 2, 1, 0, ""),  # random context with "X" placeholders, no vision prompts
])
def test_ivlp_logits_equal_reference(tiny, n_text, n_vision, depth_text, depth_vision, ctx_init):
    from vlpeft.trainers.ivlp import PromptedCLIP

    clip_model, sd = tiny
    torch.manual_seed(0)
    learner = ivlp_learner(clip_model, n_text, n_vision, depth_text, depth_vision, ctx_init)
    model, images, logits = _randomised_logits(learner, clip_model, std=0.5)

    words = ctx_init if ctx_init else " ".join(["X"] * n_text)
    tokens = tokenize([f"{words} {c.replace('_', ' ')}." for c in CLASSNAMES])
    emb = sd["token_embedding.weight"][tokens].clone()
    emb[:, 1:1 + n_text] = learner.ctx.detach().double()
    text_edits = {"write": {l: (1, p.detach()) for l, p in enumerate(learner.text_deep, 1)}}
    vision_edits = {"write": {l: (-n_vision, p.detach()) for l, p in enumerate(learner.vision_deep, 1)}}
    append = learner.vision_ctx.detach() if learner.vision_ctx is not None else None
    expected = _reference_logits(sd, images, emb, tokens, append, vision_edits, text_edits)
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=1e-5)
    # the frozen model without prompts is still reachable (a zero-shot teacher)
    with torch.no_grad(), model.surgery.disabled():
        plain = model.image_features(images)
    torch.testing.assert_close(plain.double(), _normalise(ref.encode_image(sd, images.double())), atol=1e-5,
                               rtol=1e-5)


def maple_learner(clip_model, n_ctx=2, depth=9, ctx_init="a photo of a"):
    from vlpeft.trainers.maple import MultiModalPromptLearner

    return MultiModalPromptLearner(clip_model, CLASSNAMES, n_ctx, depth, ctx_init)


def test_maple_parameter_count_and_init_vit_b16(vit_b16):
    learner = maple_learner(vit_b16)
    assert n_trainable(learner) == 3_555_072
    couplings = learner.compound_prompt_projections
    assert len(couplings) == 8 and couplings[0].weight.shape == (768, 512)
    # the official deep couplings are copies of one initialised layer; F_0 is initialised on its own
    assert all(torch.equal(c.weight, couplings[0].weight) for c in couplings)
    assert not torch.equal(learner.proj.weight, couplings[0].weight)


@pytest.mark.parametrize("n_ctx, depth", [(2, 2), (3, 1)])
def test_maple_logits_equal_reference(tiny, n_ctx, depth):
    from vlpeft.trainers.ivlp import PromptedCLIP

    clip_model, sd = tiny
    torch.manual_seed(0)
    learner = maple_learner(clip_model, n_ctx, depth)
    model, images, logits = _randomised_logits(learner, clip_model, std=0.3)
    with torch.no_grad():
        tokens = tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
        emb = sd["token_embedding.weight"][tokens].clone()
        emb[:, 1:1 + n_ctx] = learner.ctx.double()
        text_edits = {"write": {l: (1, p) for l, p in enumerate(learner.compound_prompts_text, 1)}}
        vision_edits = {"write": {l: (-n_ctx, f(p)) for l, (f, p) in enumerate(
            zip(learner.compound_prompt_projections, learner.compound_prompts_text), 1)}}
        append = learner.ctx @ learner.proj.weight.t() + learner.proj.bias
        expected = _reference_logits(sd, images, emb, tokens, append, vision_edits, text_edits)
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------- PromptSRC

def test_gpa_weights():
    from vlpeft.trainers.promptsrc import gpa_weights

    w = gpa_weights(20, 15, 1)
    assert sum(w) == pytest.approx(1.0) and max(range(20), key=w.__getitem__) == 14  # epoch 15
    assert w[13] == pytest.approx(w[15]) and w[0] < 1e-40
    assert gpa_weights(3, 2, 1e6) == pytest.approx([1 / 3] * 3)


def test_promptsrc_teacher_is_plain_clip_with_60_templates(tiny):
    from vlpeft.trainers.promptsrc import ZeroShotTeacher
    from vlpeft.trainers.ivlp import PromptedCLIP
    from vlpeft.trainers.templates import IMAGENET_TEMPLATES

    clip_model, sd = tiny
    learner = ivlp_learner(clip_model, 4, 4, 2, 2)
    with torch.no_grad():
        for p in learner.parameters():
            p.normal_(std=0.5)
    model = PromptedCLIP(learner, clip_model).eval()
    teacher = ZeroShotTeacher(model, CLASSNAMES)
    assert len(IMAGENET_TEMPLATES) == 60 and len(set(IMAGENET_TEMPLATES)) == 60
    names = [c.replace("_", " ") for c in CLASSNAMES]
    mean = sum(ref.encode_text(sd, tokenize([t.format(n) for n in names])) for t in IMAGENET_TEMPLATES) / 60
    torch.testing.assert_close(teacher.text_features().double(), _normalise(mean), atol=1e-5, rtol=1e-5)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher.image_features(images).double(),
                               _normalise(ref.encode_image(sd, images.double())), atol=1e-5, rtol=1e-5)
    # ... while the prompted model differs from it
    assert (model.image_features(images) - teacher.image_features(images)).abs().max() > 1e-3


def test_promptsrc_losses_match_their_definition():
    from vlpeft.trainers.promptsrc import self_regulating_losses

    g = torch.Generator().manual_seed(0)
    logits, teacher_logits = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    txt, t_txt, img, t_img = (torch.randn(3 if i < 2 else 4, 8, generator=g) for i in range(4))
    l_text, l_image, l_kl = self_regulating_losses(logits, txt, img, teacher_logits, t_txt, t_img, 25, 10)
    assert l_text.item() == pytest.approx(25 * (txt - t_txt).abs().mean().item(), rel=1e-6)
    assert l_image.item() == pytest.approx(10 * (img - t_img).abs().mean().item(), rel=1e-6)
    p_zs, log_p = teacher_logits.softmax(1), logits.log_softmax(1)
    kl = (p_zs * (p_zs.log() - log_p)).sum() / logits.numel()
    assert l_kl.item() == pytest.approx(kl.item(), rel=1e-5) and l_kl.item() > 0


def test_promptsrc_checkpoint_is_the_gaussian_aggregate(eurosat_root, tiny_clip_path, tmp_path, monkeypatch):
    from conftest import tiny_opts
    from vlpeft.cli import main
    from vlpeft.trainers.promptsrc import PromptSRC, gpa_weights

    states = []
    original = PromptSRC.aggregate_prompts

    def record(self):
        states.append({k: v.detach().clone().double() for k, v in self._models["prompt_learner"].state_dict().items()})
        original(self)

    monkeypatch.setattr(PromptSRC, "aggregate_prompts", record)
    out = tmp_path / "psrc"
    main([str(a) for a in ["--root", eurosat_root, "--seed", 1, "--trainer", "PromptSRC", "--output-dir", out,
                           "--dataset-config-file", "configs/datasets/eurosat.yaml",
                           *tiny_opts(tiny_clip_path, **{"OPTIM.MAX_EPOCH": 3, "OPTIM.LR": 0.05}),
                           "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2,
                           "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTSRC.GPA_MEAN", 2,
                           "TRAINER.PROMPTSRC.GPA_STD", 1]])
    assert len(states) == 3
    w = gpa_weights(3, 2, 1)
    saved = torch.load(out / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]
    for key, value in saved.items():
        expected = sum(wt * s[key] for wt, s in zip(w, states))
        torch.testing.assert_close(value.double(), expected, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(value.double(), states[-1][key])  # the aggregate, not the last epoch
    log = (out / "log.txt").read_text()
    assert "Using GPA model for final inference..." in log and "loss_kl" in log


CONFIG_FILES = sorted(str(p) for p in __import__("pathlib").Path(__file__).parents[1].glob("configs/trainers/*/*.yaml"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: "/".join(p.split("/")[-2:]))
def test_every_trainer_config_merges(path):
    import vlpeft.trainers  # noqa: F401  (registers the trainers and their config nodes)
    from vlpeft.engine import TRAINER_REGISTRY

    cfg = get_cfg()
    cfg.merge_from_file(path)  # unknown keys or wrong types raise
    assert path.split("/")[-2] in TRAINER_REGISTRY.registered_names()


# ---------------------------------------------------------------- KgCoOp and ProGrad

def test_kgcoop_and_prograd_parameter_counts_vit_b16(vit_b16):
    from vlpeft.trainers.coop import PromptLearner
    from vlpeft.trainers.prograd import template_context

    kgcoop = PromptLearner(cfg_with(**{"TRAINER.COOP.CTX_INIT": "a photo of a"}), CLASSNAMES, vit_b16)
    assert n_trainable(kgcoop) == 2_048
    init = template_context(vit_b16, "a type of pet, a photo of a {}.", 16)
    prograd = PromptLearner(cfg_with(**{"TRAINER.COOP.N_CTX": 16}), CLASSNAMES, vit_b16, init)
    assert n_trainable(prograd) == 8_192
    # the template prefix fills the last 8 slots (8 words, as the official code counts, although the prefix has 9
    # BPE tokens with the comma), zeros before it
    ctx, prefix = init
    assert prefix == " ".join(["X"] * 8) + " a type of pet, a photo of a"
    assert torch.all(ctx[:8] == 0)
    words = vit_b16.token_embedding(tokenize("a type of pet, a photo of a"))[0, 1:9]
    torch.testing.assert_close(ctx[8:], words.float())


def test_kgcoop_knowledge_guidance():
    from vlpeft.trainers.kgcoop import knowledge_guidance

    a = _normalise(torch.randn(5, 8))
    assert knowledge_guidance(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert knowledge_guidance(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    b = _normalise(torch.randn(5, 8))
    assert knowledge_guidance(a, b).item() == pytest.approx(1 - (a * b).sum(-1).mean().item(), abs=1e-6)


class _ToyTrainer:
    """The pieces of a trainer that ProGrad.prograd_update uses, around one parameter and plain SGD."""

    def __init__(self):
        self.p = torch.nn.Parameter(torch.zeros(3))
        self.module = torch.nn.Module()
        self.module.p = self.p
        self.optim = torch.optim.SGD([self.p], lr=1.0)
        self._models = {"prompt_learner": self.module}

    def get_model_names(self, names=None):
        return ["prompt_learner"]

    def model_zero_grad(self, names=None):
        self.optim.zero_grad()

    def model_update(self, names=None):
        self.optim.step()

    def detect_anomaly(self, loss):
        assert torch.isfinite(loss).all()


@pytest.mark.parametrize("kd_direction, conflicting", [([-1.0, 1.0, 0.0], True), ([1.0, 1.0, 0.0], False)])
def test_prograd_projects_the_update_exactly_when_gradients_conflict(kd_direction, conflicting):
    from vlpeft.trainers.prograd import ProGrad

    g_ce, g_kd = torch.tensor([1.0, 0.0, 2.0]), torch.tensor(kd_direction)
    toy = _ToyTrainer()
    ProGrad.prograd_update(toy, (toy.p * g_ce).sum(), (toy.p * g_kd).sum(), 1.0)
    update = -toy.p.detach()  # SGD with lr 1 from zero: the parameter is minus the applied gradient
    g_hat = g_kd / g_kd.norm()
    expected = g_ce - torch.dot(g_ce, g_hat) * g_hat if conflicting else g_ce
    torch.testing.assert_close(update, expected)
    assert (torch.dot(update, g_kd) >= -1e-6) if conflicting else torch.equal(update, g_ce)
    if conflicting:  # the projected update no longer increases the distillation loss
        assert not torch.equal(update, g_ce)


def test_protocol_scripts_follow_the_output_scheme_and_skip_finished_jobs(tmp_path):
    import subprocess
    from pathlib import Path

    repo = Path(__file__).parents[1]
    out = tmp_path / "out"  # OUTPUT: the scripts write (and look for finished jobs) only below it, never in output/
    env = dict(__import__("os").environ, DRY_RUN="1", DATASETS="eurosat", SEEDS="1", DATA=str(tmp_path / "data"),
               OUTPUT=str(out))

    def run(script, protocol, **extra_env):
        proc = subprocess.run(["bash", str(repo / f"scripts/{script}/run.sh"), protocol], cwd=tmp_path,
                              env=dict(env, **extra_env), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if " train.py " in line]

    train, test = run("promptsrc", "base2new")
    b2n = "eurosat/shots_16/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed1"
    assert f"--output-dir {out}/base2new/train_base/{b2n} " in train
    assert "DATASET.SUBSAMPLE_CLASSES base" in train and "--load-epoch 20 --eval-only" in test
    assert f"--output-dir {out}/base2new/test_new/eurosat/shots_16/PromptSRC/" in test
    assert f"--model-dir {out}/base2new/train_base/eurosat/shots_16/PromptSRC/" in test
    assert "DATASET.SUBSAMPLE_CLASSES new" in test
    assert "--load-epoch 5 " in run("maple", "base2new")[1]
    dg = run("maple", "dg")
    assert len(dg) == 5 and f"{out}/imagenet/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/seed1 " in dg[0]
    assert f"{out}/evaluation/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/imagenetv2/seed1 " in dg[1]
    assert "--load-epoch 2 " in dg[1] and "configs/datasets/imagenet_sketch.yaml" in " ".join(dg)
    shots = [line.split("DATASET.NUM_SHOTS ")[1] + " " + line.split("configs/trainers/ProGrad/")[1].split()[0]
             for line in run("prograd", "fewshot")]
    assert shots == ["1 vit_b16_ep50.yaml", "2 vit_b16_ep100.yaml", "4 vit_b16_ep100.yaml", "8 vit_b16_ep200.yaml",
                     "16 vit_b16_ep200.yaml"]
    assert f"--output-dir {out}/eurosat/ProGrad/vit_b16_ep50_1shots/seed1 " in run("prograd", "fewshot")[0]
    dip = [line.split("configs/trainers/DIP/")[1].split()[0] for line in run("dip", "fewshot")]
    assert dip == [f"vit_b16_ep{ep}_ctxv1.yaml" for ep in (50, 100, 100, 200, 200)]
    plug_in = [line.split("configs/trainers/DsRA/")[1].split()[0] for line in run("dsra", "fewshot", BASE="ProGrad")]
    assert plug_in == [f"prograd_vit_b16_ep{ep}.yaml" for ep in (50, 100, 100, 200, 200)]
    kgcoop_train, kgcoop_test = run("dsra", "base2new", BASE="KgCoOp")
    assert "DsRA/kgcoop_vit_b16_ep100_ctxv1/seed1" in kgcoop_train and "--load-epoch 100 " in kgcoop_test
    # a finished job (results.json below OUTPUT) is skipped, an unfinished one (directory without results.json) is not
    finished = out / "base2new/train_base/eurosat/shots_16/IVLP/vit_b16_c2_ep20_batch4_4+4ctx/seed1"
    unfinished = out / "base2new/test_new/eurosat/shots_16/IVLP/vit_b16_c2_ep20_batch4_4+4ctx/seed1"
    finished.mkdir(parents=True)
    unfinished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    (unfinished / "log.txt").write_text("interrupted")
    train_and_test = run("ivlp", "base2new")
    assert len(train_and_test) == 1 and f"--output-dir {unfinished} " in train_and_test[0]


@pytest.mark.parametrize("kind", ["IVLP", "MaPLe"])
def test_text_features_computed_once_per_class_set_at_evaluation(tiny, kind):
    from vlpeft.trainers.ivlp import PromptedCLIP

    clip_model, _ = tiny
    learner = ivlp_learner(clip_model, 2, 2, 2, 2) if kind == "IVLP" else maple_learner(clip_model, 2, 2)
    model = PromptedCLIP(learner, clip_model).eval()
    calls = []
    model.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(images)
        second = model(images)
    assert len(calls) == 1 and torch.equal(first, second)
    with torch.no_grad():
        learner.ctx.add_(0.1)  # an update (or a checkpoint load) invalidates the cache
        model(images)
    assert len(calls) == 2
    model(images)  # with autograd on (training) the features are always recomputed
    assert len(calls) == 3
