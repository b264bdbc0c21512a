"""Contrastive pretraining of the testbed's tiny CLIP on the generated world (CLIP's symmetric InfoNCE loss).

    python -m vlpeft.testbed.pretrain                 # writes output/testbed_pretrain/vlpeft-testbed.pt
    python -m vlpeft.testbed.pretrain --out vlpeft/testbed/vlpeft-testbed.pt --overwrite   # replace the shipped one

An existing file is never replaced without ``--overwrite``. To use a rebuilt checkpoint, pass it as
``MODEL.BACKBONE.PATH``.

Reproducible: a fixed seed fixes the image pool, the captions drawn at every step, the initialisation and the batch
order. Architecture: ``vlpeft-testbed.json`` (registered with open_clip): ViT 4 x 128 on 64x64 images with 16x16
patches, text transformer 4 x 128 with CLIP's tokenizer and 77-token context; embedding 128. ``--text-layers`` and
``--vision-layers`` build deeper (or shallower) towers of the same width; the loader reads the depths from the file.

Two exact shortcuts keep it within minutes on 2 CPU cores:
* only the rows of the token-embedding table that the world's words use are trained (the others keep their random
  initialisation and are written out unchanged), so the optimizer never touches the 49408 x 128 table;
* captions are shorter than 32 tokens and the text mask is causal, so the text tower runs only up to the batch's
  last EOT: the features at the EOT token are exactly those of the full 77-token forward.
The checkpoint is an OpenAI-format state dict in fp16 (vlpeft's CLIP loader reads it like any OpenAI file).
"""
import argparse
import io
import math
import multiprocessing as mp
import os
import os.path as osp
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft.clip import tokenize
from vlpeft.testbed import MODEL_CONFIG, MODEL_NAME, register_model_config
from vlpeft.testbed.world import (BACKGROUNDS, COLOURS, PATTERNS, POSITIONS, SHAPES, SIZES, STYLE_WORDS,
                                  caption, caption_with_negative, random_scene, render)

TEXT_LEN = 32
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def build_model(seed=0, text_layers=None, vision_layers=None):
    """The testbed architecture, initialised from ``seed``; ``text_layers`` / ``vision_layers`` change a tower's
    depth (None: the shipped architecture's)."""
    import json

    import open_clip

    register_model_config()
    with open(MODEL_CONFIG) as f:
        config = json.load(f)
    overrides = {}
    for key, layers in (("text_cfg", text_layers), ("vision_cfg", vision_layers)):
        if layers is not None and layers != config[key]["layers"]:
            overrides[key] = {**config[key], "layers": int(layers)}
    torch.manual_seed(seed)
    return open_clip.create_model(MODEL_NAME, pretrained=None, **overrides)


def world_token_ids(extra_texts=()):
    """Token ids of every word the world's captions and the testbed's class names / templates can contain."""
    words = set(SHAPES) | set(COLOURS) | set(PATTERNS) | set(SIZES) | set(BACKGROUNDS)
    texts = [f"{STYLE_WORDS[s]} a {w} {p} on a {b} background." for s in STYLE_WORDS for w in words
             for p in POSITIONS for b in ["grey"]] + list(extra_texts)
    texts += ["a photo of a.", "a sketch of a.", "a painting of a.", "X X X X X X X X X X X X X X X X."]
    ids = set()
    for i in range(0, len(texts), 512):
        ids.update(tokenize(texts[i:i + 512]).unique().tolist())
    return sorted(ids)


class CompactEmbedding(nn.Module):
    """Token embedding that trains only the rows in ``ids``; other ids map to the padding row (id 0)."""

    def __init__(self, full: nn.Embedding, ids):
        super().__init__()
        ids = torch.tensor(sorted(set(ids) | {0}))
        lookup = torch.zeros(full.num_embeddings, dtype=torch.long)
        lookup[ids] = torch.arange(len(ids))
        self.register_buffer("ids", ids)
        self.register_buffer("lookup", lookup)
        self.weight = nn.Parameter(full.weight.detach()[ids].clone())

    def forward(self, tokens):
        return F.embedding(self.lookup[tokens], self.weight)

    def write_back(self, full: nn.Embedding):
        with torch.no_grad():
            full.weight[self.ids] = self.weight.detach().to(full.weight.dtype)


def _render_one(args):
    scene, seed = args
    return np.asarray(render(scene, 64, seed=seed), dtype=np.uint8)


