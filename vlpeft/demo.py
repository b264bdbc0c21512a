"""The embedded default of ``python train.py`` (no arguments): a short, real base-to-new experiment on the CPU testbed.

It trains CoOp on the base classes of a generated testbed dataset (16 shots) with the ``vlpeft-testbed`` CLIP that
ships with vlpeft (pretrained by ``python -m vlpeft.testbed.pretrain`` on the generated image-text world), tests it on
the base and the new classes, and prints base / new / H beside zero-shot CLIP. Everything is generated or shipped:
no download. About 30 seconds on 2 CPU cores (dataset generation included); outputs under ``output/demo``.
"""
import os.path as osp

from tabulate import tabulate

DEMO_DATASET = "TestbedScenes"  # the testbed dataset where a prompt learner has the most to learn
DEMO_SEED = 1


def run_demo(dataset=DEMO_DATASET, seed=DEMO_SEED, output="output/demo", trainer="CoOp", quiet=True, root="", opts=()):
    from vlpeft.results import harmonic
    from vlpeft.testbed.accuracy import base_to_new

    print("=" * 100)
    print(f"vlpeft demo: base-to-new on the CPU testbed ({dataset}; the vlpeft-testbed CLIP, pretrained on a generated "
          "image-text world).")
    print(f"Zero-shot CLIP vs {trainer} trained on the base classes (16 shots, seed {seed}). Logs: {output}/.")
    print("=" * 100, flush=True)
    rows = []
    for name in ("ZeroshotCLIP", trainer):
        r = base_to_new(name, dataset, seed, output, root=root, quiet=quiet, opts=opts)
        seconds = f"{r['elapsed_s']:.0f}" + (" (earlier run)" if r["reused"] else "")
        rows.append([name, f"{r['base']:.1f}", f"{r['new']:.1f}", f"{harmonic(r['base'], r['new']):.1f}", seconds])
        if r["reused"]:
            print(f"{name}: nothing re-run, the finished run of {r['finished_at']} in {r['dir']} is shown "
                  "(delete that folder to run it again)", flush=True)
        print(f"{name}: base {r['base']:.1f}%  new {r['new']:.1f}%", flush=True)
    print(tabulate(rows, headers=["trainer", "base", "new", "H", "seconds"]))
    print(f"Per-run logs, configs and results.json: {osp.abspath(output)}/b2n/{dataset}/<trainer>/seed{seed}/")
    return rows
