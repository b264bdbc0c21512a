"""GPU check of every registered trainer: half-precision training steps, half vs fp32 logits, merged vs unmerged.

    python -m vlpeft.gpucheck [--out DIR] [--trainers CoOp DsRA ...] [--steps 50] [--prec fp16]
                              [--device cuda|cpu] [--budget SECONDS] [--tiny] [--seed 0]

For each trainer (the registered vlpeft trainers, in the order of ``CONFIGS``), with random ViT-B/16 weights (no
download; ``--tiny``: the tiny random CLIP at 32x32, for the CPU test suite), its ViT-B/16 base-to-new config
(``CONFIGS``) and ``TRAINER.<X>.PREC`` set to ``--prec``, on 10 classes and random images:

1. training: ``--steps`` calls of ``forward_backward`` at the config's batch size (the LR schedule is not stepped);
   every loss must be finite.
2. half vs fp32: the trainer built again with the same seed at PREC fp32, the trained tensors copied in; evaluation
   mode, the same images: max abs difference of the logits, its size relative to the largest fp32 logit, top-1
   agreement. Pass: top-1 agreement >= 99%.
3. merged vs unmerged (trainers whose model has surgery weight edits: adapters, low-rank deltas), in fp32, the
   trainable tensors perturbed so zero-initialised factors are non-zero: logits on merged weights (eval mode) vs the
   on-the-fly edits (``surgery.unmerge()``). Pass: max abs difference <= 1e-4 x the logit scale.

Zero-shot trainers (nothing to train) get check 2 only. A trainer that raises is recorded as FAIL with the exception
and the run goes on. ``--budget``: no further trainer is started once the time spent plus the expected time of the
next one would exceed it; those not run are listed as skipped. Writes ``DIR/report.md`` and ``DIR/report.json``
(atomically) and ``DIR/gpucheck.log`` (the trainers' own output, tracebacks); exit code 1 if any trainer failed.

On a machine without a GPU, half precision falls back to fp32 (``resolve_precision``): the report then says that
the half-precision checks did not run at half precision.

``--finish`` (used by ``scripts/gpu_check.sh`` after ``python -m vlpeft.bench``) only rewrites the report, adding the
speed benchmark's ``DIR/bench/bench.md`` and the exit codes of both steps.
"""
import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import os
import os.path as osp
import platform
import sys
import time
import traceback

import torch
from tabulate import tabulate

from vlpeft.bench import BENCH_CONFIGS
from vlpeft.engine.utils import atomic_write_text

# Each registered trainer's ViT-B/16 base-to-new config (the default of its scripts/<trainer>/ base2new protocol).
# Zero-shot trainers use CoOp's config (their scripts' choice). A new trainer must be added here: the check refuses to
# start while a registered vlpeft trainer has no entry.
CONFIGS = BENCH_CONFIGS  # each trainer's ViT-B/16 base-to-new recipe: one table, shared with the speed benchmark
N_CLASSES = 10
N_EVAL = 100  # evaluation images (check 2 and 3)
TOP1_MIN = 99.0  # percent, check 2
MERGE_TOL = 1e-4  # max abs logit difference / logit scale, check 3
PERTURB_STD = 0.02  # check 3: noise added to the trainable tensors
RESULT_PASS, RESULT_FAIL, RESULT_SKIP = "PASS", "FAIL", "SKIPPED"
TINY_LAYERS = 2  # --tiny: blocks per tower of the tiny CLIP; vlpeft.bench.bench_cfg caps the prompt depths at it


