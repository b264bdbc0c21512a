"""Collect finished runs under an output root into the papers' tables (mean ± std over seeds, seed count).

    python -m vlpeft.results output                              # every protocol found, terminal tables
    python -m vlpeft.results output --compare published          # + the published number and the difference
    python -m vlpeft.results output --format markdown|csv        # or --plot DIR (needs pip install vlpeft[plot])

In a notebook: ``report = vlpeft.results.results("output")``; ``report.tables`` (one :class:`Table` per protocol,
trainer and config), ``report.records()`` (one dict per cell), ``report.missing`` / ``unfinished`` / ``stale``.

Runs are found in the scripts' folder scheme (scripts/common.sh) below the root:

- base-to-new: ``base2new/{train_base,test_new}/<dataset>/shots_16/<trainer>/<cfg>/seed<S>`` (base, new accuracy);
- few-shot: ``<dataset>/<trainer>/<cfg>_<K>shots[/nctx..]/seed<S>``, all classes;
- cross-dataset / DG: ``evaluation/<trainer>/<cfg>_16shots[/nctx..]/<target>/seed<S>``, the source being the ImageNet
  16-shot run ``imagenet/<trainer>/<cfg>_16shots[/nctx..]/seed<S>``;
- and the CPU testbed's (``python -m vlpeft.testbed.accuracy``): ``b2n/<dataset>/<trainer>/seed<S>/{train_base|base,
  test_new}``, ``fewshot/<dataset>/<trainer>/<K>shots/seed<S>`` (config ``testbed``).

A run is finished when it has ``results.json`` (train.py writes it last, atomically) or, for runs of the official
CoOp-family code, a ``log.txt`` ending with Dassl's result block (``=> result`` ... ``* accuracy: X%``). Runs that
are expected but absent (``missing``), started but unfinished (``unfinished``) or whose ``config.yaml`` no longer
matches what their config files give now (``stale``) are listed separately and never enter a mean. H is the harmonic
mean of the seed-averaged base and new accuracies, and the average row's H that of the averaged base and new, as the
papers compute it. std is the population standard deviation over seeds (``np.std``, as CoOp's
``parse_test_res.py`` and the testbed's tables).
"""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import os.path as osp
import re
import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass, field

from vlpeft import published as published_table

ALL_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
                "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = ALL_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
PROTOCOL_TITLES = {"base2new": "base-to-new", "fewshot": "few-shot", "xd": "cross-dataset", "dg": "domain generalisation"}

_SEED = re.compile(r"^seed(-?\d+)$")
_SHOTS_CFG = re.compile(r"^(.*)_(\d+)shots$")
_NCTX = re.compile(r"^nctx\d+_csc\w+_ctp\w+$")
_EPOCHS = re.compile(r"_?ep\d+")


# ---------------------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    path: str
    protocol: str  # base2new / fewshot / xd / dg
    dataset: str
    trainer: str
    config: str  # the config name as in the folder (with the CoOp nctx level, if any: "vit_b16/nctx16_cscFalse_ctpend")
    seed: int
    shots: int = 16
    split: str = "all"  # base2new: "base" / "new"; xd / dg: "source" / "target"
    accuracy: float = None
    source: str = ""  # "results.json" / "log.txt"
    status: str = "ok"  # ok / unfinished / stale
    stale_keys: list = field(default_factory=list)

    @property
    def group(self):
        """(protocol, trainer, config) of the table the run belongs to; few-shot configs without their epochs (CoOp's
        per-shot ``vit_b16_ep50`` / ``_ep100`` / ``vit_b16`` are one method)."""
        if self.protocol == "fewshot":
            base, _, nctx = self.config.partition("/")
            base = _EPOCHS.sub("", base) or base
            return self.protocol, self.trainer, base + ("/" + nctx if nctx else "")
        return self.protocol, self.trainer, self.config


