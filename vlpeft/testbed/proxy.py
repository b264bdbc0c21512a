"""How well the testbed ranks methods the way the published tables do: base-to-new runs -> per-method mean base / new
/ H with 95% confidence intervals over seeds, the rank of each method, and Kendall's tau between the methods' H on the
testbed and their published 11-dataset H (``vlpeft.published``), with a bootstrap interval over seeds.

    python -m vlpeft.testbed.proxy OUTPUT [OUTPUT ...] [--datasets TestbedScenes ...] [--trainers CoOp ...]
                                   [--bootstrap 2000] [--json PATH]
    python -m vlpeft.testbed.proxy OUTPUT [OUTPUT ...] --grid OPTIM.LR [KEY ...]

``OUTPUT`` holds base-to-new runs (``python -m vlpeft.testbed.accuracy --protocols b2n --output OUTPUT``, or any
folder ``python -m vlpeft.results`` reads); several folders are pooled (a run found in two must agree). A method's H
is computed as the papers do: base and new averaged over seeds per dataset, then over the datasets, then their
harmonic mean. The confidence intervals are Student-t intervals over the seeds of the per-seed (dataset-averaged)
numbers; the bootstrap resamples the seeds, the same draw for every method (the seeds are shared), and recomputes tau.
"""
import argparse
import json
import math
import os.path as osp
import random
from collections import defaultdict

from vlpeft import published
from vlpeft.results import harmonic


def kendall_tau(x, y):
    """Kendall's tau-b of two equally long sequences, with the numbers of concordant and discordant pairs."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("kendall_tau needs two sequences of the same length >= 2")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n_x = concordant + discordant + ties_y  # pairs not tied in x
    n_y = concordant + discordant + ties_x
    tau = (concordant - discordant) / math.sqrt(n_x * n_y) if n_x and n_y else float("nan")
    return tau, concordant, discordant


def discordant_pairs(rows):
    """Pairs of ``rows`` (dicts with "trainer", "H", "published_H") that the testbed orders against the papers:
    ``(higher on the testbed, higher in the papers, testbed H gap, published H gap)``, largest published gap first."""
    pairs = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            dt, dp = a["H"] - b["H"], a["published_H"] - b["published_H"]
            if dt * dp < 0:
                top, bottom = (a, b) if dt > 0 else (b, a)
                pairs.append((top["trainer"], bottom["trainer"], abs(dt), abs(dp)))
    return sorted(pairs, key=lambda p: -p[3])


def published_method(trainer):
    """The published method of a testbed trainer: its own; for a variant ``<Trainer>_<v>`` only DPC's backbone
    variants (``DPC_maple``: MaPLe+DPC); other variants (ablation rows, recipe options) have none."""
    name, _, variant = trainer.partition("_")
    if not variant:
        return published.method_for(trainer, "testbed")
    return published.method_for(name, variant) if name == "DPC" else None


def published_h(trainer):
    """The published 11-dataset base-to-new H of ``trainer``'s method (:func:`published_method`), or None."""
    method = published_method(trainer)
    return published.lookup(method, "base2new", "average", "H") if method else None