# ------------------------------------------------------------------------------------------------ trainers and models
def registered_trainers():
    """Name -> class of every registered trainer defined by vlpeft (a host repository's trainers are not checked)."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY

    names = TRAINER_REGISTRY.registered_names()
    classes = {name: TRAINER_REGISTRY.get(name) for name in names}
    return {name: cls for name, cls in classes.items() if cls.__module__.startswith("vlpeft.")}


def check_configs_cover(trainers):
    """Raise if a registered vlpeft trainer has no config in ``CONFIGS`` (so a new trainer is not silently left out)."""
    missing = sorted(set(trainers) - set(CONFIGS))
    if missing:
        raise SystemExit(f"vlpeft.gpucheck: registered trainer(s) {', '.join(missing)} have no entry in "
                         "vlpeft.bench.BENCH_CONFIGS; add each one's ViT-B/16 base-to-new config there")


def is_learnable(cls):
    """The rule train.py uses: zero-shot trainers learn nothing (only the inference checks apply to them)."""
    return getattr(cls, "LEARNABLE", not cls.__name__.startswith("Zeroshot"))


class CachedClipBuilder:
    """``clip_builder(name, seed=...)`` for ``build_bench_trainer``: builds the random CLIP once per (name, seed) and
    hands out deep copies (a ViT-B/16 takes seconds to draw; every trainer needs two)."""

    def __init__(self, tiny=False):
        self.tiny = tiny
        self._cache = {}

    def make(self, name, seed):
        if self.tiny:
            from vlpeft.clip import build_clip_from_state_dict
            from vlpeft.clip.random_weights import tiny_openai_state_dict

            return build_clip_from_state_dict(tiny_openai_state_dict(seed=seed))
        from vlpeft.clip.random_weights import build_random_clip

        return build_random_clip(name, seed=seed)

    def __call__(self, name, seed=0):
        key = (name, seed)
        if key not in self._cache:
            self._cache[key] = self.make(name, seed)
        return copy.deepcopy(self._cache[key])


def build_cfg(name, trainer_cls, prec, device, tiny):
    """The benchmark's config of the trainer (:func:`vlpeft.bench.bench_cfg`) at ``prec`` on ``device``."""
    from vlpeft.bench import bench_cfg

    return bench_cfg(name, prec=prec, opts=["USE_CUDA", str(device == "cuda")], tiny=tiny)


def build_trainer(name, trainer_cls, prec, ctx):
    from vlpeft.bench import build_bench_trainer

    cfg = build_cfg(name, trainer_cls, prec, ctx.device, ctx.tiny)
    torch.manual_seed(ctx.seed)  # the same learnable initialisation for every build of this trainer
    classnames = [f"class {i}" for i in range(N_CLASSES)]
    return build_bench_trainer(cfg, classnames, seed=ctx.seed, clip_builder=ctx.clip_builder)


def _generator(device, seed):
    return torch.Generator(device=device).manual_seed(seed)


def random_batch(n, size, device, generator):
    images = torch.randn(n, 3, *size, device=device, generator=generator)
    labels = torch.randint(0, N_CLASSES, (n,), device=device, generator=generator)
    return images, labels


def _loss_values(summary):
    """The loss entries of a ``forward_backward`` summary ("loss", or ProGrad's "xe_loss" / "kl_loss"), the main one
    first."""
    keys = [k for k in summary if "loss" in k]
    keys.sort(key=lambda k: (k != "loss", k != "xe_loss", k))
    return [(k, float(summary[k])) for k in keys]


def _trainable_tensors(trainer):
    return [p for name in trainer.get_model_names() for p in trainer._models[name].parameters() if p.requires_grad]


@torch.no_grad()
def _logits(trainer, images):
    return trainer.model_inference(images).float()


# ------------------------------------------------------------------------------------------------ the three checks
def check_training(trainer, row, steps, device, seed):
    """Check 1: ``steps`` training steps on random batches; records first / last loss and whether all were finite."""
    cfg = trainer.cfg
    bs = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    generator = _generator(device, seed + 1)
    trainer.set_model_mode("train")
    row["batch"] = bs
    losses_finite = True
    for step in range(steps):
        images, labels = random_batch(bs, tuple(cfg.INPUT.SIZE), device, generator)
        trainer.batch_idx, trainer.num_batches = 0, 10**9  # never at an epoch end: the LR schedule does not step
        try:
            summary = trainer.forward_backward({"img": images, "label": labels, "domain": torch.zeros_like(labels)})
        except FloatingPointError as error:  # vlpeft's NaN/inf check in the update
            row["steps"] = step
            row["losses_finite"] = False
            row["loss_error"] = str(error)
            return
        values = _loss_values(summary)
        if not values:
            raise RuntimeError(f"forward_backward returned no loss: {summary}")
        row["loss_key"] = values[0][0]
        if row["first_loss"] is None:
            row["first_loss"] = values[0][1]
        row["last_loss"] = values[0][1]
        row["steps"] = step + 1
        if not all(math.isfinite(v) for _, v in values):
            losses_finite = False
            row["loss_error"] = f"step {step + 1}: " + ", ".join(f"{k} {v}" for k, v in values)
            break
    row["losses_finite"] = losses_finite