def parse_result_block(text):
    """The last Dassl result block of a log (``=> result``, ``* total``, ``* correct``, ``* accuracy: X%``, ...) as a
    dict of floats, or None."""
    start = text.rfind("=> result")
    if start < 0:
        return None
    found = {}
    for line in text[start:].splitlines()[1:]:
        m = re.match(r"^\*\s*([A-Za-z_0-9 ]+):\s*([-\d.,]+)\s*%?\s*$", line.strip())
        if not m:
            if found:
                break
            continue
        key = m.group(1).strip().replace(" ", "_")
        try:
            found[key] = float(m.group(2).replace(",", ""))
        except ValueError:
            continue
    return found if "accuracy" in found else None


def classify(parts):
    """The run described by a path below the root (a list of folder names ending with ``seed<S>``, or the testbed's
    ``.../seed<S>/<stage>``), as a dict of Run fields, or None when it is not in a known scheme."""
    if not parts:
        return None
    stage = None
    if not _SEED.match(parts[-1]) and len(parts) >= 2 and _SEED.match(parts[-2]):
        stage, parts = parts[-1], parts[:-1]
    m = _SEED.match(parts[-1])
    if not m:
        return None
    seed, body = int(m.group(1)), parts[:-1]
    if stage is not None:  # testbed b2n: b2n/<dataset>/<trainer>/seed<S>/<stage>
        if len(body) == 3 and body[0] == "b2n" and stage in ("train_base", "base", "test_new"):
            return dict(protocol="base2new", dataset=body[1], trainer=body[2], config="testbed", seed=seed,
                        split="new" if stage == "test_new" else "base")
        return None
    if len(body) == 6 and body[0] == "base2new" and body[1] in ("train_base", "test_base", "test_new") \
            and body[3].startswith("shots_"):
        split = "new" if body[1] == "test_new" else "base"
        if body[1] == "test_base":
            split = "test_base"  # an extra evaluation (SUB=base); the base accuracy comes from train_base
        return dict(protocol="base2new", dataset=body[2], trainer=body[4], config=body[5], seed=seed, split=split,
                    shots=int(body[3][len("shots_"):] or 16))
    if len(body) == 4 and body[0] == "fewshot" and body[3].endswith("shots") and body[3][:-5].isdigit():
        return dict(protocol="fewshot", dataset=body[1], trainer=body[2], config="testbed", seed=seed,
                    shots=int(body[3][:-5]))
    nctx = ""
    if body and _NCTX.match(body[-1]):
        nctx, body = body[-1], body[:-1]
    if len(body) == 4 and body[0] == "evaluation":  # evaluation/<trainer>/<cfg>_16shots[/nctx]/<target>
        m = _SHOTS_CFG.match(body[2])
        target = body[3]
        if not m:
            return None
        protocol = "dg" if target in DG_TARGETS else "xd"
        return dict(protocol=protocol, dataset=target, trainer=body[1], seed=seed, split="target",
                    config=m.group(1) + (f"/{nctx}" if nctx else ""), shots=int(m.group(2)))
    if len(body) == 5 and body[0] == "evaluation" and nctx == "" and _NCTX.match(body[3]):
        # CoOp's eval.sh: evaluation/CoOp/<cfg>_16shots/nctx.../<target>/seed<S>
        m = _SHOTS_CFG.match(body[2])
        if not m:
            return None
        target = body[4]
        return dict(protocol="dg" if target in DG_TARGETS else "xd", dataset=target, trainer=body[1], seed=seed,
                    split="target", config=f"{m.group(1)}/{body[3]}", shots=int(m.group(2)))
    if len(body) == 3:  # <dataset>/<trainer>/<cfg>_<K>shots[/nctx]
        m = _SHOTS_CFG.match(body[2])
        if not m:
            return None
        return dict(protocol="fewshot", dataset=body[0], trainer=body[1], seed=seed,
                    config=m.group(1) + (f"/{nctx}" if nctx else ""), shots=int(m.group(2)))
    return None


