"""The reference scale for the proxy benchmark's tau: how well the real benchmark ranks the published methods when only
some of its datasets are used, and how stable the published ranking itself is.

    python -m vlpeft.testbed.reference                                  # the 11 real datasets, 1 and 3 at a time
    python -m vlpeft.testbed.reference --datasets imagenet caltech101 oxford_pets stanford_cars oxford_flowers \\
        fgvc_aircraft                                                   # the panel where DIP's numbers are published
    python -m vlpeft.testbed.reference --testbed output/testbed_proxy/proxy.json   # the testbed on the same methods

**Subsets of the real suite.** The methods are those the proxy benchmark ranks (its trainers' published methods)
that have a published base and new accuracy on every dataset of the panel. For every subset of ``k`` datasets of the
panel, a method's score is computed as the proxy computes it on its datasets (the harmonic mean of the subset's mean
base and mean new accuracy), and Kendall's tau-b is taken against the target the proxy uses: the published
11-dataset H. The report gives the tau of each single dataset and, per ``k``, the spread of tau over all subsets
(and, with ``--testbed``, the share of subsets that rank no better than the testbed's dataset average). With
``k = 1`` it also profiles the real datasets: zero-shot CLIP's accuracy, the room the methods find above it, and
CoOp's new-class change, each with its rank correlation with the dataset's tau.

**Second published numbers.** Some methods were also re-run and published by a later paper (``vlpeft.published``:
e.g. MaPLe re-run by the DPD-LoRA authors). Substituting such a number for the one the proxy uses moves the method
in the published ranking; the report counts the pairs of ranked methods whose order that reverses, and the tau
between the two published rankings.

**The testbed beside them** (``--testbed``, a ``proxy.json`` of ``python -m vlpeft.testbed.bench --proxy``): the
testbed's tau on the same methods, for its dataset average and for each of its datasets, and each pair of methods
that the testbed's average orders against the papers, with the share of the real subsets of as many datasets that
reverse it too (none: an error of the testbed's own; many: a pair the real suite does not settle either).
"""
import argparse
import json
import statistics
from itertools import combinations

from vlpeft import published
from vlpeft.results import harmonic
from vlpeft.testbed.proxy import emit, kendall_tau, published_h

# a later paper's re-run of a method, published beside the number the proxy uses: (method, the re-run's method name)
SECOND_NUMBERS = (("MaPLe", "MaPLe (DPD-LoRA repro)"), ("PromptSRC", "PromptSRC (DPD-LoRA repro)"),
                  ("CoOp", "CoOp (DPC backbone)"), ("MaPLe", "MaPLe (DPC backbone)"),
                  ("PromptSRC", "PromptSRC (DPC backbone)"), ("ProGrad", "ProGrad (DIP paper)"))


def ranked_methods():
    """{published method: published 11-dataset H} of every method the proxy benchmark ranks."""
    from vlpeft.testbed.bench import proxy_trainers
    from vlpeft.testbed.proxy import published_method

    methods = {}
    for trainer in proxy_trainers():
        method = published_method(trainer)
        if method is not None and published_h(trainer) is not None:
            methods[method] = published_h(trainer)
    return methods


def per_dataset(methods, datasets):
    """{method: {dataset: (base, new)}} for the methods with a published base and new accuracy on every dataset."""
    table = {}
    for method in methods:
        cells = {d: (published.lookup(method, "base2new", d, "base"), published.lookup(method, "base2new", d, "new"))
                 for d in datasets}
        if all(None not in cell for cell in cells.values()):
            table[method] = cells
    return table


def subset_score(cells, subset):
    """H of the mean base and mean new accuracy over ``subset`` (the proxy's dataset average)."""
    base = sum(cells[d][0] for d in subset) / len(subset)
    new = sum(cells[d][1] for d in subset) / len(subset)
    return harmonic(base, new)


def subset_taus(table, target, k, datasets):
    """[(subset, tau)] over every ``k``-subset of ``datasets``: tau of the methods' subset scores vs ``target``."""
    methods = sorted(table)
    out = []
    for subset in combinations(datasets, k):
        scores = [subset_score(table[m], subset) for m in methods]
        out.append((subset, kendall_tau(scores, [target[m] for m in methods])[0]))
    return out


def spread(taus):
    """Summary of a list of taus: n, min, quartiles, max, fraction >= 0.7."""
    values = sorted(taus)
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"subsets": len(values), "min": values[0], "q1": q1, "median": median, "q3": q3, "max": values[-1],
            "at_least_0.7": sum(v >= 0.7 for v in values) / len(values)}


def second_numbers(target):
    """For each second published number of a ranked method: the pairs of ranked methods it reverses and the tau between
    the published ranking and the ranking with it substituted."""
    rows = []
    names = sorted(target)
    for method, alternative in SECOND_NUMBERS:
        value = published.lookup(alternative, "base2new", "average", "H")
        if method not in target or value is None:
            continue
        moved = dict(target, **{method: value})
        tau, _, discordant = kendall_tau([target[m] for m in names], [moved[m] for m in names])
        rows.append({"method": method, "second": alternative, "H": target[method], "second_H": value,
                     "reversed_pairs": discordant, "tau": tau})
    return rows