def check_half_vs_fp32(half, full, row, images):
    """Check 2: the same trainer at the requested precision and at fp32, the same trainable tensors (copied from the
    trained one), evaluation mode, the same images."""
    for name in half.get_model_names():
        full._models[name].load_state_dict(half._models[name].state_dict())
    half.set_model_mode("eval")
    full.set_model_mode("eval")
    a, b = _logits(half, images), _logits(full, images)
    diff = (a - b).abs().max().item()
    row["half_max_diff"] = diff
    row["half_rel_diff"] = diff / max(b.abs().max().item(), 1e-12)
    row["top1_agreement"] = 100.0 * (a.argmax(dim=1) == b.argmax(dim=1)).float().mean().item()


def check_merge(full, row, images, seed):
    """Check 3 (fp32): logits on merged weights (eval mode) vs on-the-fly edits (``surgery.unmerge()``), after a
    perturbation of the trainable tensors (zero-initialised factors would make the edits vanish)."""
    surgery = getattr(full.model, "surgery", None)
    if surgery is None or not surgery.has_weight_edits:
        row["merge_max_diff"] = row["merge_rel_diff"] = "n/a"
        return
    generator = torch.Generator().manual_seed(seed + 3)
    with torch.no_grad():
        for p in _trainable_tensors(full):
            p.add_((PERTURB_STD * torch.randn(p.shape, generator=generator)).to(p.device, p.dtype))
    full.set_model_mode("eval")  # re-merged from the perturbed tensors
    if not surgery.merged:
        raise RuntimeError("set_model_mode('eval') did not merge the surgery weight edits")
    merged = _logits(full, images)
    surgery.unmerge()
    unmerged = _logits(full, images)
    scale = getattr(full.model, "logit_scale", None)
    scale = scale.exp().float().item() if scale is not None else unmerged.abs().max().item()
    diff = (merged - unmerged).abs().max().item()
    row["merge_max_diff"] = diff
    row["merge_rel_diff"] = diff / scale


# ------------------------------------------------------------------------------------------------ one trainer
def new_row(name):
    return {"trainer": name, "config": BENCH_CONFIGS.get(name), "learnable": None, "prec_run": None, "batch": None,
            "steps": 0, "losses_finite": None, "loss_key": None, "first_loss": None, "last_loss": None,
            "half_max_diff": None, "half_rel_diff": None, "top1_agreement": None, "merge_max_diff": None,
            "merge_rel_diff": None, "peak_mib": None, "seconds": None, "result": None, "reasons": [], "errors": []}


def run_trainer(name, trainer_cls, ctx):
    """All checks of one trainer; exceptions are recorded in the row (with the traceback in the log)."""
    row = new_row(name)
    row["learnable"] = learnable = is_learnable(trainer_cls)
    start = time.perf_counter()
    if ctx.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    half = full = None

    def record(stage, error):
        row["errors"].append(f"{stage}: {type(error).__name__}: {error}")
        print(f"---- {name}: {stage} failed\n{traceback.format_exc()}", file=ctx.log, flush=True)

    try:
        half = build_trainer(name, trainer_cls, ctx.prec, ctx)
        row["prec_run"] = half.prec
        if learnable:
            check_training(half, row, ctx.steps, ctx.device, ctx.seed)
    except Exception as error:  # noqa: BLE001 (any failure of this trainer is a result)
        record("build" if half is None else "training", error)
    if ctx.prec == "fp32":
        row["top1_agreement"] = "n/a"
    images = torch.randn(N_EVAL, 3, *ctx.input_size(half), device=ctx.device, generator=_generator(ctx.device,
                                                                                                   ctx.seed + 2))
    try:
        full = build_trainer(name, trainer_cls, "fp32", ctx)
        if half is not None and ctx.prec != "fp32":
            check_half_vs_fp32(half, full, row, images)
    except Exception as error:  # noqa: BLE001
        record(f"{ctx.prec} vs fp32", error)
    try:
        if full is not None:
            check_merge(full, row, images, ctx.seed)
    except Exception as error:  # noqa: BLE001
        record("merged vs unmerged", error)
    del half, full
    gc.collect()
    if ctx.device == "cuda":
        torch.cuda.synchronize()
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.empty_cache()
    row["seconds"] = time.perf_counter() - start
    judge(row, ctx.prec)
    return row