def _read_run(path):
    """(accuracy, source) of a finished run, (None, "unfinished") of a started one, (None, None) of neither."""
    record = osp.join(path, "results.json")
    if osp.isfile(record):
        try:
            with open(record) as f:
                data = json.load(f)
            return float(data["accuracy"]), "results.json"
        except (OSError, ValueError, KeyError, TypeError):
            return None, "unfinished"
    log = osp.join(path, "log.txt")
    if osp.isfile(log):
        with open(log, errors="replace") as f:
            block = parse_result_block(f.read())
        if block:
            return block["accuracy"], "log.txt"
        return None, "unfinished"
    if any(osp.isfile(osp.join(path, name)) for name in ("config.yaml", "env.txt")):
        return None, "unfinished"
    return None, None


# ---------------------------------------------------------------------------------------------------------- stale
_resolved_cache = {}


def _command_of(run_dir):
    """The train.py arguments of the run's first start (env.txt's ``command:`` line), or None."""
    path = osp.join(run_dir, "env.txt")
    if not osp.isfile(path):
        return None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("command: "):
                text = line[len("command: "):].strip()
                try:
                    return shlex.split(text)  # written quoted (shlex.join)
                except ValueError:
                    return text.split()
    return None


def _resolve_now(argv):
    """The config train.py would resolve today for these arguments (as a plain dict)."""
    key = tuple(argv)
    if key not in _resolved_cache:
        import yaml

        from vlpeft.cli import build_parser, setup_cfg

        with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage text, when the command no longer parses
            args = build_parser().parse_args(argv)
        _resolved_cache[key] = yaml.safe_load(setup_cfg(args).dump())
    return _resolved_cache[key]


def _diff(old, new, prefix=""):
    for k in set(old) & set(new):
        a, b = old[k], new[k]
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _diff(a, b, f"{prefix}{k}.")
        elif _norm(a) != _norm(b):
            yield f"{prefix}{k}"


IGNORED_KEYS = {"OUTPUT_DIR", "RESUME", "DATASET.ROOT"}  # where a run is, not what it is


def config_changes(config_path, argv):
    """``(key, saved, now)`` for every key whose value in a run's saved ``config.yaml`` differs from what ``argv``
    (train.py's arguments) resolves to today; [] when the run is what the command would make."""
    import yaml

    with open(config_path) as f:
        saved = yaml.safe_load(f) or {}
    now = _resolve_now([str(a) for a in argv])
    return [(k, config_value(saved, k), config_value(now, k)) for k in sorted(_diff(saved, now))
            if k not in IGNORED_KEYS]


def config_value(config, dotted_key):
    """``config["A"]["B"]`` for ``"A.B"`` (a config node or its plain-dict form)."""
    for part in dotted_key.split("."):
        config = config[part]
    return config


