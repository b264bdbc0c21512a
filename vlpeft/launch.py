"""Run the jobs of a protocol script (``scripts/<method>/run.sh``) on local GPUs / CPU workers, or on SLURM.

    python -m vlpeft.launch maple base2new --datasets eurosat dtd --seeds 1 2 3 --gpus 0,1,2,3
    python -m vlpeft.launch dpc base2new --env BASE=MaPLe --workers 2
    python -m vlpeft.launch maple base2new --dry-run
    python -m vlpeft.launch maple xd --slurm --partition gpu --time 240 --gpus-per-job 1

The job list is the script's own: it is run with ``DRY_RUN=1`` and each command it prints (one ``train.py`` run,
with its ``--output-dir``) becomes a job, so the scripts stay the single source of truth for the jobs, their options
and their output folders. The environment (``DATA``, ``OUTPUT``, ``BASE``, ``LOADEP``, ...) is passed through to the
script; ``--datasets`` / ``--seeds`` / ``--shots`` / ``--data`` / ``--output`` / ``--env KEY=VALUE`` set it.

* Skip rule (as the scripts'): a job whose output directory holds ``results.json`` is skipped, so a re-launch runs
  only what did not finish (a killed job, left without ``results.json``, is re-run and resumes from its checkpoints).
* Dependencies: a job that names another job's output directory in its arguments (``--model-dir`` of a base-to-new or
  cross-dataset evaluation, ``TRAINER.DPC.BACKBONE_DIR``, ``TRAINER.DPL.SEARCH_DIR``, ...) starts only after that job
  succeeded; when it failed, the dependent job is not run (reported as a failed dependency).
* Local runs: ``--gpus 0,1`` runs one job per GPU at a time (``CUDA_VISIBLE_DEVICES`` set per job); ``--workers N``
  runs N jobs at a time on the CPU (``CUDA_VISIBLE_DEVICES=""``). Each job's stdout and stderr go to
  ``<output-dir>/launch.log`` (or ``--log-dir``). A failed job is reported with the tail of its log and does not stop
  the others; the exit status is non-zero when any job failed or was not run for a failed dependency.
* SLURM (``pip install submitit``, the ``slurm`` extra): ``--slurm`` submits job arrays through submitit in waves, a
  wave once the jobs it depends on finished; ``--submitit-local`` runs the same waves with submitit's local executor.
"""
import argparse
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_OPTIONS = ("--output-dir", "--output", "--out")  # train.py, vlpeft.sweep / testbed, gpucheck
SKIP_PREFIX = "Results are available in "
SKIP_SUFFIX = " (results.json). Skip this job"
LOG_NAME = "launch.log"
TAIL_LINES = 20

# job states
PENDING, RUNNING, DONE, FAILED, SKIPPED, DEP_FAILED = "pending", "running", "done", "failed", "skipped", "dep-failed"


class LaunchError(Exception):
    """A job list that cannot be built or run (reported as one line, exit status 2)."""


@dataclass
class Job:
    index: int
    argv: List[str]  # the command, as the script would run it (relative paths are relative to ``cwd``)
    output_dir: Optional[str]  # as printed (None for a command without an output option)
    cwd: str = str(REPO_ROOT)
    deps: List[int] = field(default_factory=list)  # indices of the jobs this one waits for
    finished: bool = False  # the script reported it as finished (results.json present when listed)
    log_path: Optional[str] = None

    def abs_output_dir(self):
        return None if self.output_dir is None else osp.normpath(osp.join(self.cwd, self.output_dir))

    def has_results(self):
        out = self.abs_output_dir()
        return out is not None and osp.isfile(osp.join(out, "results.json"))

    def command(self):
        return shlex.join(self.argv) if self.argv else "(finished: results.json)"


# ---------------------------------------------------------------------------------------------------------------- jobs
def script_path(method, repo_root=REPO_ROOT):
    """``scripts/<method>/run.sh``, or ``scripts/<method>`` when METHOD names a script (e.g. ``coop/base2new.sh``)."""
    scripts = Path(repo_root) / "scripts"
    path = scripts / method if method.endswith(".sh") else scripts / method / "run.sh"
    if not path.is_file():
        known = sorted(p.parent.name for p in scripts.glob("*/run.sh"))
        raise LaunchError(f"no script {path} (methods with a run.sh: {', '.join(known)}; or name a script, e.g. "
                          f"coop/base2new.sh)")
    return path


