"""DsRA (issue 5, first part): parameter counts, start exactly at PromptSRC (R = 0), merged = unmerged."""
import pytest
import torch

from vlpeft.clip import load_clip
from vlpeft.clip.testing import build_random_clip
from vlpeft.trainers.dsra import DsRALearner, DualSharedAdapters
from vlpeft.trainers.base import TextFeatureCache
from vlpeft.trainers.ivlp import PromptedCLIP, VLPromptLearner

CLASSNAMES = ["forest", "sea or lake", "Annual_Crop Land"]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("positions, share_positions, adapters, total", [
    ("both", True, 128_600, 174_680),  # the paper's 0.17M (adapters alone 128,600)
    ("attn", True, 64_600, 110_680),   # attention-only ablation (T4: 0.11M)
    ("both", False, 129_200, 175_280),  # R per position
])
def test_dsra_parameter_counts_vit_b16(positions, share_positions, adapters, total):
    clip_model = build_random_clip("ViT-B/16", seed=0)
    prompts = VLPromptLearner(clip_model, CLASSNAMES, 4, 4, 9, 9, "a photo of a")
    dsra = DualSharedAdapters(clip_model, 50, positions, True, share_positions)
    assert n_params(dsra) == adapters and n_params(DsRALearner(prompts, dsra)) == total
    assert dsra.M["text_attn"].shape == (512, 50) and dsra.M["vision_attn"].shape == (768, 50)
    assert all(torch.count_nonzero(r) == 0 for r in dsra.R.values())


def _models(tiny_clip_path, seed=0):
    torch.manual_seed(seed)
    plain_clip, dsra_clip = load_clip("tiny", tiny_clip_path), load_clip("tiny", tiny_clip_path)
    prompts = VLPromptLearner(plain_clip, CLASSNAMES, 4, 4, 2, 2, "a photo of a")
    with torch.no_grad():
        for p in prompts.parameters():
            p.normal_(std=0.3)
    twin = VLPromptLearner(dsra_clip, CLASSNAMES, 4, 4, 2, 2, "a photo of a")
    twin.load_state_dict(prompts.state_dict())
    learner = DsRALearner(twin, DualSharedAdapters(dsra_clip, 5))
    return PromptedCLIP(prompts, plain_clip).eval(), PromptedCLIP(learner, dsra_clip).eval(), learner


def test_dsra_starts_at_promptsrc_and_merges(tiny_clip_path):
    promptsrc, dsra, learner = _models(tiny_clip_path)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dsra(images), promptsrc(images), atol=1e-5, rtol=1e-5)  # R = 0: PromptSRC exactly
        for r in learner.adapters.R.values():
            r.normal_(std=0.5)
        trained = dsra(images)
        assert (trained - promptsrc(images)).abs().max() > 1e-3
        dsra.surgery.merge()
        dsra._text_cache = TextFeatureCache()  # recompute the text side through the merged weights
        merged = dsra(images)
        dsra.surgery.unmerge()
    torch.testing.assert_close(merged, trained, atol=1e-4, rtol=1e-4)
    # the teacher view has no adapters: plain CLIP
    with torch.no_grad(), dsra.surgery.disabled():
        plain = dsra.image_features(images)
    with torch.no_grad(), promptsrc.surgery.disabled():
        torch.testing.assert_close(plain, promptsrc.image_features(images), atol=1e-6, rtol=1e-6)
