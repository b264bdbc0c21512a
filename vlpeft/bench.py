"""Throughput and memory of a trainer against plain CLIP, in one process, with random weights (no download).

    python -m vlpeft.bench --trainer CoOp --config-file configs/trainers/CoOp/vit_b16_ep50.yaml [--classes 100]

Prints trainable parameters, training images/s at the config's batch size (one ``forward_backward`` step, data
loading excluded), evaluation images/s (``model_inference`` at the test batch size), peak memory, and the same
for plain CLIP: forward+backward = image features + the class-prompt text features with gradients flowing into the
text token embeddings (the work a text-prompt learner cannot avoid), forward = image features against cached text
features. Ratios are trainer / plain CLIP in time per image (lower is better; 1.00 = the cost of plain CLIP).
Evaluation runs as in ``test()``: the trainer is switched to eval mode once, so methods with mergeable edits
(adapters, low-rank deltas) are timed on merged weights.

    python -m vlpeft.bench --trainer DsRA --config-file configs/trainers/DsRA/vit_b16_c2_ep20_batch4_4+4ctx.yaml \
        --against PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml

also times the evaluation of a second trainer on the same random CLIP, alternating the two over ``--rounds``
(best round each), and prints the time-per-image ratio of the two.
"""
import argparse
import resource
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from tabulate import tabulate

from vlpeft.clip import ImageEncoder, TextEncoder, cast_clip, tokenize
from vlpeft.clip.random_weights import build_random_clip


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, device, iters, warmup):
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _peak_memory(device, fn):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
    fn()
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (process max RSS)"


