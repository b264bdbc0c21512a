"""The CoOp-family command line (``train.py``): same flags, same config merge order, same log.

Additions over CoOp's ``train.py`` (each also written to the output directory, atomically):
``config.yaml`` (the resolved config), ``env.txt`` (engine and library versions) and, once the final test has run,
``results.json`` (the evaluator's numbers; scripts use it as the completion marker).
Deviations: ``--seed 0`` is honoured (CoOp ignores it); on vlpeft's engine an existing ``log.txt`` is appended to, never
renamed (on Dassl's, Dassl's logger starts ``log.txt-<timestamp>`` as CoOp does); resuming into an output directory
whose saved config differs is refused instead of mixing results silently (keys that only one engine's defaults have are
not compared, so a run resumes under either engine).
"""
import argparse
import difflib
import json
import os
import os.path as osp
import shlex
import sys
import time
import traceback

import torch

from vlpeft.engine.checkpoint import saved_epochs

EXCLUDED_FROM_RESUME_CHECK = ("OUTPUT_DIR", "RESUME")


def build_parser(trainer_names=()):
    epilog = "registered trainers: " + ", ".join(sorted(trainer_names)) if trainer_names else None
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description="Train / evaluate a vlpeft (CoOp-family) trainer. Without arguments: a short demo run.",
        epilog=epilog)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=None, help="only non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def _valid_keys(cfg, prefix=""):
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict):
            keys.extend(_valid_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def _explain_config_error(cfg, error, source):
    """Turn yacs' 'Non-existent config key' / type errors into a message listing the valid names."""
    text = str(error).strip("'\"")
    marker = next((m for m in ("Non-existent config key: ", "Non-existent key: ") if m in text), None)
    if marker:
        bad = text.split(marker, 1)[1].strip().strip("'\"")
        parent = bad.rsplit(".", 1)[0] if "." in bad else ""
        valid = _valid_keys(cfg)
        siblings = sorted(k for k in valid if (k.rsplit(".", 1)[0] if "." in k else "") == parent)
        close = difflib.get_close_matches(bad, valid, n=3)
        msg = f'Unknown config key "{bad}" in {source}.'
        if close:
            msg += f" Did you mean: {', '.join(close)}?"
        if siblings:
            msg += f" Valid keys under {parent or 'the root'}: {', '.join(siblings)}"
        else:
            nodes = sorted({k.split('.')[0] for k in valid})
            msg += f" Valid top-level nodes: {', '.join(nodes)}"
        return ValueError(msg)
    return ValueError(f"Invalid config in {source}: {text}")


def _int_opts_as_floats(cfg, opts):
    """``KEY 10`` for a key whose default is a float (e.g. ``TRAINER.DPDLORA.LR_SCALE 10``) is passed as ``10.0``:
    yacs refuses an int for a float key, and a user writing a whole number means the float."""
    from ast import literal_eval

    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        node = cfg
        for part in str(opts[i]).split("."):
            node = node.get(part) if hasattr(node, "get") else None
            if node is None:
                break
        try:
            value = literal_eval(str(opts[i + 1]))
        except (ValueError, SyntaxError):
            continue
        if isinstance(node, float) and isinstance(value, int) and not isinstance(value, bool):
            opts[i + 1] = repr(float(value))
    return opts


def setup_cfg(args):
    from vlpeft.config import extend_cfg
    from vlpeft.engine import get_cfg_default

    from vlpeft.resources import resolve_config_file

    cfg = get_cfg_default()
    extend_cfg(cfg)
    for flag, path in (("--dataset-config-file", args.dataset_config_file), ("--config-file", args.config_file)):
        if path:
            path = resolve_config_file(path, flag)
            try:
                cfg.merge_from_file(path)
            except (KeyError, AssertionError, ValueError) as e:
                raise _explain_config_error(cfg, e, path) from None
    reset_cfg(cfg, args)
    try:
        cfg.merge_from_list(_int_opts_as_floats(cfg, args.opts or []))
    except (KeyError, AssertionError, ValueError) as e:
        raise _explain_config_error(cfg, e, "the command-line opts") from None
    cfg.freeze()
    return cfg


def _config_text(cfg):
    return cfg.dump()


def _comparable(cfg_text):
    import yaml

    data = yaml.safe_load(cfg_text) or {}
    for key in EXCLUDED_FROM_RESUME_CHECK:
        data.pop(key, None)
    return data


def _read_record(output_dir):
    path = osp.join(output_dir, "results.json")
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _has_checkpoints(output_dir):
    return any(osp.isfile(osp.join(output_dir, d, "checkpoint")) or saved_epochs(osp.join(output_dir, d))
               for d in os.listdir(output_dir) if osp.isdir(osp.join(output_dir, d)))


def _safe_eval_dir(cfg):
    out = osp.normpath(cfg.OUTPUT_DIR)
    sub = cfg.DATASET.SUBSAMPLE_CLASSES
    if f"{osp.sep}train_base{osp.sep}" in out + osp.sep:
        return out.replace(f"{osp.sep}train_base{osp.sep}", f"{osp.sep}test_{sub}{osp.sep}", 1)
    dataset = cfg.DATASET.NAME.lower() or "eval"
    return osp.join(osp.dirname(out), f"{osp.basename(out)}_eval_{dataset}_{sub}")


def check_eval_only(cfg, args, trainer_class):
    """``--eval-only`` evaluates a trained model into a folder of its own, never on top of another run's record."""
    learnable = getattr(trainer_class, "LEARNABLE", not trainer_class.__name__.startswith("Zeroshot"))
    if learnable and not args.model_dir:
        raise ValueError(
            f"--eval-only with trainer {cfg.TRAINER.NAME} needs --model-dir <the training run's output folder> "
            "(and usually --load-epoch N): without it the untrained parameters would be evaluated. Only zero-shot "
            "trainers evaluate without a model.")
    if args.model_dir:
        if not osp.isdir(args.model_dir):
            raise FileNotFoundError(f'--model-dir "{args.model_dir}" does not exist')
        if args.load_epoch is not None:
            epochs = {d: saved_epochs(osp.join(args.model_dir, d)) for d in sorted(os.listdir(args.model_dir))}
            epochs = {d: e for d, e in epochs.items() if e}
            if epochs and not any(args.load_epoch in e for e in epochs.values()):
                found = ", ".join(f"{d}: {e}" for d, e in epochs.items())
                raise FileNotFoundError(
                    f'--load-epoch {args.load_epoch}: no "model.pth.tar-{args.load_epoch}" in "{args.model_dir}". '
                    f"Epochs saved there: {found}")
    out = cfg.OUTPUT_DIR
    if not osp.isdir(out):
        return
    record = _read_record(out)
    same_as_model = args.model_dir and osp.realpath(out) == osp.realpath(args.model_dir)
    if same_as_model or _has_checkpoints(out) or (record is not None and not record.get("eval_only", False)):
        raise FileExistsError(
            f'--output-dir "{out}" holds a training run; an evaluation written there would replace its '
            f'results.json and config.yaml. Write the evaluation to its own folder, e.g. --output-dir "'
            f'{_safe_eval_dir(cfg)}" (with --model-dir "{args.model_dir or out}").')
    if record:
        saved = osp.join(out, "config.yaml")
        same_config = False
        if osp.isfile(saved):
            with open(saved) as f:
                same_config = not list(_diff_keys(_comparable(f.read()), _comparable(_config_text(cfg))))
        same_model = (record.get("model_dir") == args.model_dir and record.get("load_epoch") == args.load_epoch)
        if not (same_config and same_model):
            raise FileExistsError(
                f'--output-dir "{out}" holds the record of another evaluation (model_dir "{record.get("model_dir")}",'
                f' load_epoch {record.get("load_epoch")}). Use a new --output-dir, or delete the old one.')


def check_training_output(cfg):
    """Training may resume its own run, never write over an evaluation's record or another config's checkpoints."""
    if not osp.isdir(cfg.OUTPUT_DIR):
        return
    record = _read_record(cfg.OUTPUT_DIR)
    if record and record.get("eval_only"):
        raise FileExistsError(
            f'--output-dir "{cfg.OUTPUT_DIR}" holds an evaluation (results.json with eval_only true); training '
            "there would replace it. Use a new --output-dir.")
    check_resume_consistency(cfg)


def portable_run_config(path, dest):
    """Write to ``dest`` a run's resolved ``config.yaml`` keeping only the keys the active engine's config has (a run
    made under Dassl holds the nodes of Dassl's own trainers, which vlpeft's engine does not define); return
    ``dest``."""
    import yaml

    from vlpeft.config import get_cfg
    from vlpeft.engine.utils import atomic_write_text

    def known(data, defaults):
        return {k: (known(v, defaults[k]) if isinstance(v, dict) and isinstance(defaults[k], dict) else v)
                for k, v in data.items() if k in defaults}

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    atomic_write_text(dest, yaml.safe_dump(known(data, get_cfg()), default_flow_style=False))
    return dest


def check_resume_consistency(cfg):
    """Refuse to resume a run whose saved config differs: its checkpoints belong to another experiment."""
    saved = osp.join(cfg.OUTPUT_DIR, "config.yaml")
    if cfg.RESUME or not osp.isfile(saved):
        return
    if not _has_checkpoints(cfg.OUTPUT_DIR):
        return
    with open(saved) as f:
        old = _comparable(f.read())
    new = _comparable(_config_text(cfg))
    diffs = sorted(_diff_keys(old, new))
    if diffs:
        raise RuntimeError(
            f'The output directory "{cfg.OUTPUT_DIR}" holds checkpoints of a run with a different config '
            f"(differing keys: {', '.join(diffs[:20])}). Use a new --output-dir, or delete the old one.")


def _diff_keys(a, b, prefix=""):
    """Keys whose values differ. Keys present on one side only are not compared: they come from the engine's
    defaults (Dassl's config has nodes for its own trainers, vlpeft's engine has not), not from the experiment, so a
    run started under one engine can be resumed under the other."""
    keys = set(a) & set(b)
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            yield f"{prefix}{k}"


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def engine_info():
    from vlpeft import __version__
    from vlpeft.engine import ENGINE, collect_env_info

    return f"vlpeft: {__version__} (engine: {ENGINE})\n{collect_env_info()}"


def _val_is_test(trainer):
    dataset = getattr(getattr(trainer, "dm", None), "dataset", None)
    val, test = getattr(dataset, "val", None), getattr(dataset, "test", None)
    if not val:
        return False
    return val is test or [d.impath for d in val] == [d.impath for d in test or []]


class ResultRecorder:
    """Keeps the evaluator's last result dict per split (works with Dassl's and vlpeft's trainers)."""

    def __init__(self, trainer):
        self.results = {}
        self._split = None
        test, evaluate = trainer.test, trainer.evaluator.evaluate

        def recording_test(split=None, *a, **kw):
            self._split = split or trainer.cfg.TEST.SPLIT
            if self._split == "val" and (getattr(trainer, "val_loader", None) is None or _val_is_test(trainer)):
                self._split = "test"  # no val split: the test set is evaluated (ImageNet's val *is* its test set)
            return test(split, *a, **kw)

        def recording_evaluate(*a, **kw):
            out = evaluate(*a, **kw)
            self.results[self._split or "test"] = {k: float(v) for k, v in out.items()}
            return out

        trainer.test = recording_test
        trainer.evaluator.evaluate = recording_evaluate


def final_split(cfg, results):
    """The split of a run's final evaluation: ``TEST.SPLIT`` when it was evaluated, else the test set."""
    return cfg.TEST.SPLIT if cfg.TEST.SPLIT in results else "test"


def write_results(cfg, args, results, elapsed, extra=None):
    from vlpeft.engine.utils import atomic_write_text

    split = final_split(cfg, results)
    final = results.get(split)
    if final is None:
        return None
    record = {
        "split": split,
        "trainer": cfg.TRAINER.NAME,
        "dataset": cfg.DATASET.NAME,
        "subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES,
        "num_shots": cfg.DATASET.NUM_SHOTS,
        "seed": cfg.SEED,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "eval_only": bool(args.eval_only),
        "model_dir": args.model_dir,
        "load_epoch": args.load_epoch,
        "elapsed_s": round(elapsed, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        **(extra or {}),
        **final,
    }
    path = osp.join(cfg.OUTPUT_DIR, "results.json")
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        from vlpeft.demo import run_demo

        return run_demo()
    import vlpeft.trainers  # noqa: F401  (registers trainers and datasets)
    from vlpeft.engine import TRAINER_REGISTRY, set_random_seed, setup_logger
    from vlpeft.engine.utils import close_logger

    args = build_parser(TRAINER_REGISTRY.registered_names()).parse_args(argv)
    cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():
        names = ", ".join(sorted(TRAINER_REGISTRY.registered_names()))
        close = difflib.get_close_matches(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names(), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise ValueError(f'Unknown trainer "{cfg.TRAINER.NAME}".{hint} Registered trainers: {names}')
    if not cfg.DATASET.NAME:
        raise ValueError("No dataset given: pass --dataset-config-file configs/datasets/<dataset>.yaml "
                         "(it sets DATASET.NAME).")
    if args.eval_only:
        check_eval_only(cfg, args, TRAINER_REGISTRY.get(cfg.TRAINER.NAME))
    elif not args.no_train:
        check_training_output(cfg)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    close_logger()  # an earlier in-process run's log tee (Dassl's logger would otherwise wrap it)
    setup_logger(cfg.OUTPUT_DIR)
    try:
        return _run(cfg, args, argv)
    except BaseException:
        _log_traceback()
        raise


def _log_traceback():
    """Put the traceback of a failing run into its log.txt too (loops often discard the console)."""
    log = getattr(sys.stdout, "file", None)  # the log file of vlpeft's and Dassl's stdout tee
    if log is not None and not log.closed:
        log.write("".join(traceback.format_exc()))
        log.flush()


def _write_env(cfg, env, argv):
    """env.txt, one section per start of the run (a resumed run keeps the record of its first start)."""
    from vlpeft.engine.utils import atomic_write_text

    path = osp.join(cfg.OUTPUT_DIR, "env.txt")
    previous = ""
    if osp.isfile(path):
        with open(path) as f:
            previous = f.read() + "\n"
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_text(path, previous + f"started: {started}\n{env}\ncommand: {shlex.join(str(a) for a in argv)}\n")


def train_images_per_class(trainer, num_shots):
    """(min, max) training images per class; warns when a class has fewer than ``DATASET.NUM_SHOTS``."""
    from collections import Counter

    dataset = trainer.dm.dataset
    counts = Counter(item.label for item in dataset.train_x)
    if not counts:
        return None
    low, high = min(counts.values()), max(counts.values())
    if num_shots > 0 and low < num_shots:
        names = dataset.classnames if hasattr(dataset, "classnames") else {}
        short = sorted(label for label, n in counts.items() if n < num_shots)
        shown = ", ".join(f"{names[label] if label < len(names) else label} ({counts[label]})" for label in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        print(f"Warning: DATASET.NUM_SHOTS is {num_shots} but {len(short)} class(es) have fewer training images: "
              f"{shown}{more}. Training on {low}-{high} images per class (recorded in results.json).")
    return low, high


def _run(cfg, args, argv):
    from vlpeft.engine import build_trainer
    from vlpeft.engine.utils import atomic_write_text

    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    env = engine_info()
    print("Collecting env info ** ")
    print(f"** System info **\n{env}\n")
    atomic_write_text(osp.join(cfg.OUTPUT_DIR, "config.yaml"), _config_text(cfg))
    _write_env(cfg, env, argv)

    start = time.time()
    trainer = build_trainer(cfg)
    per_class = train_images_per_class(trainer, cfg.DATASET.NUM_SHOTS)
    recorder = ResultRecorder(trainer)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()
    extra = {"train_images_per_class": list(per_class) if per_class else None}
    if not args.eval_only:
        extra["resumed_from_epoch"] = getattr(trainer, "resumed_from_epoch", None)
    path = write_results(cfg, args, recorder.results, time.time() - start, extra)
    if path:
        print(f"Results written to {path}")
    sys.stdout.flush()
    return recorder.results.get(final_split(cfg, recorder.results))