def dataset_profile(table, single):
    """Per real dataset: its tau alone (``single``), zero-shot CLIP's base and new accuracy, the room (the best base
    accuracy among ``table``'s methods minus zero-shot's) and CoOp's new-class change from zero-shot; with the Spearman
    correlation of each with the tau over the datasets."""
    from scipy.stats import spearmanr

    if not {"ZeroshotCLIP", "CoOp"} <= set(table) or len(single) < 3:
        return None
    rows = []
    for dataset, tau in sorted(single.items(), key=lambda kv: -kv[1]):
        (zs_base, zs_new), coop_new = table["ZeroshotCLIP"][dataset], table["CoOp"][dataset][1]
        rows.append({"dataset": dataset, "tau": tau, "zs_base": zs_base, "zs_new": zs_new,
                     "room": max(cells[dataset][0] for cells in table.values()) - zs_base,
                     "coop_new_change": coop_new - zs_new})
    keys = ("zs_base", "zs_new", "room", "coop_new_change")
    taus = [r["tau"] for r in rows]
    return {"rows": rows, "spearman": {k: float(spearmanr(taus, [r[k] for r in rows]).statistic) for k in keys}}


def testbed_scores(proxy, methods):
    """{"average": {method: H}, <dataset>: {method: H}, ...}: the H of ``methods`` in a bench report (the path of a
    ``proxy.json``, or its dict), over its datasets together and on each."""
    if isinstance(proxy, dict):
        result, name = proxy, "the proxy report"
    else:
        with open(proxy) as f:
            result, name = json.load(f), proxy
    rows = [r for r in result["rows"] if r.get("published_method") in methods and r.get("published_H") is not None]
    missing = set(methods) - {r["published_method"] for r in rows}
    if missing:
        raise ValueError(f"{name} has no run of {', '.join(sorted(missing))}")
    scores = {"average": {r["published_method"]: r["H"] for r in rows}}
    per_dataset = result.get("per_dataset_H", {})
    for dataset in sorted({d for r in rows for d in per_dataset.get(r["trainer"], {})}):
        h = {r["published_method"]: per_dataset.get(r["trainer"], {}).get(dataset) for r in rows}
        if None not in h.values():
            scores[dataset] = h
    return scores


def reversed_pairs(scores, target, table, datasets, k):
    """The pairs that ``scores`` order against ``target`` (published-higher method first), each with the share of the
    real ``k``-subsets of ``datasets`` that reverse it too: 0 marks an error of the testbed's own, a large share a pair
    the real suite does not settle either."""
    subsets = list(combinations(datasets, k))
    rows = []
    for a, b in combinations(sorted(scores), 2):
        if target[a] < target[b]:
            a, b = b, a
        if scores[a] < scores[b]:
            real = sum(subset_score(table[a], s) < subset_score(table[b], s) for s in subsets) / len(subsets)
            rows.append({"higher": a, "lower": b, "published_gap": target[a] - target[b],
                         "testbed_gap": scores[b] - scores[a], "real_share": real})
    return sorted(rows, key=lambda r: r["real_share"])


def summary(proxy_result, n_datasets):
    """One paragraph for the bench report: the testbed's tau on the methods with published per-dataset numbers,
    beside the real suite's subsets of as many datasets."""
    k = max(1, min(n_datasets, len(published.DATASETS)))
    try:
        result = reference(ks=(k,), proxy=proxy_result)
    except ValueError as e:
        return f"Reference scale (python -m vlpeft.testbed.reference): not computed, {e}."
    s = result["subsets"][k]
    return (f"Reference scale (python -m vlpeft.testbed.reference): on the {len(result['methods'])} methods with "
            f"published per-dataset numbers, tau {result['testbed']['average']:.3f} here; the {s['subsets']} subsets "
            f"of {k} of the {len(published.DATASETS)} real datasets, scored from those numbers: median {s['median']:.3f}, "
            f"{100 * s['at_least_0.7']:.0f}% at 0.7 or more, {round(s['at_most_testbed'] * s['subsets'])} no better "
            f"than here.")