def t_interval(values, level=0.95):
    """(mean, half-width) of the Student-t confidence interval of the mean; half-width nan for one value."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)


def _b2n_runs(root, datasets=None):
    """The finished base-to-new runs (base or new half) under ``root``, on ``datasets`` if given."""
    from vlpeft.results import find_runs

    for run in find_runs(root, check_stale=False):
        if run.protocol == "base2new" and run.accuracy is not None and run.split in ("base", "new") \
                and (not datasets or run.dataset in datasets):
            yield run


def _record(cell, run):
    """Put ``run``'s accuracy in ``cell`` (``{"base": acc, "new": acc}``); False when it disagrees with one already
    there (the same run found in two folders must agree)."""
    agrees = run.split not in cell or abs(cell[run.split] - run.accuracy) <= 1e-9
    cell[run.split] = run.accuracy
    return agrees


def collect(roots, datasets=None):
    """``{trainer: {seed: {dataset: {"base": acc, "new": acc}}}}`` of the finished base-to-new runs under ``roots``
    (a folder, or several pooled: a run found in two of them must have the same accuracy, else ValueError)."""
    runs = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for root in [roots] if isinstance(roots, str) else roots:
        for run in _b2n_runs(root, datasets):
            cell = runs[run.trainer][run.seed][run.dataset]
            earlier = cell.get(run.split)
            if not _record(cell, run):
                raise ValueError(f"{run.trainer} seed {run.seed} on {run.dataset} ({run.split}) is in several of "
                                 f"{roots} with different accuracies ({earlier} and {run.accuracy} in "
                                 f"{run.path}): pool folders of the same settings only")
    return runs


def method_h(per_seed, seeds):
    """H of the seed-averaged, dataset-averaged base and new accuracies over ``seeds`` (may repeat)."""
    datasets = sorted({d for s in seeds for d in per_seed[s]})
    base = sum(sum(per_seed[s][d]["base"] for s in seeds) / len(seeds) for d in datasets) / len(datasets)
    new = sum(sum(per_seed[s][d]["new"] for s in seeds) / len(seeds) for d in datasets) / len(datasets)
    return base, new, harmonic(base, new)


def complete(runs):
    """The trainers whose every seed has base and new on the same datasets (the rest are reported, not ranked)."""
    keep, dropped = {}, {}
    all_datasets = sorted({d for t in runs.values() for s in t.values() for d in s})
    for trainer, per_seed in runs.items():
        ok = all(set(per_seed[s]) == set(all_datasets) and all({"base", "new"} <= set(per_seed[s][d])
                                                               for d in per_seed[s]) for s in per_seed)
        (keep if ok else dropped)[trainer] = per_seed
    return keep, dropped


def proxy_report(runs, n_boot=2000, seed=0):
    """The table rows and tau (see the module docstring) of ``collect``'s runs."""
    runs, incomplete = complete(runs)
    rows = []
    for trainer, per_seed in sorted(runs.items()):
        seeds = sorted(per_seed)
        base, new, h = method_h(per_seed, seeds)
        per_seed_numbers = [method_h(per_seed, [s]) for s in seeds]
        ci = [t_interval([p[i] for p in per_seed_numbers])[1] for i in range(3)]
        method, pub = published_method(trainer), published_h(trainer)
        rows.append({"trainer": trainer, "seeds": len(seeds), "base": base, "new": new, "H": h,
                     "base_ci": ci[0], "new_ci": ci[1], "H_ci": ci[2], "published_method": method,
                     "published_H": pub})
    by_h = sorted(rows, key=lambda r: -r["H"])
    for rank, row in enumerate(by_h, 1):
        row["rank"] = rank
    ranked = [r for r in rows if r["published_H"] is not None]
    for rank, row in enumerate(sorted(ranked, key=lambda r: -r["published_H"]), 1):
        row["published_rank"] = rank
    result = {"rows": by_h, "incomplete": sorted(incomplete), "tau": None}
    if len(ranked) >= 2:
        tau, conc, disc = kendall_tau([r["H"] for r in ranked], [r["published_H"] for r in ranked])
        common = sorted(set.intersection(*(set(runs[r["trainer"]]) for r in ranked)))
        rng = random.Random(seed)
        taus = []
        for _ in range(n_boot):
            draw = [rng.choice(common) for _ in common]
            taus.append(kendall_tau([method_h(runs[r["trainer"]], draw)[2] for r in ranked],
                                    [r["published_H"] for r in ranked])[0])
        taus = sorted(t for t in taus if not math.isnan(t))
        low, high = (taus[int(0.025 * len(taus))], taus[min(len(taus) - 1, int(0.975 * len(taus)))]) if taus \
            else (float("nan"), float("nan"))
        result["tau"] = {"tau": tau, "concordant": conc, "discordant": disc, "methods": len(ranked),
                         "bootstrap_95": [low, high], "bootstrap_draws": n_boot, "seeds": common,
                         "discordant_pairs": discordant_pairs(ranked)}
    return result