def judge(row, prec):
    reasons = list(row["errors"])
    if row["learnable"] and row["losses_finite"] is False:
        reasons.append(f"non-finite loss ({row.get('loss_error')})")
    for key, check in (("half_max_diff", f"{prec} vs fp32"), ("merge_max_diff", "merged vs unmerged")):
        if isinstance(row[key], float) and not math.isfinite(row[key]):
            reasons.append(f"{check}: non-finite logits")
    agreement = row["top1_agreement"]
    if isinstance(agreement, float) and agreement < TOP1_MIN:
        reasons.append(f"{prec} vs fp32 top-1 agreement {agreement:.1f}% < {TOP1_MIN:g}%")
    merge = row["merge_rel_diff"]
    if isinstance(merge, float) and not merge <= MERGE_TOL:
        reasons.append(f"merged vs unmerged max diff {merge:.2e} x logit scale > {MERGE_TOL:g}")
    row["reasons"] = reasons
    row["result"] = RESULT_FAIL if reasons else RESULT_PASS


# ------------------------------------------------------------------------------------------------ the report
def environment(device):
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "device": device, "device_name": "cpu", "host": platform.node()}
    try:
        from vlpeft.engine import ENGINE

        env["engine"] = ENGINE
    except ImportError:  # pragma: no cover
        env["engine"] = None
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env["device_name"] = props.name
        env["device_memory_gib"] = round(props.total_memory / 2**30, 1)
    else:
        env["device_name"] = platform.processor() or platform.machine() or "cpu"
    return env


def _fmt(value, spec):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def _yes_no(value):
    return {True: "yes", False: "no", None: "-"}[value]


def render_table(rows, prec):
    headers = ["trainer", "PREC run", "batch", "steps", "losses finite", "first / last loss",
               f"{prec} vs fp32 max diff (rel.)", "top-1 agree", "merged vs unmerged max diff (/ scale)",
               "peak MiB", "s", "result"]
    table = []
    for r in rows:
        if r["result"] == RESULT_SKIP:
            table.append([r["trainer"]] + ["-"] * (len(headers) - 2) + [RESULT_SKIP])
            continue
        learnable = r["learnable"]
        loss = (f"{_fmt(r['first_loss'], '.4f')} / {_fmt(r['last_loss'], '.4f')}" if learnable else "n/a")
        half = ("n/a" if r["half_max_diff"] is None and r["top1_agreement"] == "n/a" else
                f"{_fmt(r['half_max_diff'], '.2e')} ({_fmt(r['half_rel_diff'], '.1e')})"
                if r["half_max_diff"] is not None else "-")
        merge = ("n/a" if r["merge_max_diff"] == "n/a" else
                 f"{_fmt(r['merge_max_diff'], '.2e')} ({_fmt(r['merge_rel_diff'], '.1e')})"
                 if r["merge_max_diff"] is not None else "-")
        agreement = r["top1_agreement"]
        agreement = f"{agreement:.1f}%" if isinstance(agreement, float) else _fmt(agreement, "")
        result = r["result"] + (": " + "; ".join(r["reasons"]) if r["reasons"] else "")
        table.append([r["trainer"], r["prec_run"] or "-", _fmt(r["batch"], "d") if learnable else "n/a",
                      r["steps"] if learnable else "n/a", _yes_no(r["losses_finite"]) if learnable else "n/a", loss,
                      half, agreement, merge, _fmt(r["peak_mib"], ",.0f"), _fmt(r["seconds"], ".1f"),
                      result.replace("|", "\\|").replace("\n", " ")])
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def half_precision_note(report):
    """The sentence saying whether the half-precision checks ran at half precision (None when they did)."""
    prec = report["prec"]
    if prec == "fp32":
        return "PREC fp32 was requested: there is no half-precision check in this run (check 2 does not apply)."
    ran = {r["prec_run"] for r in report["rows"] if r.get("prec_run")}
    if report["half_precision_ran"]:
        return None
    return (f"**The half-precision checks did NOT run at half precision.** PREC {prec} was requested, but on "
            f"{report['env']['device']} vlpeft runs the frozen CLIP in {', '.join(sorted(ran)) or 'fp32'} "
            "(half precision needs a CUDA GPU; `vlpeft.trainers.base.resolve_precision` falls back with a warning): "
            f"the training steps ran in fp32, and the {prec} vs fp32 comparison compared fp32 with fp32 (identical "
            "by construction). Run `bash scripts/gpu_check.sh` on a CUDA GPU for the real check.")


