"""Speed and memory of the trainers against plain CLIP, in one process, with random weights (no download).

    python -m vlpeft.bench --trainer CoOp [--config-file configs/trainers/CoOp/vit_b16_ep50.yaml] [--classes 100]
    python -m vlpeft.bench --all [--prec fp32 fp16 bf16 amp] [--classes 100 1000] [--budget 600] [--out output/bench]
    python -m vlpeft.bench --trainer IVLP --profile            # the per-operator breakdown of one training step

One training step is one ``forward_backward`` at the config's batch size (data loading excluded, the LR schedule
never stepped); evaluation is ``model_inference`` at the config's test batch size, in eval mode (set once, as
``test()`` does, so methods with mergeable edits run on merged weights).

The references, built in the same process from the same random weights:

* **plain CLIP training step**: image features plus the class-prompt text features with gradients flowing into the
  text token embeddings (the work a text-prompt learner cannot avoid), backpropagating through the image tower too
  when the method edits it;
* **the evaluation limit**: plain CLIP's image tower on the test batch against text features encoded once per class
  set, which is all that a method whose text side does not depend on the image needs per batch;
* **the official code's evaluation**: the CoOp-family trainers re-encode every class prompt for every test batch, so
  their evaluation costs the limit plus one text encoding of all classes per batch (estimated here from plain CLIP).

Ratios are time per image, trainer / reference (lower is better). Step memory is measured for each trainer and
reference on its own: on a GPU, the peak allocated during one training step above what was allocated before it
(``torch.cuda.max_memory_allocated``); on the CPU, the tensors one step saves for its backward pass.

``--all`` measures every registered trainer (each in its own process) at every ``--prec`` and ``--classes`` and
writes ``bench.md`` and ``bench.json`` to ``--out``; ``--budget`` fits the run into that many seconds (fewer timed
iterations, then jobs skipped and listed). Half precision needs a GPU: on the CPU only fp32 is measured.

    python -m vlpeft.bench --trainer DsRA \\
        --against PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml

also times the evaluation of a second trainer on the same random CLIP, alternating the two over ``--rounds``
(best round each), and prints the time-per-image ratio of the two.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from tabulate import tabulate

from vlpeft.clip import ImageEncoder, TextEncoder, cast_clip, tokenize
from vlpeft.clip.random_weights import build_random_clip

#: the ViT-B/16 base-to-new recipe of each trainer (as scripts/ runs it), the configuration --all and the GPU check
#: use (zero-shot trainers: CoOp's input pipeline)
BENCH_CONFIGS = {
    "ZeroshotCLIP": "CoOp/vit_b16_ep50.yaml",
    "ZeroshotCLIP2": "CoOp/vit_b16_ep50.yaml",
    "CoOp": "CoOp/vit_b16_ep50_ctxv1.yaml",
    "IVLP": "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1.yaml",
    "ProGrad": "ProGrad/vit_b16_ep100.yaml",
    "DsRA": "DsRA/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "DIP": "DIP/vit_b16_ep20_ctxv1.yaml",
    "DIPMaPLe": "DIPMaPLe/vit_b16_c2_ep5_batch4_4ctx.yaml",
    "DPC": "DPC/coop_vit_b16_ep20_bs4_top8.yaml",  # P = the base's init (no backbone run); random negative images
    "DPLSearch": "DPLSearch/vit_b16_fewshot.yaml",  # α steps on the training batch (no val split here)
    "DPL": "DPL/vit_b16_fewshot.yaml",  # 4 K/V prompt tokens in every block (BENCH_OPTS)
    "DPDLoRA": "DPDLoRA/vit_b16_c2_ep20_batch4_2ctx.yaml",  # stage 2: the student and the frozen teacher
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",  # last: its text side runs per image (slowest)
}
# options a trainer's benchmark config needs besides its recipe (what a run takes from an earlier stage)
BENCH_OPTS = {"DPL": ("TRAINER.DPL.LENGTHS_TEXT", "[4]", "TRAINER.DPL.LENGTHS_VISION", "[4]")}
ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")
PRECISIONS = ("fp32", "fp16", "bf16", "amp")


def bench_config_file(trainer):
    from vlpeft.resources import packaged_config

    if trainer not in BENCH_CONFIGS:
        raise KeyError(f'no benchmark config for trainer "{trainer}": add its ViT-B/16 recipe to BENCH_CONFIGS')
    return packaged_config("trainers", BENCH_CONFIGS[trainer])


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


def step_memory(device, fn, resident=()):
    """Memory of one training step ``fn()`` beyond what exists before it. On a GPU: the peak allocated during the step
    above what was allocated when it started. On the CPU (which keeps no allocation statistics): the bytes of the
    tensors saved for the backward pass (the activations, the bulk of a step's memory), not counting the storages of
    ``resident`` tensors (weights, inputs)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    known = {t.untyped_storage().data_ptr() for t in resident}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in known:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(saved.values())


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
    trainer = Bench(cfg)
    if hasattr(trainer, "bench_setup"):  # e.g. DPD-LoRA's frozen stage-1 teacher, which a stage-2 step runs
        trainer.bench_setup()
    if hasattr(trainer, "pool"):  # DPC: its negative images, served at once (python -m vlpeft.bench_dpc times them)
        trainer.pool = RandomImages(len(classnames), tuple(cfg.INPUT.SIZE))
    return trainer


class RandomImages:
    """A stand-in negative-image pool (DPC): one random image per request, ready at once."""

    def __init__(self, n_classes, size):
        self.paths = {c: [f"random-{c}"] for c in range(n_classes)}
        self.size = size

    def request(self, requests):
        images = [torch.randn(3, *self.size) for _ in requests]
        return SimpleNamespace(result=lambda: images)


def plain_clip_steps(clip_model, classnames, device, vision_grad=False):
    """Plain-CLIP reference steps: (forward+backward, evaluation limit, text encoding) closures.

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

    @torch.no_grad()
    def encode_text():
        return text_encoder(base_embeddings, tokens)

    return train_step, eval_step, encode_text


def profile_step(fn, title, rows=15):
    """Print the per-operator breakdown (self time) of one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    fn()  # warm-up
    with profile(activities=activities) as prof:
        fn()
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(f"\n{title}\n{prof.key_averages().table(sort_by=sort, row_limit=rows)}")


def _mib(n_bytes):
    return n_bytes / 2**20


def run(cfg, n_classes=100, iters=5, warmup=2, seed=0, clip_builder=build_random_clip, against=None, rounds=3,
        profile=False, quiet=False, seconds=None):
    """Measure (and print unless ``quiet``); returns the numbers as a dict. ``clip_builder(name, seed=...)`` makes the
    random-weight CLIP (ViT-B/16 shapes by default); ``against``: the config of a second trainer whose evaluation is
    timed against this one's; ``seconds``: fewer timed iterations when ``iters`` would not fit (at least one)."""
    say = (lambda *a, **k: None) if quiet else print
    torch.manual_seed(seed)
    classnames = [f"class {i}" for i in range(n_classes)]
    trainer = build_bench_trainer(cfg, classnames, seed=seed, clip_builder=clip_builder)
    device = trainer.device
    name = cfg.TRAINER.NAME
    trains = name not in ZERO_SHOT
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

    if seconds is not None:  # one untimed step estimates the cost; an iteration times four such things
        start = time.perf_counter()
        if trains:
            trainer.set_model_mode("train")
            trainer_train()
        else:
            trainer.set_model_mode("eval")
            evaluate(trainer)
        step = time.perf_counter() - start
        iters = max(1, min(iters, int(seconds / (6 * step + 1e-9)) - warmup))

    plain = cast_clip(clip_builder(cfg.MODEL.BACKBONE.NAME, seed=seed), trainer_dtype(trainer)).to(device)
    surgery = getattr(trainer.model, "surgery", None)
    vision_grad = surgery is not None and "vision" in surgery.edited_towers
    plain_train, plain_eval, plain_text = plain_clip_steps(plain, classnames, device, vision_grad)

    result = {"trainer": name, "prec": trainer.prec, "classes": n_classes, "device": _device_name(device),
              "trainable": n_trainable, "train_batch": bs_train, "test_batch": bs_test}
    if trains:
        trainer.set_model_mode("train")
        t_train = _timeit(trainer_train, device, iters, warmup)
        p_train = _timeit(lambda: plain_train(x_train, y_train), device, iters, warmup)
        trainer.set_model_mode("train")
        resident = [*trainer.model.parameters(), *trainer.model.buffers(), *plain.parameters(), *plain.buffers(),
                    x_train, y_train]
        m_train = step_memory(device, trainer_train, resident)
        m_plain = step_memory(device, lambda: plain_train(x_train, y_train), resident)
        result.update(train_img_s=bs_train / t_train, train_ratio=t_train / p_train,
                      train_step_mib=_mib(m_train), plain_train_step_mib=_mib(m_plain),
                      plain_train_img_s=bs_train / p_train)
    trainer.set_model_mode("eval")
    merged = getattr(surgery, "merged", False)
    t_eval = _timeit(lambda: evaluate(trainer), device, iters, warmup)
    p_eval = _timeit(lambda: plain_eval(x_test), device, iters, warmup)
    p_text = _timeit(plain_text, device, max(1, iters // 2), 1)
    result.update(eval_img_s=bs_test / t_eval, eval_ratio=t_eval / p_eval, merged=merged,
                  plain_eval_img_s=bs_test / p_eval, text_encoding_s=p_text,
                  official_eval_speedup=(p_eval + p_text) / t_eval)

    say(f"device: {result['device']}, backbone {cfg.MODEL.BACKBONE.NAME} (random weights), {n_classes} classes, "
        f"PREC {trainer.prec}, train batch {bs_train}, test batch {bs_test}, {iters} timed iterations; plain CLIP "
        f"backward through {'both towers' if vision_grad else 'the text tower'}")
    rows = [[name, f"{n_trainable:,}", f"{result['train_img_s']:,.1f}" if trains else "-",
             f"{result['eval_img_s']:,.1f}", f"{result['train_step_mib']:,.0f}" if trains else "-"],
            ["plain CLIP", "-", f"{result['plain_train_img_s']:,.1f}" if trains else "-",
             f"{result['plain_eval_img_s']:,.1f}", f"{result['plain_train_step_mib']:,.0f}" if trains else "-"]]
    say(tabulate(rows, headers=["model", "trainable", "train img/s", "eval img/s", "train step MiB"]))
    if trains:
        say(f"train: {result['train_ratio']:.2f}x plain CLIP's time per image")
    say(f"eval: {result['eval_ratio']:.2f}x the limit (image tower + text encoded once per class set)"
        f"{' on merged weights' if merged else ''}; {result['official_eval_speedup']:.2f}x faster than "
        f"re-encoding the {n_classes} class prompts per batch as the official code does "
        f"(one text encoding: {p_text:.3f} s)")
    if profile:
        if trains:
            trainer.set_model_mode("train")
            profile_step(trainer_train, f"{name}: one training step")
            profile_step(lambda: plain_train(x_train, y_train), "plain CLIP: one training step")
        trainer.set_model_mode("eval")
        profile_step(lambda: evaluate(trainer), f"{name}: one evaluation batch")
    if against is not None:
        other = build_bench_trainer(against, classnames, seed=seed, clip_builder=clip_builder)
        other.set_model_mode("eval")
        trainer.set_model_mode("eval")
        pairs = [[_timeit(lambda: evaluate(t), device, iters, warmup) for t in (trainer, other)]
                 for _ in range(rounds)]
        mine, theirs = (min(column) for column in zip(*pairs))
        say(f"eval, best of {rounds} alternating rounds: {name} {bs_test / mine:,.1f} img/s, "
            f"{against.TRAINER.NAME} {bs_test / theirs:,.1f} img/s; time per image {name} / "
            f"{against.TRAINER.NAME} = {mine / theirs:.3f}")
        result["eval_vs_against"] = mine / theirs
    return result


def _device_name(device):
    return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"


def trainer_dtype(trainer):
    from vlpeft.trainers.base import PREC_DTYPES

    return PREC_DTYPES[trainer.prec]


def tiny_clip(name, seed=0):
    """The tiny random CLIP of the test suite (32x32 images): ``--tiny`` checks the benchmark's plumbing in seconds."""
    from vlpeft.clip import build_clip_from_state_dict
    from vlpeft.clip.random_weights import tiny_openai_state_dict

    return build_clip_from_state_dict(tiny_openai_state_dict(seed=seed))


def bench_cfg(trainer, config_file="", prec=None, opts=(), tiny=False, batch_size=None, test_batch_size=None):
    """The resolved config of ``trainer`` for benchmarking (ViT-B/16 unless the config names a backbone)."""
    from vlpeft.cli import build_parser, setup_cfg

    config_file = config_file or bench_config_file(trainer)
    opts = [*BENCH_OPTS.get(trainer, ()), *opts]
    cfg = setup_cfg(build_parser().parse_args(["--trainer", trainer, "--config-file", config_file, *opts]))
    cfg.defrost()
    if not cfg.MODEL.BACKBONE.NAME:
        cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
    if tiny:  # 2 blocks per tower: deeper prompts are cut to 2
        cfg.MODEL.BACKBONE.NAME, cfg.INPUT.SIZE = "tiny", (32, 32)
        node = cfg.TRAINER[_config_node(trainer)]
        for key in node:
            if "DEPTH" in key and isinstance(node[key], int):
                node[key] = min(node[key], 2)
    if batch_size:
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch_size
    if test_batch_size:
        cfg.DATALOADER.TEST.BATCH_SIZE = test_batch_size
    if prec is not None:
        cfg.TRAINER[_config_node(trainer)].PREC = prec
    cfg.freeze()
    return cfg


def _config_node(trainer):
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY

    return TRAINER_REGISTRY.get(trainer).CONFIG_NODE


# ---------------------------------------------------------------------------------------------------- --all

def _jobs(trainers, precs, classes, device):
    jobs = []
    for trainer in trainers:
        for prec in precs:
            if device == "cpu" and prec != "fp32":
                continue
            for n in classes:
                jobs.append((trainer, prec, n))
    return jobs


def run_all(trainers=None, precs=("fp32",), classes=(100,), iters=5, warmup=1, budget=None, out="output/bench",
            opts=(), flags=()):
    """Every trainer x precision x class count, each in its own process; writes ``bench.md`` / ``bench.json``."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY
    from vlpeft.engine.utils import atomic_write_text

    registered = TRAINER_REGISTRY.registered_names()
    trainers = list(trainers or [t for t in BENCH_CONFIGS if t in registered] +
                    [t for t in registered if t not in BENCH_CONFIGS])
    missing = [t for t in trainers if t not in BENCH_CONFIGS]
    if missing:
        raise KeyError(f"no benchmark config for {missing}: add their ViT-B/16 recipes to vlpeft.bench.BENCH_CONFIGS")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = _jobs(trainers, precs, classes, device)
    start = time.time()
    results, skipped = [], []
    for i, (trainer, prec, n) in enumerate(jobs):
        left = None if budget is None else budget - (time.time() - start)
        if left is not None and left <= 0:
            skipped.extend(f"{t} {p} {c} classes" for t, p, c in jobs[i:])
            break
        share = None if left is None else left / (len(jobs) - i)
        record = _run_job(trainer, prec, n, iters, warmup, share, opts, flags)
        results.append(record)
        status = record.get("error") or ", ".join(
            ([f"train {record['train_ratio']:.2f}x plain CLIP"] if "train_ratio" in record else [])
            + [f"eval {record['eval_ratio']:.2f}x the limit"])
        print(f"[{i + 1}/{len(jobs)}] {trainer} {prec} {n} classes: {status} ({time.time() - start:.0f} s)",
              flush=True)
    if device == "cpu" and any(p != "fp32" for p in precs):
        skipped.append("half precision (fp16 / bf16 / amp): needs a GPU")
    report = all_report(results, skipped, time.time() - start)
    print(report)
    os.makedirs(out, exist_ok=True)
    atomic_write_text(osp.join(out, "bench.md"), report + "\n")
    atomic_write_text(osp.join(out, "bench.json"),
                      json.dumps({"results": results, "skipped": skipped}, indent=1) + "\n")
    print(f"written: {osp.join(out, 'bench.md')}, {osp.join(out, 'bench.json')}")
    return results, skipped


def _run_job(trainer, prec, n_classes, iters, warmup, seconds, opts, flags=()):
    """One measurement in a fresh process (its memory and timings are its own); an error is recorded, not raised."""
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "vlpeft.bench", "--trainer", trainer, "--prec", prec, "--classes",
               str(n_classes), "--iters", str(iters), "--warmup", str(warmup), "--json", path]
        if seconds is not None:
            cmd += ["--seconds", f"{seconds:.1f}"]
        limit = None if seconds is None else 2 * seconds + 60  # a job that overruns its share is stopped
        try:
            proc = subprocess.run(cmd + list(flags) + list(opts), capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"trainer": trainer, "prec": prec, "classes": n_classes,
                    "error": f"stopped after {limit:.0f} s (its share of --budget was {seconds:.0f} s)"}
        if proc.returncode != 0 or not osp.isfile(path):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"trainer": trainer, "prec": prec, "classes": n_classes, "error": tail[0]}
        with open(path) as f:
            return json.load(f)


def all_report(results, skipped, elapsed):
    header = ["trainer", "prec", "classes", "trainable", "train img/s", "train x plain", "train step MiB",
              "eval img/s", "eval x limit", "vs official eval"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["trainer"], r["prec"], r["classes"], "error: " + r["error"]] + [""] * 6)
            continue
        trains = "train_img_s" in r
        rows.append([r["trainer"], r["prec"], r["classes"], f"{r['trainable']:,}",
                     f"{r['train_img_s']:.2f}" if trains else "-", f"{r['train_ratio']:.2f}" if trains else "-",
                     f"{r['train_step_mib']:,.0f}" if trains else "-", f"{r['eval_img_s']:.1f}",
                     f"{r['eval_ratio']:.2f}", f"{r['official_eval_speedup']:.2f}x"])
    device = next((r["device"] for r in results if "device" in r), "?")
    lines = [f"# vlpeft speed benchmark ({device}, random ViT-B/16 weights, {elapsed:.0f} s)", "",
             tabulate(rows, headers=header, tablefmt="github"), "",
             "train x plain: time per image against plain CLIP's forward + backward; eval x limit: against the image "
             "tower with text features encoded once per class set; vs official eval: speed-up over re-encoding every "
             "class prompt per test batch (the official code's evaluation). Step memory: " + (
                 "peak allocated during one training step above what was allocated before it." if device != "cpu"
                 else "the tensors one training step saves for its backward pass (the CPU keeps no allocation "
                      "statistics).")]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- command line

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", help="one trainer to measure")
    parser.add_argument("--config-file", default="", help="default: the trainer's ViT-B/16 base-to-new recipe")
    parser.add_argument("--all", action="store_true", help="every registered trainer (or those of --trainers)")
    parser.add_argument("--trainers", nargs="+", help="with --all: only these")
    parser.add_argument("--prec", nargs="+", default=None, choices=PRECISIONS,
                        help="precision(s) (default: the config's; with --all: fp32)")
    parser.add_argument("--classes", type=int, nargs="+", default=[100], help="number(s) of classes (text prompts)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget", type=float, help="with --all: seconds for the whole run")
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)  # a job's share of --budget
    parser.add_argument("--out", default="output/bench", help="with --all: where bench.md / bench.json go")
    parser.add_argument("--json", help="write the numbers of this measurement to this file")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the config's)")
    parser.add_argument("--test-batch-size", type=int, help="evaluation batch (default: the config's)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny CLIP (checks the plumbing)")
    parser.add_argument("--profile", action="store_true", help="print the per-operator breakdown of one step")
    parser.add_argument("--against", nargs=2, metavar=("TRAINER", "CONFIG_FILE"),
                        help="also time this trainer's evaluation (same overrides) against the first one's")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for --against")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (KEY VALUE ...)")
    args = parser.parse_args(argv)
    flags = (["--tiny"] if args.tiny else []) + [
        x for flag, value in (("--batch-size", args.batch_size), ("--test-batch-size", args.test_batch_size))
        if value for x in (flag, str(value))]
    if args.all:
        return run_all(args.trainers, args.prec or ["fp32"], args.classes, args.iters, min(args.warmup, 1),
                       args.budget, args.out, args.opts, flags)
    if not args.trainer:
        parser.error("--trainer or --all is required")
    result = None
    sizes = dict(tiny=args.tiny, batch_size=args.batch_size, test_batch_size=args.test_batch_size)
    clip_builder = tiny_clip if args.tiny else build_random_clip
    for prec in args.prec or [None]:
        for n in args.classes:
            cfg = bench_cfg(args.trainer, args.config_file, prec, args.opts, **sizes)
            against = bench_cfg(args.against[0], args.against[1], prec, args.opts, **sizes) if args.against else None
            result = run(cfg, n_classes=n, iters=args.iters, warmup=args.warmup, against=against, rounds=args.rounds,
                         profile=args.profile, clip_builder=clip_builder, seconds=args.seconds)
    if args.json and result is not None:
        from vlpeft.engine.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