def _norm(value):
    """A config value in a comparable form: numbers as floats, sequences as lists, an existing path as its real path
    (the same folder given relative or absolute is the same setting)."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value and osp.exists(value):
        return osp.realpath(value)
    return value


def _trainer_config_file(trainer, config):
    from vlpeft.resources import packaged_config

    for root in (osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs", "trainers"), None):
        path = (osp.join(root, trainer, f"{config}.yaml") if root else packaged_config("trainers", trainer,
                                                                                       f"{config}.yaml"))
        if osp.isfile(path):
            return path
    return None


def stale_keys(run):
    """Keys whose value in the run's ``config.yaml`` differs from what its config would resolve to now: the run's
    recorded command (env.txt) is resolved as train.py does; without one, the ``TRAINER`` keys that the current
    ``configs/trainers/<Trainer>/<cfg>.yaml`` sets are compared. [] when nothing differs or nothing can be compared."""
    import yaml

    saved_path = osp.join(run.path, "config.yaml")
    if not osp.isfile(saved_path):
        return []
    argv = _command_of(run.path)
    if argv:
        try:
            return [key for key, _, _ in config_changes(saved_path, argv)]
        except (Exception, SystemExit):  # an argument or config that no longer exists: the trainer config's keys
            pass
    config = run.config.partition("/")[0]
    path = _trainer_config_file(run.trainer, config)
    if path is None:
        return []
    with open(path) as f:
        current = (yaml.safe_load(f) or {}).get("TRAINER") or {}
    with open(saved_path) as f:
        saved = yaml.safe_load(f) or {}
    overridden = {"N_CTX", "CSC", "CLASS_TOKEN_POSITION"} if "/" in run.config else set()
    keys = _diff(saved.get("TRAINER") or {}, current, "TRAINER.")
    return sorted(k for k in keys if k.rsplit(".", 1)[-1] not in overridden)


def find_runs(root, check_stale=True):
    """Every run folder below ``root`` in a known scheme, finished or not (see :class:`Run`)."""
    runs = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        rel = osp.relpath(dirpath, root)
        if rel == ".":
            continue
        parts = rel.split(os.sep)
        info = classify(parts)
        if info is None:
            continue
        accuracy, source = _read_run(dirpath)
        if source is None:
            continue
        if parts[-1].startswith("seed"):  # don't descend into a run's own folders (prompt_learner/, teacher/, ...)
            if info.get("config") != "testbed" or info["protocol"] != "base2new":
                dirnames[:] = []
        run = Run(path=dirpath, accuracy=accuracy, source=source, **info)
        if source == "unfinished":
            run.status, run.source = "unfinished", ""
        elif check_stale:
            run.stale_keys = stale_keys(run)
            if run.stale_keys:
                run.status = "stale"
        runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------------------- tables
@dataclass
class Cell:
    values: list = field(default_factory=list)

    @property
    def n(self):
        return len(self.values)

    @property
    def mean(self):
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def std(self):
        if not self.values:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / len(self.values))


def harmonic(base, new):
    """The harmonic mean of base and new accuracy (H); None when either is missing."""
    if base is None or new is None:
        return None
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass
class Row:
    dataset: str  # a dataset name, or "average"
    cells: dict  # column -> (mean, std, n); H and averages have std None
    datasets: int = 1  # for the average row: how many datasets it averages


@dataclass
class Table:
    protocol: str
    trainer: str
    config: str
    columns: list
    rows: list
    configs: list = field(default_factory=list)  # the run folders' config names (few-shot: per shot count)
    method: str = None  # the published method compared with (--compare published)

    @property
    def title(self):
        return f"{PROTOCOL_TITLES[self.protocol]}: {self.trainer} / {self.config}"

    def row(self, dataset):
        return next((r for r in self.rows if r.dataset == dataset), None)


def _cell(values):
    c = Cell(list(values))
    return (c.mean, c.std, c.n)


def _average_row(rows, columns, expected):
    cells, counts = {}, []
    for col in columns:
        means = [r.cells[col][0] for r in rows if r.cells.get(col) and r.cells[col][0] is not None]
        counts.append(len(means))
        cells[col] = (sum(means) / len(means), None, len(means)) if means else None
    return Row("average", cells, datasets=min(counts) if counts else 0)


def _base2new_table(key, runs, datasets):
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.split in ("base", "new"):
            by[r.dataset][r.split].append(r.accuracy)
    order = [d for d in datasets if d in by] + sorted(d for d in by if d not in datasets)
    rows = []
    for d in order:
        base, new = _cell(by[d]["base"]), _cell(by[d]["new"])
        cells = {"base": base if base[2] else None, "new": new if new[2] else None}
        cells["H"] = (harmonic(base[0], new[0]), None, min(base[2], new[2])) if base[2] and new[2] else None
        rows.append(Row(d, cells))
    complete = [r for r in rows if r.cells["base"] and r.cells["new"]]
    b = [r.cells["base"][0] for r in complete]
    n = [r.cells["new"][0] for r in complete]
    if complete:
        mb, mn = sum(b) / len(b), sum(n) / len(n)
        rows.append(Row("average", {"base": (mb, None, len(b)), "new": (mn, None, len(n)),
                                    "H": (harmonic(mb, mn), None, len(b))}, datasets=len(complete)))
    return Table(*key, columns=["base", "new", "H"], rows=rows)


def _fewshot_table(key, runs, datasets):
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by[r.dataset][r.shots].append(r.accuracy)
    shots = sorted({r.shots for r in runs} | set(SHOTS))
    order = [d for d in datasets if d in by] + sorted(d for d in by if d not in datasets)
    rows = [Row(d, {k: (_cell(by[d][k]) if by[d][k] else None) for k in shots}) for d in order]
    rows.append(_average_row(rows, shots, len(order)))
    return Table(*key, columns=shots, rows=rows)


def _transfer_table(key, runs, sources, targets):
    by = defaultdict(list)
    for r in runs:
        by[r.dataset].append(r.accuracy)
    src = [r.accuracy for r in sources]
    rows = [Row("imagenet", {"accuracy": _cell(src) if src else None})]
    order = [t for t in targets if t in by] + sorted(t for t in by if t not in targets)
    rows += [Row(t, {"accuracy": _cell(by[t])}) for t in order]
    rows.append(_average_row([r for r in rows[1:] if r.dataset in targets], ["accuracy"], len(targets)))
    return Table(*key, columns=["accuracy"], rows=rows)


@dataclass
class Report:
    tables: list
    runs: list
    missing: list  # dicts: protocol, trainer, config, dataset, seed, shots, split, path (expected folder, if known)
    unfinished: list  # Run
    stale: list  # Run
    compare: str = None

    def records(self):
        """One dict per table cell: protocol, trainer, config, dataset, metric, mean, std, n (seeds; for an average
        row: datasets), published, diff, source."""
        out = []
        for t in self.tables:
            for row in t.rows:
                for col in t.columns:
                    cell = row.cells.get(col)
                    pub = _published(t, row.dataset, col) if self.compare else None
                    mean = cell[0] if cell else None
                    out.append({"protocol": t.protocol, "trainer": t.trainer, "config": t.config,
                                "dataset": row.dataset, "metric": col, "mean": mean,
                                "std": cell[1] if cell else None, "n": cell[2] if cell else 0,
                                "method": t.method,
                                "published": pub.value if pub else None,
                                "diff": (mean - pub.value) if (pub and mean is not None
                                                               and not _partial(t, row)) else None,
                                "source": pub.source if pub else None})
        return out

    def to_frame(self):
        """:meth:`records` as a pandas DataFrame (pandas is not a dependency of vlpeft: install it to use this)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Report.to_frame() needs pandas: pip install pandas (or use report.records())") from None
        return pd.DataFrame(self.records())