def collect_settings(roots, keys, datasets=None):
    """Like :func:`collect` over several folders, with each run keyed by its setting: ``{(trainer, setting): {seed:
    {dataset: {"base", "new"}}}}``, where ``setting`` is the tuple of the ``keys``' values in the run's
    ``config.yaml`` (a key the config lacks is None). A run found twice must agree; trainers whose runs differ under
    one setting (a second stage trained on different first-stage runs) are returned apart, as the second value."""
    import yaml

    from vlpeft.results import config_value

    found, ambiguous = defaultdict(lambda: defaultdict(lambda: defaultdict(dict))), set()
    for root in roots:
        for run in _b2n_runs(root, datasets):
            with open(osp.join(run.path, "config.yaml")) as f:
                config = yaml.safe_load(f)
            setting = []
            for key in keys:
                try:
                    setting.append(config_value(config, key))
                except KeyError:
                    setting.append(None)
            if not _record(found[(run.trainer, tuple(setting))][run.seed][run.dataset], run):
                ambiguous.add(run.trainer)
    return {k: v for k, v in found.items() if k[0] not in ambiguous}, sorted(ambiguous)


def grid_taus(h_by_setting, published_by_trainer, max_combinations=2_000_000):
    """Kendall tau against ``published_by_trainer`` ({trainer: H}) when each trainer of ``h_by_setting`` ({trainer:
    {setting: H}}) takes its best setting, and the highest and lowest tau over every choice of one setting per
    trainer (None past ``max_combinations``). Returns {"best_per_method": tau, "max": (tau, choice), "min": (tau,
    choice)}."""
    import itertools

    trainers = sorted(h_by_setting)
    target = [published_by_trainer[t] for t in trainers]
    result = {"best_per_method": kendall_tau([max(h_by_setting[t].values()) for t in trainers], target)[0],
              "max": None, "min": None}
    if math.prod(len(h_by_setting[t]) for t in trainers) > max_combinations:
        return result
    best = worst = None
    for choice in itertools.product(*[sorted(h_by_setting[t], key=str) for t in trainers]):
        tau = kendall_tau([h_by_setting[t][c] for t, c in zip(trainers, choice)], target)[0]
        if best is None or tau > best[0]:
            best = (tau, dict(zip(trainers, choice)))
        if worst is None or tau < worst[0]:
            worst = (tau, dict(zip(trainers, choice)))
    result.update(max=best, min=worst)
    return result


