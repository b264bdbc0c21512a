"""Plots of DPL's architecture weights α (docs/decisions/dpl.md#dpl-plots).

    python -m vlpeft.dpl_plot RUN_OR_ALPHA_FOLDER [--epoch E] [--out DIR] [--overwrite]

reads the α saved by the DPL search (``<run>/alpha/epoch_<E>.json``; a folder of the official code's
``alpha_e<E>_txt.npy`` / ``alpha_e<E>_img.npy`` is read too), prints the lengths found at epoch E (default: the last
saved) and writes, with matplotlib's Agg backend:

- ``alpha_heatmap.png``: per tower, softmax(α) of every block (rows: block 1..L, columns: the options' prompt
  lengths) at epoch E, each cell annotated, the chosen (largest) option of each block boxed (the paper's Figure 3);
- ``alpha_evolution.png``: per tower, the chosen length of every block (rows) at every saved epoch (columns),
  epoch E outlined.

The plots go to ``<folder>/plots`` unless ``--out`` says otherwise; existing plots are only replaced with
``--overwrite``. Needs matplotlib (``pip install matplotlib``, or the ``plot`` extra: ``pip install -e .[plot]``);
without it the lengths are printed and the command exits with status 2.
"""
import argparse
import io
import os.path as osp
import sys

import torch

from vlpeft.engine.utils import atomic_write_bytes
from vlpeft.trainers.dpl import TOWERS, alpha_epochs, lengths_from_alpha, read_alpha

HEATMAP = "alpha_heatmap.png"
EVOLUTION = "alpha_evolution.png"
TOWER_TITLES = {"text": "text encoder", "vision": "vision encoder"}


class PlotError(Exception):
    """A problem reported to the user as one line (exit status 2)."""


def find_alpha_folder(path):
    """The folder holding the α files: ``path`` itself when it holds them, else its ``alpha/`` subfolder."""
    if not osp.isdir(path):
        raise PlotError(f'"{path}" is not a folder (expected a DPL search run folder or its alpha/ folder)')
    for folder in (path, osp.join(path, "alpha")):
        if alpha_epochs(folder):
            return folder
    raise PlotError(f'no saved α in "{path}" nor in "{osp.join(path, "alpha")}": expected epoch_<E>.json files '
                    f'(written by the DPL search) or the official code\'s alpha_e<E>_txt.npy / alpha_e<E>_img.npy')