def _expected_count(table):
    if table.protocol in ("xd", "dg"):
        return len(XD_TARGETS if table.protocol == "xd" else DG_TARGETS)
    if table.config == "testbed":
        return len([r for r in table.rows if r.dataset != "average"])
    return len(ALL_DATASETS)


def _partial(table, row):
    """An average row over fewer datasets than the protocol's: shown, never compared with a published average."""
    if row.dataset != "average":
        return False
    return {c[2] for c in row.cells.values() if c} != {_expected_count(table)}


def _published(table, dataset, metric):
    if not table.method or table.config == "testbed":  # the testbed's datasets are not the papers'
        return None
    return published_table.entry(table.method, table.protocol, dataset, metric)


def _expected_seeds(group_runs, seeds):
    return sorted(set(seeds) if seeds else ({r.seed for r in group_runs} | set(SEEDS)))


def results(root, seeds=None, datasets=None, compare=None, check_stale=True, include_stale=False, methods=None):
    """The tables of every finished run under ``root`` (a :class:`Report`).

    seeds: the seeds each cell should have (default 1 2 3 plus any seen); datasets: the base-to-new / few-shot
    datasets expected (default CoOp's 11; the testbed's: those seen); compare: "published" adds the published
    numbers (``vlpeft.published``); methods: {(trainer, config) or trainer: published method} overriding
    ``published.method_for``; include_stale: average stale runs too (they are still listed)."""
    runs = find_runs(root, check_stale=check_stale)
    unfinished = [r for r in runs if r.status == "unfinished"]
    stale = [r for r in runs if r.status == "stale"]
    usable = [r for r in runs if r.status == "ok" or (include_stale and r.status == "stale")]
    present = {(r.protocol, r.trainer, r.config, r.dataset, r.seed, r.shots, r.split) for r in runs
               if r.status != "unfinished"}
    groups = defaultdict(list)
    for r in usable:
        groups[r.group].append(r)
    all_groups = defaultdict(list)
    for r in runs:
        all_groups[r.group].append(r)
    sources = defaultdict(list)  # (trainer, config) -> imagenet 16-shot runs (xd / dg sources)
    for r in usable:
        if r.protocol == "fewshot" and r.dataset == "imagenet" and r.shots == 16:
            sources[(r.trainer, r.config)].append(r)
    transfer_keys = {(k[1], k[2]) for k in all_groups if k[0] in ("xd", "dg")}

    tables, missing, sources_reported = [], [], set()
    for key in sorted(all_groups, key=lambda k: (list(PROTOCOL_TITLES).index(k[0]), k[1], k[2])):
        protocol, trainer, config = key
        group = groups.get(key, [])
        testbed = config == "testbed"
        expect_ds = (list(datasets) if datasets else
                     (sorted({r.dataset for r in all_groups[key]}) if testbed else list(ALL_DATASETS)))
        exp_seeds = _expected_seeds(all_groups[key], seeds)
        if protocol == "fewshot":
            runs_here = all_groups[key]
            if all(r.dataset == "imagenet" and r.shots == 16 for r in runs_here) and \
                    any((trainer, r.config) in transfer_keys for r in runs_here):
                # only the ImageNet source runs of a cross-dataset / DG config: shown (and checked) there
                continue
            table = _fewshot_table(key, group, expect_ds)
            table.configs = sorted({r.config for r in runs_here})
            seen = {(r.dataset, r.shots, r.seed) for r in runs_here if r.status != "unfinished"}
            shots = sorted({r.shots for r in runs_here} | set(SHOTS))
            for d in expect_ds:
                for k in shots:
                    for s in exp_seeds:
                        if (d, k, s) not in seen:
                            missing.append(dict(protocol=protocol, trainer=trainer, config=config, dataset=d,
                                                seed=s, shots=k, split="all", path=None))
        elif protocol == "base2new":
            table = _base2new_table(key, group, expect_ds)
            for d in expect_ds:
                for split, folder in (("base", "train_base"), ("new", "test_new")):
                    for s in exp_seeds:
                        if (protocol, trainer, config, d, s, 16, split) not in present and not testbed:
                            missing.append(dict(protocol=protocol, trainer=trainer, config=config, dataset=d, seed=s,
                                                shots=16, split=split, path=osp.join(
                                                    root, "base2new", folder, d, "shots_16", trainer, config,
                                                    f"seed{s}")))
                        elif testbed and not any(r.dataset == d and r.seed == s and r.split == split
                                                 for r in all_groups[key] if r.status != "unfinished"):
                            missing.append(dict(protocol=protocol, trainer=trainer, config=config, dataset=d, seed=s,
                                                shots=16, split=split, path=None))
        else:
            targets = XD_TARGETS if protocol == "xd" else DG_TARGETS
            src = sources.get((trainer, config), [])
            table = _transfer_table(key, group, src, targets)
            base_cfg, _, nctx = config.partition("/")
            for s in exp_seeds:
                has_source = any(r.seed == s and r.dataset == "imagenet" and r.shots == 16
                                 for r in all_groups.get(("fewshot", trainer, _fewshot_family(config)), [])
                                 if r.config == config and r.status != "unfinished")
                if not has_source and (trainer, config, s) not in sources_reported:
                    sources_reported.add((trainer, config, s))
                    missing.append(dict(protocol=f"{protocol} source", trainer=trainer, config=config,
                                        dataset="imagenet", seed=s, shots=16, split="source",
                                        path=osp.join(root, "imagenet", trainer, f"{base_cfg}_16shots",
                                                      *([nctx] if nctx else []), f"seed{s}")))
                for t in targets:
                    if (protocol, trainer, config, t, s, 16, "target") not in present:
                        missing.append(dict(protocol=protocol, trainer=trainer, config=config, dataset=t, seed=s,
                                            shots=16, split="target",
                                            path=osp.join(root, "evaluation", trainer, f"{base_cfg}_16shots",
                                                          *([nctx] if nctx else []), t, f"seed{s}")))
        if compare:
            override = (methods or {}).get((trainer, config)) or (methods or {}).get(trainer)
            table.method = override or published_table.method_for(trainer, config)
        if not table.configs:
            table.configs = [config]
        tables.append(table)
    return Report(tables=tables, runs=runs, missing=missing, unfinished=unfinished, stale=stale, compare=compare)


