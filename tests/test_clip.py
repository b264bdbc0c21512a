"""Tests of vlpeft.clip: weight resolution, checkpoint loading, golden equality with an independent reference,
tokenization, dtype casting and the real ViT-B/16 shapes. CPU only, no downloads."""
import argparse
import copy
import importlib.util
import math
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from vlpeft.clip import (BACKBONES, CLIPWeightsNotFoundError, TextEncoder, build_clip_from_state_dict, cast_clip,
                         encode_image, load_clip, load_state_dict_any, model_dtype, resolve_clip_weights,
                         token_count, tokenize)
from vlpeft.clip import pretrained as pretrained_mod
from vlpeft.clip.model import META_KEYS, infer_architecture
from vlpeft.clip.random_weights import (build_random_clip, save_tiny_checkpoint, tiny_openai_state_dict,
                                 vit_b16_state_dict)


def _load_reference():
    spec = importlib.util.spec_from_file_location("reference_clip", Path(__file__).with_name("reference_clip.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _load_reference()

# Non-default sizes, so that reading the architecture from the checkpoint is actually exercised.
TINY = dict(seed=3, embed_dim=48, vision_width=128, vision_layers=3, patch_size=16, image_size=48,
            text_width=64, text_layers=2)
TINY_RN = dict(seed=5, embed_dim=40, vision_width=16, vision_layers=(1, 2, 1, 1), image_size=64,
               text_width=64, text_layers=1)
PROMPTS = ["a photo of a cat.", "a photo of a dog, a type of pet.", "X", "an extremely blurry photo of a tench"]


@pytest.fixture(scope="module")
def tiny_sd():
    return tiny_openai_state_dict(**TINY)


@pytest.fixture(scope="module")
def tiny_model(tiny_sd):
    return build_clip_from_state_dict(tiny_sd)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def tokens():
    return tokenize(PROMPTS)


def _max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


# ----------------------------------------------------------------------------------------------------------------
# loading / building


@pytest.mark.parametrize("jit", [False, True], ids=["state_dict", "jit_archive"])
def test_tiny_checkpoint_loads_with_architecture_from_file(tmp_path, jit, capsys):
    path = tmp_path / "tiny.pt"
    saved = save_tiny_checkpoint(path, jit=jit, **TINY)
    if jit:  # a real TorchScript archive whose state_dict has OpenAI's key names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)             # torch.jit is deprecated in torch 2.x
            scripted = torch.jit.load(str(path))
        assert set(scripted.state_dict()) == set(saved)

    model = load_clip("ViT-B/16", str(path))
    assert f'from "{path}"' in capsys.readouterr().out

    v = model.visual
    assert v.conv1.weight.shape == (128, 3, 16, 16)
    assert len(v.transformer.resblocks) == 3
    assert v.transformer.resblocks[0].attn.num_heads == 2          # 128 // 64
    assert tuple(v.image_size) == (48, 48) and tuple(v.grid_size) == (3, 3)
    assert v.positional_embedding.shape == (10, 128)
    assert model.text_projection.shape == (64, 48) and v.proj.shape == (128, 48)
    assert len(model.transformer.resblocks) == 2
    assert model.transformer.resblocks[0].attn.num_heads == 1
    assert model.context_length == 77 and model.vocab_size == 49408
    # OpenAI semantics: QuickGELU, LayerNorm in fp32; fp32 eval CPU model
    from open_clip.transformer import LayerNormFp32, QuickGELU
    assert isinstance(v.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(model.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(model.ln_final, LayerNormFp32) and isinstance(v.ln_pre, LayerNormFp32)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}

    built = model.state_dict()
    assert set(saved) - set(built) == set(META_KEYS)
    assert set(built) <= set(saved)
    for k, t in built.items():
        assert torch.equal(t, saved[k]), k
    assert math.isclose(model.logit_scale.exp().item(), 100.0, rel_tol=1e-6)


def test_fp16_checkpoint_is_upcast_exactly(tmp_path):
    path = tmp_path / "half.pt"
    saved = save_tiny_checkpoint(path, jit=True, dtype=torch.float16, **TINY)
    assert saved["visual.conv1.weight"].dtype == torch.float16
    model = load_clip("ViT-B/16", str(path))
    for k, t in model.state_dict().items():
        assert t.dtype == torch.float32 or not t.is_floating_point()
        assert torch.equal(t, saved[k].to(t.dtype)), k


def test_resnet_checkpoint(tmp_path):
    sd = tiny_openai_state_dict(**TINY_RN)
    arch = infer_architecture(sd)
    assert arch["vision_type"] == "resnet" and arch["vision_layers"] == (1, 2, 1, 1)
    assert arch["vision_width"] == 16 and arch["image_size"] == 64 and arch["embed_dim"] == 40

    path = tmp_path / "RN50.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)  # nested + DataParallel prefix
    model = load_clip("RN50", str(path))
    from open_clip.modified_resnet import ModifiedResNet
    assert isinstance(model.visual, ModifiedResNet)
    assert [len(getattr(model.visual, f"layer{i}")) for i in (1, 2, 3, 4)] == [1, 2, 1, 1]
    assert model.visual.attnpool.num_heads == 8                      # 16 * 32 // 64
    for k, t in model.state_dict().items():
        assert torch.equal(t, sd[k]), k

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f32 = encode_image(model, x)
        assert f32.shape == (2, 40) and torch.isfinite(f32).all()
        assert _max_diff(f32[0], f32[1]) > 1e-2                       # features depend on the image
        cast_clip(model, torch.bfloat16)
        assert model.visual.conv1.weight.dtype == torch.bfloat16
        assert model.visual.bn1.weight.dtype == torch.float32          # norms stay fp32
        bf = encode_image(model, x)
    assert bf.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(bf.float(), f32, dim=-1).min() > 0.99


def test_load_state_dict_any_formats(tmp_path, tiny_sd):
    from safetensors.torch import save_file
    plain = {k: v for k, v in tiny_sd.items() if k.startswith("visual.ln")}
    save_file(plain, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in plain.items()}, "epoch": 3}, tmp_path / "nested.pth")
    torch.save({"model": plain, "args": argparse.Namespace(x=1)}, tmp_path / "pickled.pth")  # not weights_only-safe
    for name in ("w.safetensors", "nested.pth"):
        got = load_state_dict_any(tmp_path / name)
        assert set(got) == set(plain) and all(torch.equal(got[k], plain[k]) for k in plain)
    with pytest.warns(UserWarning, match="weights_only"):
        got = load_state_dict_any(tmp_path / "pickled.pth")
    assert set(got) == set(plain)
    with pytest.raises(ValueError, match="not an OpenAI-format CLIP"):
        build_clip_from_state_dict(plain)
    (tmp_path / "garbage.pt").write_bytes(b"hello, not a checkpoint" * 8)
    with pytest.raises(ValueError, match="neither a TorchScript archive"):
        load_state_dict_any(tmp_path / "garbage.pt")


# ----------------------------------------------------------------------------------------------------------------
# golden equality with the independent reference


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_golden_equality_with_reference(tiny_sd, tiny_model, images, tokens, grad):
    # no_grad + eval lets nn.MultiheadAttention take its fused fast path; with grad it takes the python path.
    with torch.set_grad_enabled(grad):
        img = tiny_model.encode_image(images)
        txt = tiny_model.encode_text(tokens)
        enc = TextEncoder(tiny_model)
        emb = tiny_model.token_embedding(tokens)
        txt2 = enc(emb, tokens)
    ref_img = ref.encode_image(tiny_sd, images)
    ref_txt = ref.encode_text(tiny_sd, tokens)

    assert img.shape == (3, 48) and txt.shape == (len(PROMPTS), 48)
    assert _max_diff(img, ref_img) <= 1e-5
    assert _max_diff(txt, ref_txt) <= 1e-5
    assert _max_diff(txt2, ref_txt) <= 1e-5
    # the reference is not trivially satisfied: features are O(1) and differ between inputs
    assert ref_img.abs().mean() > 0.1 and ref_txt.abs().mean() > 0.1
    assert min(_max_diff(ref_img[0], ref_img[i]) for i in (1, 2)) > 0.05
    assert min(_max_diff(ref_txt[0], ref_txt[i]) for i in (1, 2, 3)) > 0.05


def test_reference_is_sensitive_to_the_causal_mask_and_eot(tiny_sd, tokens):
    # Guards against a reference that would agree with a wrong implementation.
    emb = tiny_sd["token_embedding.weight"].double()[tokens]
    good = ref.encode_text_embeddings(tiny_sd, emb, tokens)
    emb2 = emb.clone()
    emb2[:, -1] += 1.0                                   # change a padding position after every EOT
    assert _max_diff(good, ref.encode_text_embeddings(tiny_sd, emb2, tokens)) == 0.0
    tok2 = tokens.clone()
    tok2[:, 0] = 49407 + 1                               # argmax now points at position 0
    assert _max_diff(good, ref.encode_text_embeddings(tiny_sd, emb, tok2)) > 1e-2


def test_text_encoder_with_openai_layout_transformer(tiny_model, tokens):
    class LND(nn.Module):  # an OpenAI-style transformer: [L, N, D] in/out, mask applied inside
        def __init__(self, inner, mask):
            super().__init__()
            self.inner, self.mask = inner, mask

        def forward(self, x):
            return self.inner(x.permute(1, 0, 2), attn_mask=self.mask).permute(1, 0, 2)

    class LNDTakesMask(nn.Module):  # LND, mask passed by the caller (older open_clip)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, attn_mask=None):
            return self.inner(x.permute(1, 0, 2), attn_mask=attn_mask).permute(1, 0, 2)

    enc = TextEncoder(tiny_model)
    enc_lnd = TextEncoder(tiny_model)
    enc_lnd.transformer = LND(tiny_model.transformer, tiny_model.attn_mask)
    enc_mask = TextEncoder(tiny_model)
    enc_mask.transformer = LNDTakesMask(tiny_model.transformer)
    emb = tiny_model.token_embedding(tokens)
    with torch.no_grad():
        out = enc(emb, tokens)
        assert _max_diff(out, enc_lnd(emb, tokens)) <= 1e-6
        assert _max_diff(out, enc_mask(emb, tokens)) <= 1e-6
        enc_mask.attn_mask = None                                    # without the causal mask the result changes
        assert _max_diff(out, enc_mask(emb, tokens)) > 1e-3


# ----------------------------------------------------------------------------------------------------------------
# dtype handling


def test_cast_clip_fp16_matches_openai_convert_weights(tiny_sd, tiny_model, images, tokens):
    from open_clip.model import convert_weights_to_lp
    half = cast_clip(copy.deepcopy(tiny_model), "fp16")
    openai_style = copy.deepcopy(tiny_model)
    convert_weights_to_lp(openai_style, torch.float16)                # OpenAI's convert_weights
    assert model_dtype(half) == torch.float16
    assert half.token_embedding.weight.dtype == torch.float16      # embeddings cast too
    assert half.visual.class_embedding.dtype == torch.float16
    assert half.ln_final.weight.dtype == torch.float32 and half.logit_scale.dtype == torch.float32
    with torch.no_grad():
        a_img, b_img = encode_image(half, images), encode_image(openai_style, images)
        a_txt, b_txt = half.encode_text(tokens), openai_style.encode_text(tokens)
        enc_txt = TextEncoder(half)(half.token_embedding(tokens), tokens)
    assert a_img.dtype == torch.float16 and a_txt.dtype == torch.float16
    assert torch.equal(a_img, b_img) and torch.equal(a_txt, b_txt)  # embedding storage dtype changes nothing
    assert torch.equal(enc_txt, a_txt)
    # and both are the fp32 reference up to fp16 precision
    assert _max_diff(a_img, ref.encode_image(tiny_sd, images)) < 2e-2
    assert _max_diff(a_txt, ref.encode_text(tiny_sd, tokens)) < 2e-2


def test_cast_clip_bf16_text_encoder_fp32_prompts_and_grad(tiny_model, tokens):
    fp32 = copy.deepcopy(tiny_model)                                 # backward below must not touch the fixture
    bf16 = cast_clip(copy.deepcopy(tiny_model), torch.bfloat16)
    assert model_dtype(bf16) == torch.bfloat16
    blk = bf16.transformer.resblocks[0]
    assert blk.attn.in_proj_weight.dtype == torch.bfloat16 and blk.mlp.c_fc.weight.dtype == torch.bfloat16
    assert blk.attn.out_proj.weight.dtype == torch.bfloat16
    assert bf16.text_projection.dtype == torch.bfloat16 and bf16.visual.proj.dtype == torch.bfloat16
    assert blk.ln_1.weight.dtype == torch.float32

    base = fp32.token_embedding(tokens).detach()
    prompts32 = base.clone().requires_grad_(True)                     # fp32 leaf, like a trainable ctx
    prompts16 = base.clone().requires_grad_(True)
    out32 = TextEncoder(fp32)(prompts32, tokens)
    enc16 = TextEncoder(bf16)
    assert enc16.dtype == torch.bfloat16
    out16 = enc16(prompts16, tokens)
    assert out16.dtype == torch.bfloat16 and out32.dtype == torch.float32
    rel = (out16.float() - out32).norm() / out32.norm()
    assert rel < 0.05

    w = torch.randn(out32.shape, generator=torch.Generator().manual_seed(1))
    (out32 * w).sum().backward()
    (out16.float() * w).sum().backward()
    g32, g16 = prompts32.grad, prompts16.grad
    assert g16 is not None and g16.dtype == torch.float32 and torch.isfinite(g16).all()
    assert g16.abs().sum() > 0
    # positions after EOT get no gradient (causal mask + EOT pooling), in both precisions
    eot = tokens.argmax(-1)
    assert g16[0, eot[0] + 1:].abs().sum() == 0 and g32[0, eot[0] + 1:].abs().sum() == 0
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.95


def test_cast_clip_back_to_fp32(tiny_model, images):
    m = cast_clip(cast_clip(copy.deepcopy(tiny_model), "bf16"), "fp32")
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    with torch.no_grad():
        assert encode_image(m, images).dtype == torch.float32


# ----------------------------------------------------------------------------------------------------------------
# tokenizer


def test_tokenize_openai_semantics():
    t = tokenize(["a photo of a cat.", "hello world"])
    assert t.dtype == torch.int64 and t.shape == (2, 77)
    assert t[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    assert (t[:, 0] == 49406).all()
    n = [8, 4]
    for i in range(2):
        assert t[i, n[i] - 1].item() == 49407 and t[i].argmax().item() == n[i] - 1
        assert (t[i, n[i]:] == 0).all()
    assert tokenize("a photo of a").shape == (1, 77)
    assert token_count("a photo of a") == 4
    assert tokenize("x", context_length=16).shape == (1, 16)

    long_text = " ".join(["word"] * 80)
    with pytest.raises(RuntimeError, match="too long"):
        tokenize(long_text)
    cut = tokenize(long_text, truncate=True)
    assert cut[0, -1].item() == 49407 and cut[0].argmax().item() == 76 and (cut[0] != 0).all()


# ----------------------------------------------------------------------------------------------------------------
# resolving weights


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CACHE_HOME", str(h / ".xdg"))
    monkeypatch.setenv("HF_HOME", str(h / ".hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLPEFT_OFFLINE", "1")
    for var in ("VLPEFT_CLIP_WEIGHTS", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)

    def no_download(*a, **k):
        raise AssertionError("must not download in these tests")
    monkeypatch.setattr(pretrained_mod, "_download_pretrained", no_download)
    return h


def test_not_found_lists_every_path_and_the_fix(home):
    with pytest.raises(CLIPWeightsNotFoundError) as ei:
        resolve_clip_weights("ViT-B/16")
    err = ei.value
    msg = str(err)
    assert isinstance(err, FileNotFoundError)
    assert "ViT-B/16" in msg
    clip_file = str(home / ".cache" / "clip" / "ViT-B-16.pt")
    hf_dir = str(home / ".hf" / "hub" / "models--timm--vit_base_patch16_clip_224.openai")
    assert clip_file in msg and hf_dir in msg
    assert len(err.tried) >= 5
    for t in err.tried:
        assert t in msg
    assert f"put OpenAI's ViT-B-16.pt (https://openaipublic" in msg and f".pt) at {clip_file}" in msg
    assert "MODEL.BACKBONE.PATH" in msg and "VLPEFT_CLIP_WEIGHTS" in msg
    assert "download: skipped" in msg


def test_found_in_coop_cache(home):
    f = home / ".cache" / "clip" / "ViT-B-16.pt"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert resolve_clip_weights("ViT-B/16") == f
    assert resolve_clip_weights("vit-b-16") == f                   # open_clip spelling, any case
    with pytest.raises(CLIPWeightsNotFoundError, match="RN50"):
        resolve_clip_weights("RN50")


def test_found_in_hf_cache(home):
    repo = home / ".hf" / "hub" / "models--timm--vit_base_patch16_clip_224.openai"
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    assert resolve_clip_weights("ViT-B/16") == snap / "open_clip_model.safetensors"


def test_env_var_file_and_directory(home, tmp_path, monkeypatch):
    f = tmp_path / "anything.pt"
    f.write_bytes(b"x")
    monkeypatch.setenv("VLPEFT_CLIP_WEIGHTS", str(f))
    assert resolve_clip_weights("ViT-B/16") == f

    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("VLPEFT_CLIP_WEIGHTS", str(d))
    with pytest.raises(CLIPWeightsNotFoundError) as ei:
        resolve_clip_weights("ViT-L/14@336px")
    assert str(d / "ViT-L-14-336px.pt") in str(ei.value)
    (d / "ViT-L-14-336px.pt").write_bytes(b"x")
    assert resolve_clip_weights("ViT-L/14@336px") == d / "ViT-L-14-336px.pt"


def test_explicit_path(home, tmp_path):
    cached = home / ".cache" / "clip" / "ViT-B-16.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    missing = tmp_path / "nope.pt"
    with pytest.raises(CLIPWeightsNotFoundError) as ei:              # no silent fallback to the cache
        resolve_clip_weights("ViT-B/16", str(missing))
    assert str(missing) in str(ei.value) and "MODEL.BACKBONE.PATH" in str(ei.value)
    f = tmp_path / "custom.bin"
    f.write_bytes(b"x")
    assert resolve_clip_weights("anything-custom", str(f)) == f      # a path makes the name irrelevant
    assert resolve_clip_weights("ViT-B/16", str(cached.parent)) == cached


def test_unknown_name_lists_valid_names(home):
    with pytest.raises(ValueError) as ei:
        resolve_clip_weights("ViT-H/14")
    for name in ("RN50", "RN101", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"):
        assert name in str(ei.value)
    assert BACKBONES["ViT-B/16"] == ("ViT-B-16.pt", "ViT-B-16", "openai")
    assert BACKBONES["ViT-L/14@336px"][0] == "ViT-L-14-336px.pt" and BACKBONES["RN50"][0] == "RN50.pt"


def test_download_step(home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("VLPEFT_OFFLINE")
    calls = []

    def failing(cfg, prefer_hf_hub, cache_dir):
        calls.append(cfg)
        raise OSError("Name or service not known")
    monkeypatch.setattr(pretrained_mod, "_download_pretrained", failing)
    with pytest.raises(CLIPWeightsNotFoundError) as ei:
        resolve_clip_weights("ViT-B/16")
    assert "download from https://openaipublic" in str(ei.value) and "failed (OSError" in str(ei.value)
    assert [list(c) for c in calls] == [["url"], ["hf_hub"]]          # OpenAI URL first, then the HF hub

    def ok(cfg, prefer_hf_hub, cache_dir):
        target = Path(cache_dir) / os.path.basename(cfg["url"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
        return str(target)
    monkeypatch.setattr(pretrained_mod, "_download_pretrained", ok)
    assert resolve_clip_weights("ViT-B/16") == home / ".cache" / "clip" / "ViT-B-16.pt"


def test_reachability_probe_fails_fast(monkeypatch):
    import socket
    import time
    for var in pretrained_mod._PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert pretrained_mod._unreachable(f"https://127.0.0.1:{port}/x.pt") is None
    finally:
        server.close()
    t0 = time.time()
    why = pretrained_mod._unreachable(f"https://127.0.0.1:{port}/x.pt", timeout=2.0)  # now closed: refused
    assert why is not None and f"127.0.0.1:{port} unreachable" in why and time.time() - t0 < 3.0


# ----------------------------------------------------------------------------------------------------------------
# real ViT-B/16 shapes


def _openai_vit_param_count(width, layers, patch, image, text_width, text_layers, embed, vocab=49408, ctx=77):
    def block(d):  # ln_1, in_proj (3d x d + 3d), out_proj, ln_2, c_fc (4d x d + 4d), c_proj (d x 4d + d)
        return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    tokens = (image // patch) ** 2 + 1
    vision = 3 * patch * patch * width + width + tokens * width + 2 * width + layers * block(width) \
        + 2 * width + width * embed
    text = vocab * text_width + ctx * text_width + text_layers * block(text_width) + 2 * text_width \
        + text_width * embed
    return vision + text + 1                                          # + logit_scale


def test_random_vit_b16_has_real_shapes():
    expected = _openai_vit_param_count(768, 12, 16, 224, 512, 12, 512)
    assert expected == 149_620_737
    model = build_random_clip("ViT-B/16")
    assert sum(p.numel() for p in model.parameters()) == expected
    v = model.visual
    assert v.conv1.weight.shape == (768, 3, 16, 16) and len(v.transformer.resblocks) == 12
    assert v.transformer.resblocks[0].attn.num_heads == 12
    assert v.positional_embedding.shape == (197, 768) and tuple(v.grid_size) == (14, 14)
    assert model.ln_final.weight.shape == (512,) and len(model.transformer.resblocks) == 12
    assert model.transformer.resblocks[0].attn.num_heads == 8
    assert model.text_projection.shape == (512, 512) and v.proj.shape == (768, 512)

    class Stop(Exception):
        pass

    def stop(module, inputs, output):  # the sequence entering the blocks; stop before the 12 blocks run
        raise Stop(tuple(output.shape))

    handle = v.ln_pre.register_forward_hook(stop)
    with pytest.raises(Stop) as ei, torch.no_grad():
        encode_image(model, torch.randn(1, 3, 224, 224))
    handle.remove()
    assert ei.value.args[0] == (1, 197, 768)                       # open_clip runs batch-first: [N, L, D]


def test_vit_b16_state_dict_uses_real_shapes(monkeypatch):
    import vlpeft.clip.random_weights as testing
    seen = {}
    monkeypatch.setattr(testing, "tiny_openai_state_dict", lambda **kw: seen.update(kw) or {})
    vit_b16_state_dict(seed=7)
    assert seen == dict(seed=7, embed_dim=512, vision_width=768, vision_layers=12, patch_size=16, image_size=224,
                        text_width=512, text_layers=12, context_length=77, vocab_size=49408, dtype=torch.float32)


def test_random_state_dicts_are_deterministic(tiny_sd):
    again, other = tiny_openai_state_dict(**TINY), tiny_openai_state_dict(**{**TINY, "seed": 4})
    assert set(again) == set(tiny_sd) and all(torch.equal(again[k], tiny_sd[k]) for k in tiny_sd)
    assert not torch.equal(other["visual.proj"], tiny_sd["visual.proj"])
    with pytest.raises(ValueError, match="multiples of 64"):
        tiny_openai_state_dict(vision_width=96)