def build_bench_trainer(cfg, classnames, seed=0, clip_builder=build_random_clip):
    """The registered trainer with random-weight CLIP and a stand-in data manager holding only class names."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY

    base = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)

    class Bench(base):
        clip_loader = staticmethod(lambda name, path: clip_builder(name, seed=seed))

        def build_data_loader(self):
            self.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=classnames))
            self.train_loader_x = self.train_loader_u = self.val_loader = self.test_loader = None
            self.num_classes = len(classnames)
            self.num_source_domains = 1
            self.lab2cname = dict(enumerate(classnames))

    Bench.__name__ = base.__name__
    return Bench(cfg)


def plain_clip_steps(clip_model, classnames, device, vision_grad=False):
    """Plain-CLIP reference steps: (forward+backward, forward) closures taking an image batch.

    ``vision_grad``: the backward also runs through the image tower (down to its input), as it must for a method
    with vision-side trainable tensors (deep vision prompts, adapters); otherwise only through the text tower."""
    for p in clip_model.parameters():
        p.requires_grad_(False)
    image_encoder = ImageEncoder(clip_model)
    text_encoder = TextEncoder(clip_model)
    tokens = tokenize([f"a photo of a {c}." for c in classnames]).to(device)
    with torch.no_grad():
        base_embeddings = clip_model.token_embedding(tokens).float()
        cached = text_encoder(base_embeddings, tokens).float()
        cached = cached / cached.norm(dim=-1, keepdim=True)
    scale = clip_model.logit_scale.exp().float()

    def train_step(images, labels):
        embeddings = base_embeddings.clone().requires_grad_(True)
        with torch.set_grad_enabled(vision_grad):
            img = image_encoder(images.clone().requires_grad_(vision_grad)).float()
        img = img / img.norm(dim=-1, keepdim=True)
        txt = text_encoder(embeddings, tokens).float()
        txt = txt / txt.norm(dim=-1, keepdim=True)
        loss = F.cross_entropy(scale * img @ txt.t(), labels)
        loss.backward()

    @torch.no_grad()
    def eval_step(images):
        img = image_encoder(images).float()
        img = img / img.norm(dim=-1, keepdim=True)
        return scale * img @ cached.t()

    return train_step, eval_step


def run(cfg, n_classes=100, iters=5, warmup=2, seed=0, clip_builder=build_random_clip, against=None, rounds=3):
    """Measure and print; ``clip_builder(name, seed=...)`` makes the random-weight CLIP (ViT-B/16 shapes by default);
    ``against``: the config of a second trainer whose evaluation is timed against this one's."""
    torch.manual_seed(seed)
    classnames = [f"class {i}" for i in range(n_classes)]
    trainer = build_bench_trainer(cfg, classnames, seed=seed, clip_builder=clip_builder)
    device = trainer.device
    size = tuple(cfg.INPUT.SIZE)
    bs_train, bs_test = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE
    x_train = torch.randn(bs_train, 3, *size, device=device)
    y_train = torch.randint(0, n_classes, (bs_train,), device=device)
    x_test = torch.randn(bs_test, 3, *size, device=device)
    batch = {"img": x_train, "label": y_train, "domain": torch.zeros_like(y_train)}

    n_trainable = sum(p.numel() for n in trainer.get_model_names() for p in trainer._models[n].parameters()
                      if p.requires_grad)

    def trainer_train():
        trainer.batch_idx, trainer.num_batches = 0, 10**9  # never step the LR schedule here
        trainer.forward_backward(batch)

    def evaluate(t):
        with torch.no_grad():
            t.model_inference(x_test)

    plain = cast_clip(clip_builder(cfg.MODEL.BACKBONE.NAME, seed=seed), trainer_dtype(trainer)).to(device)
    surgery = getattr(trainer.model, "surgery", None)
    vision_grad = surgery is not None and "vision" in surgery.edited_towers
    plain_train, plain_eval = plain_clip_steps(plain, classnames, device, vision_grad)

    rows = []
    trainer.set_model_mode("train")
    t_train = _timeit(trainer_train, device, iters, warmup)
    trainer.set_model_mode("eval")
    merged = getattr(surgery, "merged", False)
    t_eval = _timeit(lambda: evaluate(trainer), device, iters, warmup)
    p_train = _timeit(lambda: plain_train(x_train, y_train), device, iters, warmup)
    p_eval = _timeit(lambda: plain_eval(x_test), device, iters, warmup)
    trainer.set_model_mode("train")
    m_train = _peak_memory(device, trainer_train)
    m_plain = _peak_memory(device, lambda: plain_train(x_train, y_train))
    rows.append([cfg.TRAINER.NAME, f"{n_trainable:,}", f"{bs_train / t_train:,.1f}", f"{bs_test / t_eval:,.1f}", m_train])
    rows.append(["plain CLIP", "-", f"{bs_train / p_train:,.1f}", f"{bs_test / p_eval:,.1f}", m_plain])
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
          f"backbone {cfg.MODEL.BACKBONE.NAME} (random weights), {n_classes} classes, PREC {trainer.prec}, "
          f"train batch {bs_train}, test batch {bs_test}, {iters} timed iterations; plain CLIP backward through "
          f"{'both towers' if vision_grad else 'the text tower'}")
    print(tabulate(rows, headers=["model", "trainable", "train img/s", "eval img/s", "peak memory (train)"]))
    print(f"ratio (time per image, trainer / plain CLIP): train {t_train / p_train:.2f}x, eval {t_eval / p_eval:.2f}x"
          f"{' (evaluated on merged weights)' if merged else ''}")
    result = {"train_ratio": t_train / p_train, "eval_ratio": t_eval / p_eval, "trainable": n_trainable,
              "train_img_s": bs_train / t_train, "eval_img_s": bs_test / t_eval, "merged": merged}
    if against is not None:
        other = build_bench_trainer(against, classnames, seed=seed, clip_builder=clip_builder)
        other.set_model_mode("eval")
        trainer.set_model_mode("eval")
        pairs = [[_timeit(lambda: evaluate(t), device, iters, warmup) for t in (trainer, other)]
                 for _ in range(rounds)]
        mine, theirs = (min(column) for column in zip(*pairs))
        print(f"eval, best of {rounds} alternating rounds: {cfg.TRAINER.NAME} {bs_test / mine:,.1f} img/s, "
              f"{against.TRAINER.NAME} {bs_test / theirs:,.1f} img/s; time per image {cfg.TRAINER.NAME} / "
              f"{against.TRAINER.NAME} = {mine / theirs:.3f}")
        result["eval_vs_against"] = mine / theirs
    return result


def trainer_dtype(trainer):
    from vlpeft.trainers.base import PREC_DTYPES

    return PREC_DTYPES[trainer.prec]


def main(argv=None):
    from vlpeft.cli import build_parser, setup_cfg

    parser = argparse.ArgumentParser(prog="python -m vlpeft.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", required=True)
    parser.add_argument("--config-file", default="")
    parser.add_argument("--classes", type=int, default=100, help="number of classes (text prompts)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--against", nargs=2, metavar=("TRAINER", "CONFIG_FILE"),
                        help="also time this trainer's evaluation (same overrides) against the first one's")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for --against")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (KEY VALUE ...)")
    args = parser.parse_args(argv)

    def config(trainer, config_file):
        cfg = setup_cfg(build_parser().parse_args(["--trainer", trainer, "--config-file", config_file, *args.opts]))
        cfg.defrost()
        if not cfg.MODEL.BACKBONE.NAME:
            cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
        cfg.freeze()
        return cfg

    against = config(*args.against) if args.against else None
    return run(config(args.trainer, args.config_file), n_classes=args.classes, iters=args.iters, warmup=args.warmup,
               against=against, rounds=args.rounds)


if __name__ == "__main__":
    main()