def grid_report(roots, keys, datasets=None):
    """The ``--grid`` report (text): each single-stage method's H per setting of ``keys`` found under ``roots``,
    and :func:`grid_taus` over the methods with a published H."""
    from tabulate import tabulate

    from vlpeft.testbed.accuracy import backbone_of

    found, ambiguous = collect_settings(roots, keys, datasets)
    h_by_setting, target = defaultdict(dict), {}
    for (trainer, setting), per_seed in sorted(found.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        target[trainer] = published_h(trainer)
        if target[trainer] is None or backbone_of(trainer) is not None or not complete({trainer: per_seed})[0]:
            continue
        h_by_setting[trainer][setting] = method_h(per_seed, sorted(per_seed))[2]

    def shown(trainer):  # the keys that tell the trainer's settings apart (the first key when it has one)
        settings = list(h_by_setting[trainer])
        return [i for i in range(len(keys)) if len({str(s[i]) for s in settings}) > 1] or [0]

    def name(trainer, setting):
        return ", ".join(f"{keys[i].split('.')[-1]} {setting[i]}" for i in shown(trainer))

    rows = [[t, target[t], "; ".join(f"{name(t, s)}: {h:.2f}" for s, h in h_by_setting[t].items())]
            for t in sorted(h_by_setting, key=lambda t: -target[t])]
    lines = [tabulate(rows, headers=["trainer", "published H", "testbed H per setting"])]
    if len(h_by_setting) >= 2:
        taus = grid_taus(h_by_setting, target)
        lines.append(f"Kendall tau over {len(h_by_setting)} single-stage methods, each at its best setting: "
                     f"{taus['best_per_method']:.3f}")
        if taus["max"] and any(len(v) > 1 for v in h_by_setting.values()):
            lines.append(f"Over every choice of one setting per method: highest {taus['max'][0]:.3f} ("
                         + "; ".join(f"{t} {name(t, c)}" for t, c in taus["max"][1].items())
                         + f"), lowest {taus['min'][0]:.3f}")
    if ambiguous:
        lines.append(f"Left out (different runs under one setting): {', '.join(ambiguous)}")
    return "\n".join(lines)


def render(result):
    from tabulate import tabulate

    table = [[r["rank"], r["trainer"], r["seeds"], f"{r['base']:.2f} ± {r['base_ci']:.2f}",
              f"{r['new']:.2f} ± {r['new_ci']:.2f}", f"{r['H']:.2f} ± {r['H_ci']:.2f}",
              "-" if r["published_H"] is None else f"{r['published_H']:.2f} ({r['published_method']})",
              r.get("published_rank", "-")] for r in result["rows"]]
    lines = [tabulate(table, headers=["rank", "trainer", "seeds", "base (95% CI)", "new (95% CI)", "H (95% CI)",
                                      "published H", "published rank"])]
    t = result["tau"]
    if t:
        lines.append(f"Kendall tau (testbed H vs published H, {t['methods']} methods): {t['tau']:.3f} "
                     f"({t['concordant']} concordant, {t['discordant']} discordant pairs); bootstrap over seeds "
                     f"{t['seeds']}, {t['bootstrap_draws']} draws: 95% [{t['bootstrap_95'][0]:.3f}, "
                     f"{t['bootstrap_95'][1]:.3f}]")
        if t["discordant_pairs"]:
            lines.append("Ordered against the papers (testbed-higher < published-higher: testbed H gap / published H "
                         "gap): " + "; ".join(f"{a} > {b} ({gt:.2f} / {gp:.2f})"
                                              for a, b, gt, gp in t["discordant_pairs"]))
    else:
        lines.append("Kendall tau: fewer than 2 methods with a published H")
    if result["incomplete"]:
        lines.append(f"Not ranked (missing base or new runs on some seed or dataset): {', '.join(result['incomplete'])}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="+",
                        help="a folder of base-to-new runs (e.g. the testbed accuracy tool's --output); several are "
                             "pooled")
    parser.add_argument("--grid", nargs="+", default=None, metavar="KEY",
                        help="pool the folders and key each run by these config values: each single-stage method's "
                             "H per setting, and tau at each method's best setting and over every choice of settings")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--trainers", nargs="+", default=None,
                        help="rank these trainers only (e.g. those that also ran on another tower)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws over seeds")
    parser.add_argument("--json", default="", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.grid:
        print(grid_report(args.root, args.grid, args.datasets))
        return 0
    try:
        runs = collect(args.root, args.datasets)
    except ValueError as e:
        parser.error(str(e))
    if args.trainers:
        missing = sorted(set(args.trainers) - set(runs))
        if missing:
            parser.error(f"no runs of {', '.join(missing)} in {', '.join(args.root)}; found: {', '.join(sorted(runs))}")
        runs = {t: runs[t] for t in args.trainers}
    result = proxy_report(runs, n_boot=args.bootstrap)
    emit(render(result), result, args.json)
    return 0


def emit(text, result, json_path=""):
    """Print a report and, when ``json_path`` is given, write its numbers there (atomically)."""
    print(text)
    if json_path:
        from vlpeft.engine.utils import atomic_write_text

        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