def render_report(report):
    env, prec = report["env"], report["prec"]
    lines = ["# vlpeft GPU check", ""]
    counts = {k: sum(r["result"] == k for r in report["rows"]) for k in (RESULT_PASS, RESULT_FAIL, RESULT_SKIP)}
    if report["rows"]:
        verdict = "FAIL" if counts[RESULT_FAIL] or report.get("gpucheck_exit_code") else "PASS"
        lines.append(f"**GPU check: {verdict}** -- {counts[RESULT_PASS]} passed, {counts[RESULT_FAIL]} failed, "
                     f"{counts[RESULT_SKIP]} skipped (time budget) of {len(report['rows'])} trainers"
                     + (f"; the check exited with code {report['gpucheck_exit_code']}"
                        if report.get("gpucheck_exit_code") else "") + ".")
    else:
        lines.append("**GPU check: FAIL** -- the check wrote no results"
                     + (f" (exit code {report.get('gpucheck_exit_code')})" if report.get("gpucheck_exit_code")
                        is not None else "") + "; see its console output.")
    bench = report.get("bench")
    if bench is not None:
        rc = bench.get("exit_code")
        state = "not run" if rc is None else "exit code 0" if rc == 0 else f"**FAILED** (exit code {rc})"
        lines.append("")
        lines.append(f"**Speed benchmark** (`python -m vlpeft.bench`, below): {state}"
                     + ("; its bench.md is included." if bench.get("markdown") else "; no bench.md to include."))
    note = half_precision_note(report)
    if note:
        lines += ["", note]
    lines += [
        "",
        f"- command: `{report['command']}`",
        f"- started {report['started']}, {report['seconds']:.0f} s"
        + (f" (budget {report['budget']:g} s)" if report.get("budget") else ""),
        f"- device: {env['device']} ({env['device_name']}"
        + (f", {env['device_memory_gib']} GiB" if env.get("device_memory_gib") else "") + ")",
        f"- torch {env['torch']}, CUDA {env['cuda'] or 'none'}, cuDNN {env['cudnn'] or 'none'}, "
        f"Python {env['python']}, engine {env.get('engine')}",
        f"- model: {report['model']}; {N_CLASSES} classes, random images and labels; seed {report['seed']}",
        f"- PREC requested: {prec}; fp32 without TF32 (matmuls and convolutions)",
        "",
        "## Checks",
        "",
        f"1. **training**: {report['steps']} `forward_backward` steps at the config's batch size, PREC {prec} "
        "(LR schedule not stepped); pass: every loss finite (first / last: the main loss; ProGrad: `xe_loss`).",
        f"2. **{prec} vs fp32**: the trainer built again with the same seed at PREC fp32, the trained tensors copied "
        f"in; evaluation mode, the same {N_EVAL} random images: max abs difference of the logits (relative to the "
        f"largest fp32 logit) and top-1 agreement; pass: top-1 agreement >= {TOP1_MIN:g}%. With random weights "
        "the classes' logits lie close together, so the relative difference is the figure to watch.",
        "3. **merged vs unmerged** (models with surgery weight edits: adapters, low-rank deltas; otherwise n/a), "
        f"fp32, trainable tensors perturbed by N(0, {PERTURB_STD:g}^2) so zero-initialised factors are non-zero: "
        "logits on merged weights (eval mode) vs `surgery.unmerge()`; pass: max abs difference <= "
        f"{MERGE_TOL:g} x logit scale.",
        "",
        "Zero-shot trainers get check 2 only. Configs: `vlpeft.bench.BENCH_CONFIGS` (each trainer's ViT-B/16 "
        "base-to-new config).",
        "",
        render_table(report["rows"], prec),
    ]
    failed = [r for r in report["rows"] if r["result"] == RESULT_FAIL]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines += [f"### {r['trainer']}", "", "```"] + r["reasons"] + ["```", ""]
        lines.append(f"Tracebacks: `{report.get('log', 'gpucheck.log')}`.")
    skipped = [r["trainer"] for r in report["rows"] if r["result"] == RESULT_SKIP]
    if skipped:
        lines += ["", "## Skipped", "",
                  f"Not run, the time budget ({report['budget']:g} s) being spent: {', '.join(skipped)}. "
                  f"Run them with `python -m vlpeft.gpucheck --trainers {' '.join(skipped)}`."]
    if bench is not None:
        lines += ["", "## Speed benchmark (`python -m vlpeft.bench`)", ""]
        if bench.get("exit_code") is not None:
            lines.append(f"Exit code {bench['exit_code']}. Its own files: `bench/`.")
        if bench.get("note"):
            lines += ["", bench["note"]]
        if bench.get("markdown"):
            lines += ["", demote_headings(bench["markdown"]).rstrip()]
    return "\n".join(lines).rstrip() + "\n"


