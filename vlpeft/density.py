"""Information density of prompt matrices (DIP paper §3.2): ``ID_k = sum_{i<=k} sigma_i / sum_i sigma_i``.

    python -m vlpeft.density OUTPUT_DIR_OR_CHECKPOINT [--k 1 2] [--evaluate new] [--plot density.png]

reads every ``<learner>/model.pth.tar-<epoch>`` of a training output directory (or one checkpoint file) of any prompt
trainer and prints ID_k of each prompt matrix per epoch. Prompt matrices are found by name: CoOp-style ``ctx``
([n, d]; class-specific ``ctx`` [C, n, d] gives one matrix per class, averaged), IVLP / PromptSRC ``text_deep.<l>``,
``vision_ctx``, ``vision_deep.<l>``, MaPLe ``compound_prompts_text.<l>``, and DIP's low-rank prompts
(``<name>.init + <name>.A @ <name>.B``). ``--evaluate new`` also evaluates each checkpoint on the new classes with the
run's own ``config.yaml`` (the paper's Figure 1: accuracy on unseen classes over training against ID; train with
``TRAIN.CHECKPOINT_FREQ 1`` to have a checkpoint per epoch); ``--plot`` draws ID and accuracy over the epochs when
matplotlib is installed.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re

import torch

PROMPT_LISTS = ("text_deep", "vision_deep", "compound_prompts_text", "deep")
PROMPT_NAMES = ("ctx", "vision_ctx")


def information_density(matrix, k):
    """``ID_k`` of a matrix [n, d] (differentiable; ``k`` is clipped to the number of singular values)."""
    sigma = torch.linalg.svdvals(matrix.float())
    return sigma[:k].sum() / sigma.sum().clamp_min(1e-12)


def prompt_matrices(state_dict):
    """{name: [n, d] float tensor} of the prompt matrices in a prompt learner's state dict (see the module doc)."""
    state = {k: v for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()}
    matrices = {}
    for key in state:
        if key.endswith(".A") and key[:-2] + ".B" in state:
            base = key[:-2]
            product = state[key].float() @ state[base + ".B"].float()
            init = state.get(base + ".init")
            matrices[base] = product if init is None else init.float() + product
    low_rank = tuple(f"{base}." for base in matrices)
    for key, value in state.items():
        if key.startswith(low_rank) or key in matrices:
            continue
        parts = key.split(".")
        is_prompt = parts[-1] in PROMPT_NAMES or (len(parts) >= 2 and parts[-2] in PROMPT_LISTS
                                                  and parts[-1].isdigit())
        if is_prompt and value.dim() in (2, 3):
            matrices[key] = value.float()
    return dict(sorted(matrices.items()))


def density_report(state_dict, ks=(1, 2)):
    """{name: {k: ID_k}}; class-specific contexts [C, n, d] report the mean over classes."""
    report = {}
    for name, matrix in prompt_matrices(state_dict).items():
        batch = matrix if matrix.dim() == 3 else matrix.unsqueeze(0)
        report[name] = {k: float(sum(information_density(m, k) for m in batch) / len(batch)) for k in ks}
    return report


def format_report(report):
    return "; ".join(f"{name} " + " ".join(f"ID{k} {v:.4f}" for k, v in ids.items()) for name, ids in report.items())


def checkpoints(path):
    """[(epoch, file)] of a checkpoint file or of every ``*/model.pth.tar-<epoch>`` under an output directory."""
    if osp.isfile(path):
        match = re.search(r"-(\d+)$", path)
        return [(int(match.group(1)) if match else 0, path)]
    files = glob.glob(osp.join(path, "*", "model.pth.tar-*"))
    if not files:
        raise FileNotFoundError(f'no "<learner>/model.pth.tar-<epoch>" checkpoint under "{path}"')
    return sorted((int(f.rsplit("-", 1)[1]), f) for f in files)


def evaluate_checkpoint(output_dir, epoch, subsample):
    """Accuracy of the run's checkpoint ``epoch`` on its test split with ``DATASET.SUBSAMPLE_CLASSES subsample``,
    evaluated with the run's resolved ``config.yaml`` (in-process ``train.py --eval-only``)."""
    import sys
    import tempfile

    import vlpeft.trainers  # noqa: F401  (config nodes)
    from vlpeft.cli import main as train_main, portable_run_config
    from vlpeft.config import get_cfg
    from vlpeft.engine.utils import close_logger

    saved = osp.join(output_dir, "config.yaml")
    if not osp.isfile(saved):
        raise FileNotFoundError(f'--evaluate needs the run\'s resolved config "{saved}"')
    close_logger()  # a log tee left by an earlier in-process run would be closed under us
    stdout = sys.stdout
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = portable_run_config(saved, osp.join(tmp, "run_config.yaml"))  # made under either engine
            cfg = get_cfg()
            cfg.merge_from_file(config)
            result = train_main(["--root", cfg.DATASET.ROOT, "--trainer", cfg.TRAINER.NAME, "--config-file", config,
                                 "--output-dir", osp.join(tmp, "eval"), "--model-dir", output_dir,
                                 "--load-epoch", str(epoch), "--eval-only", "DATASET.SUBSAMPLE_CLASSES", subsample])
            close_logger()
    finally:
        sys.stdout = stdout
    return result["accuracy"]


def plot(rows, ks, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in ks:
        ax.plot(epochs, [r["mean_id"][k] for r in rows], marker="o", label=f"ID{k} (mean over prompt matrices)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("information density")
    if any("accuracy" in r for r in rows):
        acc_ax = ax.twinx()
        acc_ax.plot(epochs, [r.get("accuracy") for r in rows], color="black", linestyle="--", label="accuracy")
        acc_ax.set_ylabel("accuracy (%)")
        acc_ax.legend(loc="lower right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return True


def spearman(x, y):
    """Spearman rank correlation (no ties correction), as the paper reports for ID vs accuracy."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        r = [0.0] * len(values)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return torch.tensor(r)

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()).clamp_min(1e-12))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.density", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a training output directory or one checkpoint file")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--evaluate", choices=["base", "new", "all"], help="also evaluate every checkpoint")
    parser.add_argument("--plot", help="PNG file: ID and accuracy over the epochs (needs matplotlib)")
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    for epoch, path in checkpoints(args.path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        report = density_report(state.get("state_dict", state), args.k)
        if not report:
            raise ValueError(f'no prompt matrix found in "{path}"')
        row = {"epoch": epoch, "checkpoint": path, "density": report,
               "mean_id": {k: sum(r[k] for r in report.values()) / len(report) for k in args.k}}
        if args.evaluate:
            row["accuracy"] = evaluate_checkpoint(args.path, epoch, args.evaluate)
        rows.append(row)
        print(f"epoch {epoch}: {format_report(report)}" + (f"; accuracy {row['accuracy']:.2f}" if args.evaluate else ""))
    if args.evaluate and len(rows) > 2:
        for k in args.k:
            rho = spearman([r["mean_id"][k] for r in rows], [r["accuracy"] for r in rows])
            print(f"Spearman correlation of mean ID{k} and accuracy over {len(rows)} checkpoints: {rho:.3f}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(tmp, args.json)
    if args.plot and plot(rows, args.k, args.plot):
        print(f"plot written to {args.plot}")
    return rows


if __name__ == "__main__":
    main()