def option_value(argv, names):
    for i, token in enumerate(argv[:-1]):
        if token in names:
            return argv[i + 1]
    return None


def parse_dry_run(stdout, python, cwd=str(REPO_ROOT)):
    """The jobs of a script's ``DRY_RUN=1`` output: each command line starting with PYTHON is a job (its argv as
    the shell would split it), each "Results are available in DIR" line a finished job (no command). Dependencies:
    a job depends on the earlier jobs whose output directory one of its arguments is (or lies below)."""
    jobs = []
    for line in stdout.splitlines():
        if line.startswith(SKIP_PREFIX) and line.endswith(SKIP_SUFFIX):
            jobs.append(Job(len(jobs), [], line[len(SKIP_PREFIX):-len(SKIP_SUFFIX)], cwd, finished=True))
            continue
        try:
            argv = shlex.split(line)
        except ValueError:
            continue
        if argv and argv[0] == python:
            jobs.append(Job(len(jobs), argv, option_value(argv, OUTPUT_OPTIONS), cwd))
    add_dependencies(jobs)
    return jobs


def add_dependencies(jobs):
    by_dir = {}
    for job in jobs:
        own = job.abs_output_dir()
        for token in job.argv[1:]:
            if "/" not in token or token == job.output_dir:
                continue
            path = osp.normpath(osp.join(job.cwd, token))
            while path and path not in by_dir and osp.dirname(path) != path:
                path = osp.dirname(path)
            dep = by_dir.get(path)
            if dep is not None and dep.abs_output_dir() != own and dep.index not in job.deps:
                job.deps.append(dep.index)
        job.deps.sort()
        if own is not None:
            by_dir[own] = job
    return jobs


def script_env(args, base=None):
    env = dict(os.environ if base is None else base)
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LaunchError(f"--env {item!r}: use KEY=VALUE")
        env[key] = value
    for var, value in (("DATASETS", args.datasets), ("SEEDS", args.seeds), ("SHOTS_LIST", args.shots)):
        if value:
            env[var] = " ".join(value)
    if args.data:
        env["DATA"] = args.data
    if args.output:
        env["OUTPUT"] = args.output
    env.setdefault("PYTHON", sys.executable)
    env["DRY_RUN"] = "1"
    return env


