"""Speed and memory switches change nothing but speed and memory (the numbers themselves: ``python -m vlpeft.bench``)."""
import pytest
import torch
import torch.nn.functional as F
from conftest import cfg_with

from vlpeft.bench import build_bench_trainer
from vlpeft.clip import build_clip_from_state_dict
from vlpeft.clip.random_weights import tiny_openai_state_dict

DEEP = {"PROMPT_DEPTH_TEXT": 2, "PROMPT_DEPTH_VISION": 2}
TRAINERS = {
    "CoOp": {"TRAINER.COOP.N_CTX": 4},
    "IVLP": {f"TRAINER.IVLP.{k}": v for k, v in DEEP.items()},
    "MaPLe": {"TRAINER.MAPLE.PROMPT_DEPTH": 2},
    "DsRA": {**{f"TRAINER.DSRA.{k}": v for k, v in DEEP.items()}, "TRAINER.DSRA.RANK": 4},
    "DIP": {"TRAINER.DIP.PROMPT_DEPTH": 2, "TRAINER.DIP.DROPOUT": 0.5},  # dropout: recomputation must replay it
}


def _tiny_clip(name, seed=0):
    return build_clip_from_state_dict(tiny_openai_state_dict(seed=seed))


def _gradients(trainer_name, overrides, text, vision):
    cfg = cfg_with(**{"TRAINER.NAME": trainer_name, "MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32),
                      "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, "MODEL.ACTIVATION_CHECKPOINTING.TEXT": text,
                      "MODEL.ACTIVATION_CHECKPOINTING.VISION": vision, **overrides})
    torch.manual_seed(0)
    trainer = build_bench_trainer(cfg, [f"class {i}" for i in range(5)], clip_builder=_tiny_clip)
    trainer.set_model_mode("train")
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss = F.cross_entropy(trainer.model(images), torch.tensor([0, 3, 4]))
    loss.backward()
    learner = trainer._models["prompt_learner"]
    return loss.item(), {n: p.grad.clone() for n, p in learner.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_activation_checkpointing_leaves_the_gradients_unchanged(trainer):
    loss, plain = _gradients(trainer, TRAINERS[trainer], False, False)
    loss_ckpt, ckpt = _gradients(trainer, TRAINERS[trainer], True, True)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6) and plain.keys() == ckpt.keys() and plain
    for name in plain:
        assert plain[name].abs().sum() > 0 or trainer == "DsRA"  # DsRA's B-like factors start at zero
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_activation_checkpointing_recomputes_the_blocks():
    """Checkpointing is really on: each checkpointed block runs twice per training step (forward, then again in the
    backward pass)."""
    calls = []
    for text in (False, True):
        cfg = cfg_with(**{"TRAINER.NAME": "CoOp", "MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32),
                          "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, "TRAINER.COOP.N_CTX": 4,
                          "MODEL.ACTIVATION_CHECKPOINTING.TEXT": text})
        trainer = build_bench_trainer(cfg, ["a", "b"], clip_builder=_tiny_clip)
        block = trainer.model.text_encoder.transformer.resblocks[0]
        count = []
        block.register_forward_pre_hook(lambda *a: count.append(1))
        F.cross_entropy(trainer.model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
        calls.append(len(count))
    assert calls == [1, 2]


def test_vision_checkpointing_on_a_resnet_backbone_is_refused():
    from vlpeft.trainers.base import set_activation_checkpointing

    resnet = build_clip_from_state_dict(tiny_openai_state_dict(vision_layers=(1, 1, 1, 1)))
    switches = {"TEXT": True, "VISION": True}
    with pytest.raises(ValueError, match="ACTIVATION_CHECKPOINTING.VISION.*ResNet"):
        set_activation_checkpointing(resnet, switches)
