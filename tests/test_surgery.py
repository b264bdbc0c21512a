"""The CLIP-surgery layer against an independent float64 reference (tests/reference_clip.py), table-driven."""
import importlib.util
from pathlib import Path

import pytest
import torch

from vlpeft.clip import TextEncoder, build_clip_from_state_dict, tokenize
from vlpeft.clip.surgery import ClipSurgery, LowRankDelta, SurgicalAttention
from vlpeft.clip.random_weights import tiny_openai_state_dict

spec = importlib.util.spec_from_file_location("reference_clip", Path(__file__).with_name("reference_clip.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

TINY = dict(seed=4, embed_dim=48, vision_width=128, vision_layers=3, patch_size=16, image_size=48,
            text_width=64, text_layers=3)
PROMPTS = ["a photo of a cat.", "a photo of a dog, a type of pet.", "an extremely blurry photo of a tench"]
G = torch.Generator().manual_seed(0)


def rand(*shape, std=0.1):
    return torch.randn(*shape, generator=G) * std


@pytest.fixture()
def sd():
    return tiny_openai_state_dict(**TINY)


@pytest.fixture()
def model(sd):
    return build_clip_from_state_dict(sd).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tokens():
    return tokenize(PROMPTS)


def features(model, images, tokens):
    text = TextEncoder(model)(model.token_embedding(tokens), tokens)
    return model.encode_image(images), text


def reference(sd, images, tokens, vision=None, text=None, append=None):
    emb = sd["token_embedding.weight"].double()[tokens]
    return (ref.encode_image(sd, images, append=append, edits=vision),
            ref.encode_text_embeddings(sd, emb, tokens, edits=text))


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


class Adapter(torch.nn.Module):
    """DsRA-style z + z M diag(r) M^T (symmetric)."""

    def __init__(self, dim, rank=5, zero=False):
        super().__init__()
        self.M = torch.nn.Parameter(rand(dim, rank, std=0.3))
        self.r = torch.nn.Parameter(torch.zeros(rank) if zero else rand(rank, std=0.5))

    def forward(self, z):
        return z + ((z @ self.M.to(z.dtype)) * self.r.to(z.dtype)) @ self.M.to(z.dtype).t()

    def matrix(self):
        return torch.eye(self.M.shape[0]) + self.M @ torch.diag(self.r) @ self.M.t()


def delta(d_in, d_out, zero=False):
    d = LowRankDelta(d_in, d_out, rank=3, alpha=6)
    if not zero:
        with torch.no_grad():
            d.B.copy_(rand(d_out, 3))
    return d


# edit builders: each attaches edits to ``surgery`` and returns (vision_edits, text_edits, append) for the reference
def _deep_prompts(s, m):
    v0, v1, t1, t2 = rand(2, 128), rand(2, 128), rand(3, 64), rand(3, 64)
    s.append("vision", lambda: v0)
    s.write("vision", 1, -2, lambda: v1)
    s.write("text", 1, 1, lambda: t1)
    s.write("text", 2, 1, lambda: t2)
    return {"write": {1: (-2, v1)}}, {"write": {1: (1, t1), 2: (1, t2)}}, v0


def _kv_tokens(s, m):
    kv_v, kv_t = rand(3, 128, std=1.0), rand(4, 64, std=1.0)
    s.add_kv_tokens("vision", 2, lambda: kv_v)
    s.add_kv_tokens("text", 0, lambda: kv_t)
    return {"kv": {2: kv_v}}, {"kv": {0: kv_t}}, None


def _attention_deltas(s, m):
    vis, txt = {}, {}
    for tower, width, out in (("vision", 128, vis), ("text", 64, txt)):
        for layer in (0, 2):
            for name in ("q", "v", "out"):
                d = delta(width, width)
                s.add_attention_delta(tower, layer, name, d)
                out.setdefault(layer, {})[name] = d.weight().detach().double()
    return {"deltas": vis}, {"deltas": txt}, None


def _mlp_deltas(s, m):
    vis, txt = {}, {}
    for tower, width, out in (("vision", 128, vis), ("text", 64, txt)):
        d_fc, d_proj = delta(width, 4 * width), delta(4 * width, width)
        s.add_mlp_delta(tower, 1, "c_fc", d_fc)
        s.add_mlp_delta(tower, 1, "c_proj", d_proj)
        out[1] = {"c_fc": d_fc.weight().detach().double(), "c_proj": d_proj.weight().detach().double()}
    return {"deltas": vis}, {"deltas": txt}, None


def _adapters(s, m):
    vis, txt = {"attn_in": {}, "mlp_in": {}}, {"attn_in": {}, "mlp_in": {}}
    for tower, width, out in (("vision", 128, vis), ("text", 64, txt)):
        shared = Adapter(width)
        for layer in range(3):
            s.add_input_adapter(tower, layer, "attn", shared)
            out["attn_in"][layer] = shared.matrix().detach().double()
        a = Adapter(width)
        s.add_input_adapter(tower, 0, "mlp", a)
        out["mlp_in"][0] = a.matrix().detach().double()
    return vis, txt, None


def _adapters_and_deltas(s, m):
    """An adapter and q/k/v deltas on the same attention: (W + dW) applied to z T."""
    a, d = Adapter(128), delta(128, 128)
    s.add_input_adapter("vision", 1, "attn", a)
    s.add_attention_delta("vision", 1, "k", d)
    b, e = Adapter(64), delta(64, 256)
    s.add_mlp_delta("text", 2, "c_fc", e)
    s.add_input_adapter("text", 2, "mlp", b)
    vis = {"attn_in": {1: a.matrix().detach().double()}, "deltas": {1: {"k": d.weight().detach().double()}}}
    txt = {"mlp_in": {2: b.matrix().detach().double()}, "deltas": {2: {"c_fc": e.weight().detach().double()}}}
    return vis, txt, None


def _kv_tokens_through_ln_1(s, m):
    """DPL's subnet: K/V-only prompts normalised by the block's ln_1 (a one-option DPL block in the reference)."""
    kv_v, kv_t = rand(3, 128, std=1.0), rand(4, 64, std=1.0)
    s.add_kv_tokens("vision", 1, lambda: kv_v, through_ln_1=True)
    s.add_kv_tokens("text", 2, lambda: kv_t, through_ln_1=True)
    return {"dpl": {1: ([kv_v], [1.0])}}, {"dpl": {2: ([kv_t], [1.0])}}, None


def _kv_mixtures(s, m):
    """DPL's supernet: per block, softmax(alpha)-weighted alternatives {none, 2, 4, 6} prompt tokens."""
    vision, text = {}, {}
    for tower, width, edits in (("vision", 128, vision), ("text", 64, text)):
        for layer in (0, 2):
            options = [None] + [rand(c, width, std=1.0) for c in (2, 4, 6)]
            alpha = rand(4, std=1.0)
            s.add_kv_mixture(tower, layer, [None] + [lambda t=t: t for t in options[1:]],
                             lambda a=alpha: torch.softmax(a, dim=0))
            edits[layer] = (options, torch.softmax(alpha.double(), dim=0))
    return {"dpl": vision}, {"dpl": text}, None


def _fused_qkv_deltas(s, m):
    """A [3D, D] update added to in_proj (one GEMM): block 0 alone, block 1 beside a per-name v delta and out."""
    vis, txt = {}, {}
    for tower, width, out in (("vision", 128, vis), ("text", 64, txt)):
        for layer in (0, 1):
            fused = delta(width, 3 * width)
            s.add_attention_delta(tower, layer, "qkv", fused)
            w = dict(zip("qkv", fused.weight().detach().double().chunk(3)))
            if layer == 1:
                v, o = delta(width, width), delta(width, width)
                s.add_attention_delta(tower, layer, "v", v)
                s.add_attention_delta(tower, layer, "out", o)
                w["v"] = w["v"] + v.weight().detach().double()
                w["out"] = o.weight().detach().double()
            out[layer] = w
    return {"deltas": vis}, {"deltas": txt}, None


EDITS = {"deep_prompts": _deep_prompts, "fused_qkv_deltas": _fused_qkv_deltas, "kv_tokens": _kv_tokens, "kv_tokens_through_ln_1": _kv_tokens_through_ln_1,
         "kv_mixtures": _kv_mixtures, "attention_deltas": _attention_deltas,
         "mlp_deltas": _mlp_deltas, "adapters": _adapters, "adapters_and_deltas": _adapters_and_deltas}


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_no_edits_and_zero_edits_equal_plain_clip(sd, model, images, tokens, grad):
    with torch.set_grad_enabled(grad):
        plain = features(model, images, tokens)
        s = ClipSurgery(model)
        for tower, width in (("vision", 128), ("text", 64)):
            for layer in range(3):
                for name in ("q", "k", "v", "out"):
                    s.add_attention_delta(tower, layer, name, delta(width, width, zero=True))
                s.add_mlp_delta(tower, layer, "c_fc", delta(width, 4 * width, zero=True))
                s.add_input_adapter(tower, layer, "attn", Adapter(width, zero=True))
                s.add_input_adapter(tower, layer, "mlp", Adapter(width, zero=True))
        zero = features(model, images, tokens)
    assert isinstance(model.visual.transformer.resblocks[0].attn, SurgicalAttention)
    for a, b, r in zip(plain, zero, reference(sd, images, tokens)):
        assert max_diff(a, r) <= 1e-5 and max_diff(b, a) <= 1e-5
        assert r.abs().mean() > 0.1


@pytest.mark.parametrize("edit", list(EDITS))
def test_edits_match_the_reference_and_merge(sd, model, images, tokens, edit):
    plain = features(model, images, tokens)
    s = ClipSurgery(model)
    vision, text, append = EDITS[edit](s, model)
    with torch.no_grad():
        edited = features(model, images, tokens)
    expected = reference(sd, images, tokens, vision, text, append)
    for got, want, base in zip(edited, expected, plain):
        assert max_diff(got, want) <= 1e-4 * want.abs().max().item()
        assert max_diff(got, base) > 1e-3  # the edit changes the output
    with torch.no_grad(), s.disabled():  # e.g. PromptSRC's frozen teacher on the same weights
        assert all(max_diff(a, b) <= 1e-5 for a, b in zip(features(model, images, tokens), plain))

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    s.merge()
    with torch.no_grad():
        merged = features(model, images, tokens)
    for got, want in zip(merged, edited):
        assert max_diff(got, want) <= 1e-4 * want.abs().max().item()
    if not edit.startswith(("deep_prompts", "kv_")):  # weight edits were folded into the weights
        assert any(not torch.equal(weights[k], v) for k, v in model.state_dict().items())
    s.unmerge()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # bit-exact restore
    s.detach()
    restored = features(model, images, tokens)
    assert all(torch.equal(a, b) for a, b in zip(restored, plain))
    assert not any(isinstance(m, SurgicalAttention) for m in model.modules())


def test_gradients_reach_the_edits(model, images, tokens):
    s = ClipSurgery(model)
    prompt = torch.nn.Parameter(rand(2, 128))
    adapter = Adapter(64)
    lora = delta(128, 128, zero=True)
    s.append("vision", lambda: prompt)
    s.add_input_adapter("text", 1, "attn", adapter)
    s.add_attention_delta("vision", 0, "v", lora)
    img, txt = features(model, images, tokens)
    (img.sum() + txt.sum()).backward()
    for p in (prompt, adapter.M, adapter.r, lora.B):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_remove_drops_appended_tokens(sd, model, images, tokens):
    extra = rand(2, 128, std=1.0)
    # reference (before any hook is attached): the tokens take part in block 1 only
    x = model.visual
    with torch.no_grad():
        h = x.ln_pre(torch.cat([x.class_embedding.expand(2, 1, -1),
                                x.conv1(images).flatten(2).transpose(1, 2)], 1) + x.positional_embedding)
        blocks = x.transformer.resblocks  # they take [L, N, D] (vlpeft's CLIP runs in OpenAI's layout)
        h = blocks[0](h.transpose(0, 1)).transpose(0, 1)
        h = blocks[1](torch.cat([h, extra.expand(2, -1, -1)], 1).transpose(0, 1)).transpose(0, 1)[:, :-2]
        h = blocks[2](h.transpose(0, 1)).transpose(0, 1)
        want = x.ln_post(h[:, 0]) @ x.proj
    plain, _ = features(model, images, tokens)
    s = ClipSurgery(model)
    s.append("vision", lambda: extra, layer=1)
    s.remove("vision", 1, 2)
    img, _ = features(model, images, tokens)
    assert max_diff(img, want) <= 1e-5 and max_diff(img, plain) > 1e-3


def test_bad_edits_are_refused(model):
    s = ClipSurgery(model)
    with pytest.raises(ValueError, match="no block 7"):
        s.write("text", 7, 1, lambda: rand(2, 64))
    with pytest.raises(ValueError, match="use write"):
        s.append("text", lambda: rand(2, 64))
    with pytest.raises(ValueError, match="q, k, v, qkv or out"):
        s.add_attention_delta("text", 0, "z", delta(64, 64))
    s.write("text", 0, 76, lambda: rand(2, 64))
    with pytest.raises(ValueError, match="cannot write 2 tokens at position 76"):
        TextEncoder(model)(model.token_embedding(tokenize(["a"])), tokenize(["a"]))


def test_kv_mixture_with_one_hot_weights_is_that_option(sd, model, images, tokens):
    """A one-hot mixture on option c equals the plain K/V tokens of c through ln_1 (DPL's subnet), and on the "no
    prompt" option plain CLIP; gradients reach every option and the mixture weights."""
    plain = features(model, images, tokens)
    options = [rand(c, 64, std=1.0).requires_grad_(True) for c in (2, 4)]
    s = ClipSurgery(model)
    weights = torch.zeros(3)
    s.add_kv_mixture("text", 1, [None, lambda: options[0], lambda: options[1]], lambda: weights)
    with torch.no_grad():
        weights.copy_(torch.tensor([1.0, 0.0, 0.0]))
        assert max_diff(features(model, images, tokens)[1], plain[1]) <= 1e-5
        weights.copy_(torch.tensor([0.0, 0.0, 1.0]))
        mixed = features(model, images, tokens)[1]
    other = build_clip_from_state_dict(sd).eval()
    ClipSurgery(other).add_kv_tokens("text", 1, lambda: options[1], through_ln_1=True)
    with torch.no_grad():
        alone = features(other, images, tokens)[1]
    assert max_diff(mixed, alone) <= 1e-5 * alone.abs().max().item() and max_diff(mixed, plain[1]) > 1e-3
    s.detach()
    alpha = torch.zeros(3, requires_grad=True)
    s = ClipSurgery(model)
    s.add_kv_mixture("text", 1, [None, lambda: options[0], lambda: options[1]], lambda: torch.softmax(alpha, 0))
    features(model, images, tokens)[1].sum().backward()
    assert alpha.grad.abs().sum() > 0 and all(o.grad.abs().sum() > 0 for o in options)
    with pytest.raises(ValueError, match="already has a K/V mixture"):
        s.add_kv_mixture("text", 1, [None], lambda: torch.ones(1))


def test_before_tower_runs_once_per_forward_of_that_tower_and_before_merging(model, images, tokens):
    s = ClipSurgery(model)
    s.add_attention_delta("text", 0, "qkv", delta(64, 192))
    calls = {"text": 0, "vision": 0, "vision_merged_too": 0}
    s.before_tower("text", lambda: calls.__setitem__("text", calls["text"] + 1))
    s.before_tower("vision", lambda: calls.__setitem__("vision", calls["vision"] + 1))
    s.before_tower("vision", lambda: calls.__setitem__("vision_merged_too", calls["vision_merged_too"] + 1),
                   merged_too=True)
    with torch.no_grad():
        features(model, images, tokens)
        assert calls == {"text": 1, "vision": 1, "vision_merged_too": 1}
        with s.disabled():
            features(model, images, tokens)
        assert calls == {"text": 1, "vision": 1, "vision_merged_too": 1}  # plain CLIP: nothing to prepare
        s.merge()
        assert calls == {"text": 2, "vision": 2, "vision_merged_too": 2}  # before the deltas are read
        features(model, images, tokens)
        assert calls == {"text": 2, "vision": 2, "vision_merged_too": 3}  # merged: only what token edits need