def build_jobs(method, script_args=(), env=None, repo_root=REPO_ROOT):
    """The jobs of ``scripts/<method>/run.sh SCRIPT_ARGS`` under ENV (its DRY_RUN=1 output parsed)."""
    env = dict(os.environ if env is None else env)
    env["DRY_RUN"] = "1"
    python = env.setdefault("PYTHON", sys.executable)
    path = script_path(method, repo_root)
    proc = subprocess.run(["bash", str(path), *script_args], cwd=repo_root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LaunchError(f"{path.relative_to(repo_root)} {' '.join(script_args)} (DRY_RUN=1) failed with exit status "
                          f"{proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    jobs = parse_dry_run(proc.stdout, python, str(repo_root))
    if not jobs:
        raise LaunchError(f"{path.relative_to(repo_root)} {' '.join(script_args)} printed no job")
    return jobs


def assign_logs(jobs, log_dir=None):
    """Each job's log: ``<output-dir>/launch.log``, or ``LOG_DIR/<output dir with / as __>.log`` (``job<i>.log``
    for a command without an output directory, which then needs LOG_DIR, default ``launch_logs``)."""
    for job in jobs:
        out = job.abs_output_dir()
        if log_dir is None and out is not None:
            job.log_path = osp.join(out, LOG_NAME)
        else:
            folder = osp.join(job.cwd, log_dir or "launch_logs")
            name = (job.output_dir.strip("/").replace("/", "__") if job.output_dir else f"job{job.index}") + ".log"
            job.log_path = osp.join(folder, name)
    return jobs


def describe(jobs, out=None):
    """The dry run: each job with its command and the jobs it waits for."""
    out = out or sys.stdout
    for job in jobs:
        state = "finished, skipped" if job.finished or job.has_results() else "to run"
        print(f"[{job.index}] {job.output_dir} ({state})", file=out)
        if job.argv:
            print(f"    {job.command()}", file=out)
        if job.deps:
            print(f"    after: {', '.join(f'[{d}]' for d in job.deps)}", file=out)
    todo = sum(not (j.finished or j.has_results()) for j in jobs)
    print(f"{len(jobs)} jobs, {todo} to run, {len(jobs) - todo} finished", file=out)


def log_tail(path, lines=TAIL_LINES):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------------------- local runs
class LocalRunner:
    """Runs jobs on SLOTS (each a CUDA_VISIBLE_DEVICES value: a GPU id, or "" for a CPU worker), one job per slot at a
    time, in list order as their dependencies allow."""

    def __init__(self, jobs, slots, progress=True, poll=0.05, out=None):
        if not slots:
            raise LaunchError("no slot to run jobs on (--gpus or --workers)")
        self.jobs, self.slots, self.poll, self.out = jobs, list(slots), poll, out or sys.stderr
        self.state = {j.index: PENDING for j in jobs}
        self.returncode = {}
        self.started, self.ended = {}, {}  # index -> time.monotonic()
        self.running = {}  # index -> (Popen, position in slots, log file)
        self.progress = progress

    def counts(self):
        c = Counter(self.state.values())
        return dict(done=c[DONE], running=c[RUNNING], failed=c[FAILED] + c[DEP_FAILED], skipped=c[SKIPPED])

    def _write(self, text, bar):
        if bar is not None:
            bar.write(text, file=self.out)
        else:
            print(text, file=self.out)

    def _start(self, job, pos, bar=None):
        slot = self.slots[pos]
        os.makedirs(osp.dirname(job.log_path), exist_ok=True)
        log = open(job.log_path, "w")
        log.write(f"# {job.command()}\n# CUDA_VISIBLE_DEVICES={slot!r}\n")
        log.flush()
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=slot, PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen(job.argv, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:  # the program or folder is missing: a failed job like any other
            log.write(f"cannot start the job: {exc}\n")
            log.close()
            self.state[job.index] = FAILED
            self.returncode[job.index] = None
            self._write(f"FAILED [{job.index}] {job.output_dir}: cannot start it: {exc}", bar)
            if bar is not None:
                bar.update(1)
            return
        self.running[job.index] = (proc, pos, log)
        self.state[job.index] = RUNNING
        self.started[job.index] = time.monotonic()

    def _settle(self, bar):
        """Mark pending jobs that need no run (finished) or cannot run (a dependency failed)."""
        changed = True
        while changed:
            changed = False
            for job in self.jobs:
                if self.state[job.index] != PENDING:
                    continue
                if job.finished or job.has_results():
                    self.state[job.index] = SKIPPED
                elif any(self.state[d] in (FAILED, DEP_FAILED) for d in job.deps):
                    self.state[job.index] = DEP_FAILED
                    failed = [d for d in job.deps if self.state[d] in (FAILED, DEP_FAILED)]
                    self._write(f"NOT RUN [{job.index}] {job.output_dir}: its dependency "
                                f"{', '.join(f'[{d}]' for d in failed)} failed", bar)
                else:
                    continue
                changed = True
                if bar is not None:
                    bar.update(1)

    def _ready(self):
        for job in self.jobs:
            if self.state[job.index] == PENDING and all(self.state[d] in (DONE, SKIPPED) for d in job.deps):
                yield job

    def _reap(self, bar):
        for index, (proc, _, log) in list(self.running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            log.close()
            del self.running[index]
            job = self.jobs[index]
            self.returncode[index] = rc
            self.ended[index] = time.monotonic()
            if rc == 0:
                self.state[index] = DONE
            else:
                self.state[index] = FAILED
                tail = log_tail(job.log_path).rstrip("\n")
                self._write(f"FAILED [{index}] {job.output_dir} (exit status {rc}; log {job.log_path}), last lines:\n"
                            + "\n".join("    " + line for line in tail.splitlines()), bar)
            if bar is not None:
                bar.update(1)

    def _kill_all(self):
        for proc, _, log in self.running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for proc, _, log in self.running.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()

    def run(self):
        """Run every job; return the final states (index -> state)."""
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.jobs), unit="job", file=self.out, dynamic_ncols=True, mininterval=1.0)
        shown = None
        try:
            while True:
                self._settle(bar)
                busy = {pos for _, pos, _ in self.running.values()}
                free = [pos for pos in range(len(self.slots)) if pos not in busy]
                for job, pos in zip(list(self._ready()), free):
                    if job.has_results():  # finished meanwhile (another launch)
                        self.state[job.index] = SKIPPED
                        if bar is not None:
                            bar.update(1)
                        continue
                    self._start(job, pos, bar)
                if bar is not None and self.counts() != shown:  # redraw on a change only (logs stay short)
                    shown = self.counts()
                    bar.set_postfix(shown, refresh=False)
                    bar.refresh()
                if not self.running and not any(s == PENDING for s in self.state.values()):
                    break
                if not self.running and not list(self._ready()):
                    raise LaunchError("jobs wait for each other (a dependency cycle)")  # not reachable from scripts
                time.sleep(self.poll)
                self._reap(bar)
        except BaseException:
            self._kill_all()
            raise
        finally:
            if bar is not None:
                bar.set_postfix(self.counts(), refresh=False)
                bar.close()
        return dict(self.state)


def summary(jobs, states, out=None):
    out = out or sys.stdout
    c = Counter(states.values())
    print(f"{len(jobs)} jobs: {c[DONE]} done, {c[SKIPPED]} skipped (finished before), {c[FAILED]} failed, "
          f"{c[DEP_FAILED]} not run (failed dependency)", file=out)
    for job in jobs:
        if states[job.index] == FAILED:
            print(f"  failed [{job.index}] {job.output_dir}: see {job.log_path}", file=out)
        elif states[job.index] == DEP_FAILED:
            print(f"  not run [{job.index}] {job.output_dir}: waits for failed [{', '.join(map(str, job.deps))}]",
                  file=out)
    return 0 if not (c[FAILED] or c[DEP_FAILED]) else 1


# -------------------------------------------------------------------------------------------------------- submitit
def run_logged(argv, cwd, log_path):
    """One job inside a submitit task: the command with its output in LOG_PATH; raises when it fails."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log:
        log.write(f"# {shlex.join(argv)}\n")
        log.flush()
        rc = subprocess.call(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if rc != 0:
        raise RuntimeError(f"exit status {rc}; log {log_path}:\n{log_tail(log_path)}")
    return rc


def waves(jobs):
    """Jobs in dependency levels: each wave only depends on earlier waves."""
    level = {}
    for job in jobs:  # the scripts list a job after the jobs it depends on
        level[job.index] = 1 + max((level[d] for d in job.deps), default=-1)
    return [[j for j in jobs if level[j.index] == k] for k in range(max(level.values(), default=-1) + 1)]


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise LaunchError("--slurm / --submitit-local need submitit: pip install submitit "
                          "(or pip install -e '.[slurm]')") from None
    return submitit


def make_executor(args, folder):
    submitit = import_submitit()
    if args.submitit_local:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=args.time, gpus_per_node=args.gpus_per_job)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = dict(timeout_min=args.time, gpus_per_node=args.gpus_per_job, tasks_per_node=1, nodes=1,
                      cpus_per_task=args.cpus_per_job, name="vlpeft")
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
        executor.update_parameters(**params)
    return executor


def run_submitit(jobs, executor, out=None):
    """Submit the jobs wave by wave (one job array per wave), each wave after the previous one finished; the skip
    rule and the failed-dependency rule as in local runs. Returns the final states."""
    out = out or sys.stderr
    states = {}
    for wave in waves(jobs):
        todo = []
        for job in wave:
            if job.finished or job.has_results():
                states[job.index] = SKIPPED
            elif any(states[d] in (FAILED, DEP_FAILED) for d in job.deps):
                states[job.index] = DEP_FAILED
            else:
                todo.append(job)
        if not todo:
            continue
        submitted = executor.map_array(run_logged, [j.argv for j in todo], [j.cwd for j in todo],
                                       [j.log_path for j in todo])
        print(f"submitted {len(todo)} jobs (array {submitted[0].job_id.split('_')[0]}); waiting for them", file=out)
        for job, handle in zip(todo, submitted):
            try:
                handle.result()
                states[job.index] = DONE
            except Exception as exc:  # submitit re-raises the task's error (or a scheduler failure)
                states[job.index] = FAILED
                print(f"FAILED [{job.index}] {job.output_dir}: {str(exc).strip()[-3000:]}", file=out)
    return states


# ------------------------------------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m vlpeft.launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", help="scripts/<method>/run.sh (e.g. maple, dpc), or a script below scripts/ "
                                  "(e.g. coop/base2new.sh)")
    p.add_argument("script_args", nargs="*", metavar="PROTOCOL", help="the script's arguments, e.g. base2new")
    p.add_argument("--datasets", nargs="+", help="DATASETS (default: the script's, CoOp's 11)")
    p.add_argument("--seeds", nargs="+", help="SEEDS (default 1 2 3)")
    p.add_argument("--shots", nargs="+", help="SHOTS_LIST of the few-shot protocol")
    p.add_argument("--data", help="DATA, the datasets root (default: $DATA)")
    p.add_argument("--output", help="OUTPUT, the output root (default: $OUTPUT, else output)")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="another variable for the script (repeatable),"
                                                                       " e.g. --env BASE=MaPLe --env LOADEP=5")
    p.add_argument("--dry-run", action="store_true", help="print the jobs and their dependencies; run nothing")
    p.add_argument("--gpus", help="comma-separated GPU ids: one job per GPU at a time")
    p.add_argument("--workers", type=int, help="run N jobs at a time on the CPU (CUDA_VISIBLE_DEVICES='')")
    p.add_argument("--log-dir", help="write each job's log here instead of <output-dir>/launch.log (relative to the "
                                     "repository root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = p.add_argument_group("SLURM (submitit)")
    s.add_argument("--slurm", action="store_true", help="submit job arrays to SLURM through submitit")
    s.add_argument("--submitit-local", action="store_true", help="the same through submitit's LocalExecutor")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--time", type=int, default=240, help="time limit per job, minutes (default 240)")
    s.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per job (default 1)")
    s.add_argument("--cpus-per-job", type=int, default=8, help="CPUs per job (default 8)")
    s.add_argument("--array-parallelism", type=int, help="most array tasks running at once")
    s.add_argument("--submitit-dir", help="submitit's folder (default: <OUTPUT>/submitit)")
    args = p.parse_args(argv)
    modes = [m for m, on in (("--gpus", args.gpus), ("--workers", args.workers), ("--slurm", args.slurm),
                             ("--submitit-local", args.submitit_local)) if on]
    if len(modes) > 1:
        p.error(f"choose one of {', '.join(modes)}")
    if not modes and not args.dry_run:
        p.error("say where to run: --gpus IDS, --workers N, --slurm or --submitit-local (or --dry-run)")
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        env = script_env(args)
        jobs = assign_logs(build_jobs(args.method, args.script_args, env), args.log_dir)
        if args.dry_run:
            describe(jobs)
            return 0
        if any("$DATA" in job.argv for job in jobs):
            raise LaunchError("DATA is not set: pass --data /path/to/datasets or set DATA (or use --dry-run)")
        if args.slurm or args.submitit_local:
            output = env.get("OUTPUT") or "output"
            folder = args.submitit_dir or osp.join(REPO_ROOT, output, "submitit")
            states = run_submitit(jobs, make_executor(args, folder))
        else:
            slots = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else [""] * args.workers
            states = LocalRunner(jobs, slots, progress=not args.no_progress).run()
    except LaunchError as exc:
        print(f"vlpeft.launch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlpeft.launch: interrupted; the running jobs were stopped (a re-launch runs them again)",
              file=sys.stderr)
        return 130
    return summary(jobs, states)


if __name__ == "__main__":
    sys.exit(main())