def demote_headings(markdown, levels=2):
    """``markdown`` with its headings ``levels`` deeper (outside fenced code), to sit under a section of the report."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)


def write_report(out, report):
    atomic_write_text(osp.join(out, "report.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(osp.join(out, "report.md"), render_report(report))


# ------------------------------------------------------------------------------------------------ command line
class Context:
    def __init__(self, args, device, log):
        self.device, self.prec, self.steps, self.seed, self.tiny = device, args.prec, args.steps, args.seed, args.tiny
        self.clip_builder = CachedClipBuilder(tiny=args.tiny)
        self.log = log

    def input_size(self, trainer):
        if trainer is not None:
            return tuple(trainer.cfg.INPUT.SIZE)
        return (32, 32) if self.tiny else (224, 224)


def parse_args(argv=None):
    from vlpeft.trainers.base import PRECISIONS

    parser = argparse.ArgumentParser(prog="python -m vlpeft.gpucheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="output/gpu_check", help="report folder (default output/gpu_check)")
    parser.add_argument("--trainers", nargs="+", help="trainers to check (default: every registered one)")
    parser.add_argument("--steps", type=int, default=50, help="training steps per trainer (default 50)")
    parser.add_argument("--prec", default="fp16", choices=PRECISIONS, help="PREC of the checks (default fp16)")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when a GPU is visible")
    parser.add_argument("--budget", type=float, default=0,
                        help="seconds; no trainer is started past it (default 0: no limit)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random CLIP at 32x32 (CPU tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finish", action="store_true",
                        help="only add the speed benchmark (OUT/bench/bench.md) and the exit codes to the report")
    parser.add_argument("--gpucheck-rc", type=int, help="with --finish: exit code of the check run")
    parser.add_argument("--bench-rc", type=int, help="with --finish: exit code of python -m vlpeft.bench")
    parser.add_argument("--since", type=float, default=0,
                        help="with --finish: unix time the run started; older files are from an earlier run")
    return parser, parser.parse_args(argv)


def select(parser, args, trainers):
    if not args.trainers:
        return [name for name in CONFIGS if name in trainers]
    unknown = [name for name in args.trainers if name not in trainers]
    if unknown:
        parser.error(f"unknown trainer(s) {', '.join(unknown)}; registered: {', '.join(sorted(trainers))}")
    return list(dict.fromkeys(args.trainers))


@contextlib.contextmanager
def _restore_tf32(flags):
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def main(argv=None):
    parser, args = parse_args(argv)
    if args.finish:
        return finish(args)
    started = time.time()
    clock = time.perf_counter()
    trainers = registered_trainers()
    check_configs_cover(trainers)
    names = select(parser, args, trainers)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    os.makedirs(args.out, exist_ok=True)
    log_path = osp.join(args.out, "gpucheck.log")
    report = {
        "command": " ".join(["python -m vlpeft.gpucheck", *(argv if argv is not None else sys.argv[1:])]),
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"), "started_unix": started,
        "seconds": 0.0, "budget": args.budget or None, "prec": args.prec, "steps": args.steps, "seed": args.seed,
        "model": (f"tiny random CLIP (vlpeft.clip.random_weights.tiny_openai_state_dict, {TINY_LAYERS} blocks per "
                  f"tower), INPUT.SIZE (32, 32), prompt depths capped at {TINY_LAYERS}"
                  if args.tiny else "ViT-B/16 with random weights (vlpeft.clip.random_weights.build_random_clip)"),
        "env": environment(device), "log": osp.basename(log_path), "rows": [], "half_precision_ran": None,
    }
    print(f"GPU check: {len(names)} trainers on {device} ({report['env']['device_name']}), PREC {args.prec}, "
          f"{args.steps} steps{f', budget {args.budget:g} s' if args.budget else ''}; log: {log_path}", flush=True)
    durations = {True: [], False: []}
    # fp32 means fp32 (the reference of check 2, the arithmetic of check 3): no TF32 in matmuls or convolutions
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with open(log_path, "w") as log, _restore_tf32(tf32):
        ctx = Context(args, device, log)
        for i, name in enumerate(names, 1):
            learnable = is_learnable(trainers[name])
            spent = time.perf_counter() - clock
            expected = (sum(durations[learnable]) / len(durations[learnable])) if durations[learnable] else 0.0
            if args.budget and i > 1 and spent + expected > args.budget:
                row = new_row(name)
                row.update(learnable=learnable, result=RESULT_SKIP,
                           reasons=[f"time budget: {spent:.0f} s spent, about {expected:.0f} s more needed"])
                report["rows"].append(row)
                print(f"[{i:2d}/{len(names)}] {name:13s} SKIPPED (budget: {spent:.0f} of {args.budget:g} s spent)",
                      flush=True)
                continue
            print(f"==== {name} ({CONFIGS[name]})", file=log, flush=True)
            with contextlib.redirect_stdout(log):
                row = run_trainer(name, trainers[name], ctx)
            durations[learnable].append(row["seconds"])
            report["rows"].append(row)
            print(f"[{i:2d}/{len(names)}] {name:13s} {row['result']} {row['seconds']:6.1f} s"
                  + (f"  ({'; '.join(row['reasons'])})" if row["reasons"] else ""), flush=True)
    ran = [r["prec_run"] for r in report["rows"] if r.get("prec_run")]
    report["half_precision_ran"] = bool(ran) and all(p == args.prec for p in ran) and args.prec != "fp32"
    report["seconds"] = time.perf_counter() - clock
    write_report(args.out, report)
    note = half_precision_note(report)
    if note:
        print(note.replace("**", ""))
    failed = [r["trainer"] for r in report["rows"] if r["result"] == RESULT_FAIL]
    print(f"{'FAIL: ' + ', '.join(failed) if failed else 'PASS'}; report: {osp.join(args.out, 'report.md')}")
    return 1 if failed else 0


def finish(args):
    """Add the speed benchmark's bench.md (when written by this run) and both exit codes to the report."""
    path = osp.join(args.out, "report.json")
    report = None
    if osp.isfile(path) and osp.getmtime(path) >= args.since:
        with open(path) as f:
            report = json.load(f)
    if report is None:
        report = {"command": "python -m vlpeft.gpucheck", "started": "-", "seconds": 0.0, "budget": None,
                  "prec": "-", "steps": 0, "seed": "-", "model": "-", "rows": [], "half_precision_ran": None,
                  "env": {"device": "-", "device_name": "-", "torch": torch.__version__, "cuda": torch.version.cuda,
                          "cudnn": None, "python": platform.python_version()}}
    report["gpucheck_exit_code"] = args.gpucheck_rc
    bench_md = osp.join(args.out, "bench", "bench.md")
    bench = {"exit_code": args.bench_rc, "markdown": None, "note": None, "path": None}
    if osp.isfile(bench_md) and osp.getmtime(bench_md) >= args.since:
        with open(bench_md) as f:
            bench["markdown"] = f.read()
        bench["path"] = osp.join("bench", "bench.md")
        bench_json = osp.join(args.out, "bench", "bench.json")
        if osp.isfile(bench_json) and osp.getmtime(bench_json) >= args.since:
            with open(bench_json) as f:
                try:
                    bench["results"] = json.load(f)
                except ValueError as error:
                    bench["note"] = f"bench.json is not valid JSON: {error}"
    elif osp.isfile(bench_md):
        bench["note"] = f"{bench_md} is older than this run (from an earlier one): not included."
    else:
        bench["note"] = f"The benchmark wrote no {bench_md}."
    report["bench"] = bench
    os.makedirs(args.out, exist_ok=True)
    write_report(args.out, report)
    print(f"report: {osp.join(args.out, 'report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
