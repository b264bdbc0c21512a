"""DPL's prompt modules (docs/decisions/dpl.md): parameter counts with ViT-B/16 shapes, the supernet against the
subnet and plain CLIP on the surgery layer, and the found lengths (alpha -> lengths -> JSON)."""
import pytest
import torch

from vlpeft.clip import TextEncoder, build_clip_from_state_dict, tokenize
from vlpeft.clip.random_weights import build_random_clip, tiny_openai_state_dict
from vlpeft.clip.surgery import ClipSurgery
from vlpeft.trainers.dpl import (
    CODE_OPTIONS, PAPER_OPTIONS, ArchitectureWeights, SubnetPrompts, SupernetPrompts, lengths_from_alpha,
    load_lengths, save_lengths, tower_shapes,
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