def _fewshot_family(config):
    base, _, nctx = config.partition("/")
    base = _EPOCHS.sub("", base) or base
    return base + ("/" + nctx if nctx else "")


# ---------------------------------------------------------------------------------------------------------- output
def _fmt_cell(cell, average=False):
    if cell is None or cell[0] is None:
        return "-"
    mean, std, n = cell
    if std is None:
        return f"{mean:.2f}" if average else f"{mean:.2f} ({n})"
    return f"{mean:.2f} ± {std:.2f} ({n})"


def _column_name(protocol, col):
    return f"{col} shots" if protocol == "fewshot" else str(col)


def table_rows(table, compare=False):
    """(headers, rows) of one table as strings: each cell ``mean ± std (seeds)``; H and average rows without std;
    with ``compare``, a published and a Δ column after each column."""
    headers = ["dataset"]
    for col in table.columns:
        headers.append(_column_name(table.protocol, col))
        if compare:
            headers += ["published", "Δ"]
    rows = []
    for row in table.rows:
        label = row.dataset
        partial = _partial(table, row)
        if partial:
            counts = "/".join(map(str, sorted({c[2] for c in row.cells.values() if c})))
            label = f"average ({counts} of {_expected_count(table)} datasets)"
        elif table.protocol in ("xd", "dg") and row.dataset == "imagenet":
            label = "imagenet (source)"
        cells = [label]
        for col in table.columns:
            cell = row.cells.get(col)
            cells.append(_fmt_cell(cell, average=row.dataset == "average" or col == "H"))
            if compare:
                pub = _published(table, row.dataset, col)
                cells.append(f"{pub.value:.2f}" if pub else "")
                cells.append(f"{cell[0] - pub.value:+.2f}" if pub and cell and cell[0] is not None and not partial
                             else "")
        rows.append(cells)
    return headers, rows