def render_pool(n, seed, workers=2):
    """``n`` random pretraining scenes and their images (uint8 [n, 64, 64, 3]), rendered in parallel."""
    rng = random.Random(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    jobs = [(s, seed * 1_000_003 + i) for i, s in enumerate(scenes)]
    if workers > 1 and n >= 2000:
        with mp.get_context("fork").Pool(workers) as pool:
            images = pool.map(_render_one, jobs, chunksize=256)
    else:
        images = [_render_one(j) for j in jobs]
    return scenes, np.stack(images)


def encode_text_truncated(model, embedding, tokens):
    """Text features computed on the first positions only, up to the batch's last EOT (at most TEXT_LEN).

    Exact: the text mask is causal, so the features at the EOT token do not depend on the positions after it.
    """
    length = int(tokens.argmax(-1).max()) + 1
    assert length <= TEXT_LEN, "caption longer than TEXT_LEN tokens"
    tokens = tokens[:, :length]
    x = embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection
    return F.normalize(x, dim=-1)


def to_input(images_uint8):
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div_(255)
    return (x - MEAN) / STD


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def openai_state_dict(model, dtype=torch.float16):
    """OpenAI-format state dict (the key names open_clip's CLIP shares with OpenAI's), floats cast to ``dtype``."""
    sd = {}
    for k, v in model.state_dict().items():
        if k == "attn_mask":
            continue
        sd[k] = v.detach().to(dtype) if v.is_floating_point() else v.detach().clone()
    return sd


def save_checkpoint(model, path):
    from vlpeft.engine.utils import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(openai_state_dict(model), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return osp.getsize(path)


def pretrain(steps=2200, batch_size=128, lr=1e-3, weight_decay=0.1, warmup=100, pool_size=60_000, seed=0,
             log_every=50, eval_every=500, eval_fn=None, threads=None, hard_negatives=True, text_layers=None,
             vision_layers=None):
    """Train and return the open_clip model (fp32). ``eval_fn(model)`` is called every ``eval_every`` steps and at the end.

    With ``hard_negatives`` every image also competes against its own caption with one object attribute changed
    (:func:`~vlpeft.testbed.world.caption_with_negative`; mostly the shape). Without them the image tower learns
    colour, size and background but stays near chance on shape: the batch is separable without it.
    """
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    scenes, images = render_pool(pool_size, seed)
    print(f"rendered {pool_size} images in {time.time() - t0:.0f}s", flush=True)
    model = build_model(seed, text_layers, vision_layers)
    embedding = CompactEmbedding(model.token_embedding, world_token_ids())
    model.token_embedding.weight.requires_grad_(False)
    model.train()
    params = param_groups(model, weight_decay) + [{"params": [embedding.weight], "weight_decay": 0.0}]
    optim = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    gen = torch.Generator().manual_seed(seed)
    caption_rng = random.Random(seed)
    token_cache = {}
    t_start = time.time()
    losses = []
    for step in range(steps):
        idx = torch.randperm(pool_size, generator=gen)[:batch_size]
        if hard_negatives:
            pairs = [caption_with_negative(scenes[i], caption_rng) for i in idx.tolist()]
            texts = [p for p, _ in pairs] + [n for _, n in pairs]
        else:
            texts = [caption(scenes[i], caption_rng) for i in idx.tolist()]
        missing = [t for t in set(texts) if t not in token_cache]
        if missing:
            for t, tok in zip(missing, tokenize(missing)):
                token_cache[t] = tok
        tokens = torch.stack([token_cache[t] for t in texts])
        img = F.normalize(model.encode_image(to_input(images[idx.numpy()])), dim=-1)
        txt = encode_text_truncated(model, embedding, tokens)
        logits = model.logit_scale.exp() * img @ txt.t()  # [B, B] or [B, 2B] with the hard negatives
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits[:, :len(idx)].t(), labels)) / 2
        losses.append(loss.item())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % log_every == 0 or step == 0:
            acc = (logits.argmax(-1) == labels).float().mean().item() * 100
            el = time.time() - t_start
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} batch i2t acc {acc:.1f}% "
                  f"scale {model.logit_scale.exp().item():.1f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{el:.0f}s (eta {el / (step + 1) * (steps - step - 1):.0f}s)", flush=True)
        if eval_fn is not None and (step + 1) % eval_every == 0 and step + 1 < steps:
            embedding.write_back(model.token_embedding)
            eval_fn(model)
            model.train()
    embedding.write_back(model.token_embedding)
    model.eval()
    model.pretrain_losses = losses
    if eval_fn is not None:
        eval_fn(model)
    print(f"pretraining took {time.time() - t0:.0f}s", flush=True)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=osp.join("output", "testbed_pretrain", f"{MODEL_NAME}.pt"),
                        help="where to write the checkpoint (default: %(default)s; the shipped one is "
                             "vlpeft/testbed/vlpeft-testbed.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--steps", type=int, default=2200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pool-size", type=int, default=60_000)
    parser.add_argument("--no-hard-negatives", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-layers", type=int, default=None,
                        help="blocks of the text transformer (default: the shipped architecture's 4); the loader "
                             "reads the depths from the checkpoint, so pass the result as MODEL.BACKBONE.PATH")
    parser.add_argument("--vision-layers", type=int, default=None,
                        help="blocks of the vision transformer (default: 4). DsRA and DPD-LoRA need towers of "
                             "equal depth")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    if osp.exists(args.out) and not args.overwrite:
        parser.error(f'"{args.out}" exists; pass --overwrite to replace it, or another --out')
    eval_fn = None
    if not args.no_eval:
        from vlpeft.testbed.datasets import zeroshot_report

        eval_fn = zeroshot_report
    model = pretrain(steps=args.steps, batch_size=args.batch_size, lr=args.lr, pool_size=args.pool_size,
                     seed=args.seed, eval_fn=eval_fn, hard_negatives=not args.no_hard_negatives,
                     text_layers=args.text_layers, vision_layers=args.vision_layers)
    size = save_checkpoint(model, args.out)
    print(f"saved {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