def read_all(folder):
    """``(epochs, {epoch: {tower: alpha [L, T]}}, options)``; every epoch must have the same options and shapes."""
    epochs = alpha_epochs(folder)
    history, options, shapes = {}, None, None
    for epoch in epochs:
        try:
            alpha, opts, _ = read_alpha(folder, epoch)
        except (OSError, ValueError, KeyError) as error:
            raise PlotError(f'cannot read the α of epoch {epoch} in "{folder}": {error}') from error
        shape = {t: tuple(alpha[t].shape) for t in TOWERS}
        if options is None:
            options, shapes = opts, shape
        elif opts != options or shape != shapes:
            raise PlotError(f'the α of epoch {epoch} in "{folder}" has options {list(opts)} and shapes {shape}, '
                            f'the earlier epochs {list(options)} and {shapes}')
        try:
            lengths_from_alpha(alpha, options)  # checks [blocks, len(options)]
        except ValueError as error:
            raise PlotError(f'epoch {epoch} in "{folder}": {error}') from error
        history[epoch] = alpha
    return epochs, history, options


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """PNG through a temporary file in the same folder and ``os.replace``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def plot_heatmap(plt, alpha, options, epoch, path):
    from matplotlib.patches import Rectangle

    blocks = max(alpha[t].shape[0] for t in TOWERS)
    fig, axes = plt.subplots(1, len(TOWERS), figsize=(len(TOWERS) * (2.4 + 0.7 * len(options)),
                                                      1.8 + 0.42 * blocks), squeeze=False)
    for ax, tower in zip(axes[0], TOWERS):
        weights = torch.softmax(alpha[tower].double(), dim=1).numpy()
        chosen = weights.argmax(axis=1)
        image = ax.imshow(weights, cmap="Blues", aspect="auto", vmin=0.0, vmax=max(float(weights.max()), 1e-12))
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="softmax(α)")
        middle = (float(weights.max()) + float(weights.min())) / 2
        for row in range(weights.shape[0]):
            for col in range(weights.shape[1]):
                value = weights[row, col]
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > middle and weights.max() > weights.min() else "black")
            ax.add_patch(Rectangle((chosen[row] - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="crimson",
                                   linewidth=2))
        ax.set_xticks(range(len(options)), [str(c) for c in options])
        ax.set_yticks(range(weights.shape[0]), [str(i + 1) for i in range(weights.shape[0])])
        ax.set_xlabel("prompt length")
        ax.set_ylabel("block")
        ax.set_title(f"{TOWER_TITLES[tower]}, epoch {epoch}")
    fig.suptitle("DPL: softmax(α) per block (boxed: the chosen length)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_evolution(plt, epochs, history, options, epoch, path):
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Rectangle

    blocks = max(history[epochs[0]][t].shape[0] for t in TOWERS)
    colours = plt.get_cmap("viridis")([i / max(len(options) - 1, 1) for i in range(len(options))])
    cmap, norm = ListedColormap(colours), BoundaryNorm([i - 0.5 for i in range(len(options) + 1)], len(options))
    annotate = len(epochs) <= 30
    step = max(1, -(-len(epochs) // 20))  # at most about 20 epoch labels
    fig, axes = plt.subplots(1, len(TOWERS), figsize=(len(TOWERS) * (2.4 + max(2.0, 0.45 * min(len(epochs), 40))),
                                                      1.8 + 0.42 * blocks), squeeze=False)
    for ax, tower in zip(axes[0], TOWERS):
        index = torch.stack([torch.softmax(history[e][tower].double(), dim=1).argmax(dim=1) for e in epochs],
                            dim=1).numpy()  # [blocks, epochs]: the chosen option's index
        image = ax.imshow(index, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, ticks=range(len(options)), label="chosen length")
        bar.ax.set_yticklabels([str(c) for c in options])
        if annotate:
            for row in range(index.shape[0]):
                for col in range(index.shape[1]):
                    i = int(index[row, col])
                    ax.text(col, row, str(options[i]), ha="center", va="center", fontsize=7,
                            color="white" if i < len(options) / 2 else "black")
        column = epochs.index(epoch)
        ax.add_patch(Rectangle((column - 0.5, -0.5), 1, index.shape[0], fill=False, edgecolor="crimson",
                               linewidth=2))
        ax.set_xticks(range(0, len(epochs), step), [str(e) for e in epochs[::step]])
        ax.set_yticks(range(index.shape[0]), [str(i + 1) for i in range(index.shape[0])])
        ax.set_xlabel("epoch (0: before training)")
        ax.set_ylabel("block")
        ax.set_title(f"{TOWER_TITLES[tower]}: chosen length per block")
    fig.suptitle(f"DPL: argmax of α over the search (outlined: epoch {epoch})")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def run(args):
    folder = find_alpha_folder(args.folder)
    epochs, history, options = read_all(folder)
    epoch = epochs[-1] if args.epoch is None or args.epoch < 0 else args.epoch
    if epoch not in history:
        raise PlotError(f'no α of epoch {epoch} in "{folder}"; saved epochs: {epochs}')
    out = args.out or osp.join(args.folder, "plots")
    paths = [osp.join(out, HEATMAP), osp.join(out, EVOLUTION)]
    existing = [p for p in paths if osp.exists(p)]
    if existing and not args.overwrite:
        raise PlotError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite to "
                        f"replace {'it' if len(existing) == 1 else 'them'}, or --out another folder")
    lengths = lengths_from_alpha(history[epoch], options)
    print(f'α of epoch {epoch} (saved epochs {epochs[0]}..{epochs[-1]}) in "{folder}", options {list(options)}')
    print("found lengths (blocks 1..L):")
    for tower in TOWERS:
        print(f"  {tower}: {lengths[tower]}")
    try:
        plt = _pyplot()
    except ImportError as error:
        raise PlotError(f"the plots need matplotlib, which cannot be imported ({error}): pip install matplotlib "
                        f"(or the plot extra: pip install -e .[plot])") from error
    plot_heatmap(plt, history[epoch], options, epoch, paths[0])
    plot_evolution(plt, epochs, history, options, epoch, paths[1])
    for path in paths:
        print(f"wrote {path}")
    return lengths


def main(argv=None):
    """Exit status: 0, or 2 with a one-line message on stderr (no α, an unknown epoch, existing plots without
    ``--overwrite``, no matplotlib)."""
    parser = argparse.ArgumentParser(prog="python -m vlpeft.dpl_plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a DPL search run folder (its alpha/ subfolder is read) or an α folder")
    parser.add_argument("--epoch", type=int, default=None, help="the epoch of the heatmap and the printed lengths "
                                                                "(default: the last saved; 0: before training)")
    parser.add_argument("--out", help="folder of the plots (default: <folder>/plots)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing plots")
    args = parser.parse_args(argv)
    try:
        run(args)
    except PlotError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