def _listing(report):
    parts = []
    if report.missing:
        lines = [f"  {m['protocol']} {m['trainer']}/{m['config']} {m['dataset']}"
                 + (f" {m['shots']} shots" if m["protocol"] == "fewshot" else "")
                 + (f" {m['split']}" if m["protocol"] == "base2new" else "") + f" seed {m['seed']}"
                 + (f": {m['path']}" if m.get("path") else "") for m in report.missing]
        parts.append(f"Missing runs ({len(report.missing)}), not in the means:\n" + "\n".join(lines))
    if report.unfinished:
        parts.append(f"Unfinished runs ({len(report.unfinished)}: no results.json, no result block in log.txt), "
                     "not in the means:\n" + "\n".join(f"  {r.path}" for r in report.unfinished))
    if report.stale:
        parts.append(f"Stale runs ({len(report.stale)}: config.yaml differs from what the config gives now), "
                     "not in the means unless --include-stale:\n"
                     + "\n".join(f"  {r.path} ({', '.join(r.stale_keys[:8])})" for r in report.stale))
    return "\n\n".join(parts)


def render(report, fmt="table"):
    """The report as text: ``table`` (terminal), ``markdown`` or ``csv`` (one line per cell, :meth:`records`)."""
    from tabulate import tabulate

    if fmt == "csv":
        buf = io.StringIO()
        fields = ["protocol", "trainer", "config", "dataset", "metric", "mean", "std", "n", "method", "published",
                  "diff", "source"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for rec in report.records():
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v))
                             for k, v in rec.items()})
        return buf.getvalue()
    compare = bool(report.compare)
    out = []
    for t in report.tables:
        headers, rows = table_rows(t, compare)
        title = t.title + (f" (configs: {', '.join(t.configs)})" if t.configs != [t.config] else "")
        if compare:
            title += f"; published: {t.method}" if t.method else "; no published numbers for this trainer"
        if fmt == "markdown":
            out.append(f"### {title}\n\n" + tabulate(rows, headers, tablefmt="github"))
        else:
            out.append(f"{title}\n" + tabulate(rows, headers, tablefmt="simple"))
    if compare:
        sources = sorted({_published(t, r.dataset, c).source for t in report.tables for r in t.rows
                          for c in t.columns if _published(t, r.dataset, c)})
        if sources:
            out.append("Published numbers: " + "; ".join(sources) + " (vlpeft/published.py).")
    listing = _listing(report)
    if listing:
        out.append(listing)
    if not report.tables and not listing:
        out.append("No runs found.")
    return "\n\n".join(out) + "\n"