def reference(datasets=published.DATASETS, ks=(1, 3), proxy=None):
    """Everything the report shows, as a dict; ``proxy``: a bench report (a ``proxy.json`` path or its dict) to place
    on the scale."""
    target = ranked_methods()
    table = per_dataset(target, datasets)
    if len(table) < 2:
        raise ValueError(f"fewer than 2 ranked methods have published numbers on all of {', '.join(datasets)}")
    result = {"datasets": list(datasets), "methods": sorted(table), "left_out": sorted(set(target) - set(table)),
              "single": {}, "subsets": {}, "second_numbers": second_numbers(target)}
    for k in ks:
        if not 1 <= k <= len(datasets):
            raise ValueError(f"k = {k}: choose 1 to {len(datasets)} datasets")
    scores = testbed_scores(proxy, result["methods"]) if proxy else None
    testbed = {name: kendall_tau([h[m] for m in result["methods"]], [target[m] for m in result["methods"]])[0]
               for name, h in scores.items()} if scores else None
    for k in ks:
        taus = [tau for _, tau in subset_taus(table, target, k, datasets)]
        if k == 1:
            result["single"] = dict(zip(datasets, taus))
        result["subsets"][k] = spread(taus)
        if testbed:  # where the testbed's dataset average falls among the real subsets
            result["subsets"][k]["at_most_testbed"] = sum(t <= testbed["average"] + 1e-12 for t in taus) / len(taus)
    if result["single"]:
        result["profile"] = dataset_profile(table, result["single"])
    if testbed:
        k = min(len(scores) - 1, len(datasets)) or 1  # as many real datasets as the testbed has
        result["testbed"] = testbed
        result["testbed_reversed"] = {"k": k, "pairs": reversed_pairs(scores["average"], target, table, datasets, k)}
    return result


def render(result):
    from tabulate import tabulate

    lines = [f"Methods ({len(result['methods'])}) with published base and new on all of "
             f"{', '.join(result['datasets'])}: {', '.join(result['methods'])}"]
    if result["left_out"]:
        lines.append(f"Left out (no published per-dataset numbers there): {', '.join(result['left_out'])}")
    if result["single"]:
        lines.append("\nOne real dataset alone, tau against the published 11-dataset H:\n\n" + tabulate(
            [[d, f"{t:.3f}"] for d, t in sorted(result["single"].items(), key=lambda kv: -kv[1])],
            headers=["dataset", "tau"]))
    if result.get("profile"):
        prof = result["profile"]
        lines.append("\nWhat the well-ranking real datasets have: zero-shot CLIP's base and new accuracy, the room "
                     "(best base among these methods - zero-shot base) and CoOp's new-class change from "
                     "zero-shot:\n\n"
                     + tabulate([[r["dataset"], f"{r['tau']:.3f}", f"{r['zs_base']:.2f}", f"{r['zs_new']:.2f}",
                                  f"{r['room']:+.1f}", f"{r['coop_new_change']:+.1f}"] for r in prof["rows"]]
                                + [["Spearman with tau", "", *(f"{prof['spearman'][k]:+.2f}" for k in
                                                               ("zs_base", "zs_new", "room", "coop_new_change"))]],
                                headers=["dataset", "tau", "zero-shot base", "zero-shot new", "room",
                                         "CoOp new - zero-shot new"], disable_numparse=True))
    testbed = "testbed" in result
    lines.append("\nSubsets of k real datasets (tau over all subsets):\n\n" + tabulate(
        [[k, s["subsets"], f"{s['min']:.3f}", f"{s['q1']:.3f}", f"{s['median']:.3f}", f"{s['q3']:.3f}",
          f"{s['max']:.3f}", f"{100 * s['at_least_0.7']:.0f}%"]
         + ([f"{100 * s['at_most_testbed']:.0f}%"] if testbed else []) for k, s in result["subsets"].items()],
        headers=["k", "subsets", "min", "25%", "median", "75%", "max", "tau >= 0.7"]
        + (["tau <= the testbed's"] if testbed else [])))
    if result["second_numbers"]:
        lines.append("\nSecond published numbers of ranked methods (pairs of all the proxy's ranked methods "
                     "reversed by substituting it):\n\n" + tabulate(
                         [[r["method"], f"{r['H']:.2f}", r["second"], f"{r['second_H']:.2f}", r["reversed_pairs"],
                           f"{r['tau']:.3f}"] for r in result["second_numbers"]],
                         headers=["method", "H used", "second number", "H", "pairs reversed", "tau"]))
    if testbed:
        lines.append("\nThe testbed on the same methods (average: its proxy datasets together):\n\n" + tabulate(
            [[d, f"{t:.3f}"] for d, t in result["testbed"].items()], headers=["testbed", "tau"]))
        rev = result["testbed_reversed"]
        if rev["pairs"]:
            lines.append(f"\nPairs the testbed's average orders against the papers, and the share of the real "
                         f"{rev['k']}-dataset subsets that do too:\n\n" + tabulate(
                             [[f"{r['higher']} > {r['lower']}", f"{r['published_gap']:.2f}", f"{r['testbed_gap']:.2f}",
                               f"{100 * r['real_share']:.0f}%"] for r in rev["pairs"]],
                             headers=["published order", "published gap", "testbed gap (reversed)",
                                      "real subsets reversing it"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(published.DATASETS), choices=published.DATASETS,
                        help="the panel of real datasets (default: all 11)")
    parser.add_argument("--k", nargs="+", type=int, default=[1, 3], help="subset sizes (default: 1 and 3)")
    parser.add_argument("--testbed", default="", help="a proxy.json of python -m vlpeft.testbed.bench --proxy")
    parser.add_argument("--json", default="", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    try:
        result = reference(tuple(args.datasets), tuple(args.k), args.testbed or None)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    emit(render(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