def plot(report, out_dir):
    """Few-shot curves (methods as lines) per dataset and averaged, and base/new bars per dataset for base-to-new,
    as PNG files in ``out_dir`` (written atomically). Returns the paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install vlpeft[plot]") from None
    from vlpeft.engine.utils import atomic_write_bytes

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        path = osp.join(out_dir, name)
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)

    paths = []
    few = [t for t in report.tables if t.protocol == "fewshot"]
    for dataset in sorted({r.dataset for t in few for r in t.rows}):
        fig, ax = plt.subplots(figsize=(5, 4))
        for t in few:
            row = t.row(dataset)
            if row is None:
                continue
            pts = [(k, row.cells[k][0]) for k in t.columns if row.cells.get(k) and row.cells[k][0] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{t.trainer} ({t.config})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(SHOTS)
        ax.set_xticklabels([str(k) for k in SHOTS])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
        save(fig, f"fewshot_{dataset}.png")
    for t in report.tables:
        if t.protocol != "base2new":
            continue
        rows = [r for r in t.rows if r.cells.get("base") and r.cells.get("new")]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.8), 4))
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r.cells["base"][0] for r in rows], 0.4, label="base")
        ax.bar([x + 0.2 for x in xs], [r.cells["new"][0] for r in rows], 0.4, label="new")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r.dataset for r in rows], rotation=45, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(t.title)
        ax.legend()
        safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{t.trainer}_{t.config}")
        save(fig, f"base2new_{safe}.png")
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output root of the protocol scripts (their OUTPUT), or a testbed --output")
    parser.add_argument("--compare", choices=["published"], help="add the published numbers and the difference")
    parser.add_argument("--format", choices=["table", "markdown", "csv"], default="table")
    parser.add_argument("--output", help="write the text to this file (atomically) instead of printing it")
    parser.add_argument("--plot", metavar="DIR", help="write few-shot curves and base/new bars as PNGs to DIR")
    parser.add_argument("--seeds", type=int, nargs="+", help="the seeds expected per cell (default 1 2 3)")
    parser.add_argument("--datasets", nargs="+", help="the datasets expected (default CoOp's 11)")
    parser.add_argument("--include-stale", action="store_true", help="average stale runs too (still listed)")
    parser.add_argument("--no-stale-check", action="store_true", help="do not compare config.yaml with the configs")
    parser.add_argument("--method", action="append", default=[], metavar="TRAINER[/CFG]=METHOD",
                        help="compare TRAINER (or TRAINER/CFG) with this published method (see published.METHODS)")
    args = parser.parse_args(argv)
    if not osp.isdir(args.root):
        parser.error(f"no such directory: {args.root}")
    methods = {}
    for spec in args.method:
        target, sep, method = spec.partition("=")
        if not sep or method not in published_table.METHODS:
            parser.error(f"--method {spec}: expected TRAINER[/CFG]=METHOD with METHOD one of "
                         + ", ".join(published_table.METHODS))
        trainer, _, cfg = target.partition("/")
        methods[(trainer, cfg) if cfg else trainer] = method
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.exit(2, "--plot needs matplotlib: pip install vlpeft[plot]\n")
    report = results(args.root, seeds=args.seeds, datasets=args.datasets, compare=args.compare,
                     check_stale=not args.no_stale_check, include_stale=args.include_stale, methods=methods)
    text = render(report, args.format)
    if args.output:
        from vlpeft.engine.utils import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"Written to {args.output}")
    else:
        sys.stdout.write(text)
    if args.plot:
        for path in plot(report, args.plot):
            print(f"Plot written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
