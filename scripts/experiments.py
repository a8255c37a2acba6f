"""Shared by the experiment scripts: the common flags, the main.py command of each run, and the
launch: list the runs (--dry_run), show where they stand (--status), or start the unfinished ones
with the --launcher: serial (one after another in this terminal, the default), local (several at
once, launch_local.py) or slurm (one job each, launch_slurm.py).

A run is one call of main.py into its own folder ``<save_path>/<name>``. A folder that holds
results.json is finished and skipped; one that holds a last.pt (in it or below it, as a CSL run's
stage-1 model in csl_prior_ignore/) but no results.json was interrupted and is continued with
--resume; so rerunning a script resumes a sweep where it stopped. Every launcher claims a run's
folder before starting it (claims.py), so a run that another launcher holds is shown as running or
queued and skipped. A run that needs other runs' results (the fine-tuning runs of a LinearInit
search need the linear search's best pair) waits until they are done; the runs are listed, and
started, after the runs they need.

    python scripts/experiments.py status RUNS_DIR    # every run of the sweeps launched into RUNS_DIR

Folder names of table rows (protocol_runs), so that no two kinds of run ever share a folder:
    <dataset>_<method>_<protocol>[_li-<style>][_linear][_b<bsize>_lr<lr>]_s<seed>
<protocol>: ll or cole (the row's registry entry); _li-<style>: --train_mode linear_init with --linear_init_style
within or cole; _linear: a linear-only run of the LinearInit search (--num_epochs 0), whose
b<bsize>_lr<lr> are --linear_init_bsize / --linear_init_lr; otherwise b<bsize>_lr<lr> are a Cole
search run's --bsize / --lr. Examples: coco_LL-R_ll_s0, coco_LL-R_ll_li-within_s0,
pascal_WAN_cole_b8_lr0.001_s0, pascal_WAN_cole_li-cole_linear_b16_lr0.0001_s0.
"""
import argparse
import dataclasses
import functools
import os
import subprocess
import sys
import typing

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_DIR, "main.py")
SCORER = os.path.join(REPO_DIR, "scripts", "zero_shot_scores.py")
sys.path.insert(0, REPO_DIR)
import config  # noqa: E402  (after the repository is on the path: the published linear-phase pairs)
import methods  # noqa: E402
import run_files  # noqa: E402
import zero_shot  # noqa: E402
from errors import UserError  # noqa: E402

import claims  # noqa: E402  (scripts/ modules, after the repository: they import errors)
import launch_local  # noqa: E402
import launch_slurm  # noqa: E402
import sweep_status  # noqa: E402
import tasks  # noqa: E402

LAUNCHERS = ("serial", "local", "slurm")

# --demo: the demo dataset with the small-model flags of the README's quick start, so a script's
# whole pipeline runs on a CPU in minutes: ResNet-18 from the demo's pretrained weights (the stand-in
# for ImageNet, data/demo_backbone.py), at a fine-tuning lr. 6 epochs at delta_rel 3 %/epoch modify up
# to 15 % of the entries; the paper's 0.1-0.5 %/epoch would barely act in 6 epochs.
DEMO_FLAGS = ["--arch", "resnet18", "--weights", "demo", "--image_size", "64", "--lr", "1e-4",
              "--num_epochs", "6", "--num_workers", "2"]
DEMO_DELTA_REL = 3.0

def rate_scheme(method):
    """Whether a method's modified share grows with --delta_rel (its entry's ``modification_rate``)."""
    return method is not None and methods.get(method).rate_scheme


# The rows of the tables that runs make (methods.Row, registered by each method's family): folder key
# -> its main.py flags. LL-* rows take the authors' delta_rel for the dataset (their entry's settings)
# unless a script passes --delta_rel.
ROWS = {row.key: row for row in methods.rows_in_order() if row.flags}
METHODS = {key: list(row.flags) for key, row in ROWS.items()}
# The rows of a rate scheme alone (LL-R, LL-Ct, LL-Cp), which the demo and Table 3 give a delta_rel.
LL_METHODS = tuple(key for key, row in ROWS.items() if not (row.clean or row.boostlu) and rate_scheme(row.method))
# Not rows of the paper, added by name (--methods): CSL, the methods after the paper, LL + BoostLU.
BEYOND_PAPER = {key: flags for key, flags in METHODS.items() if not ROWS[key].paper_row}
# Each row runs under the training protocol (main.py --protocol, config.PROTOCOLS) that made its
# published number, its entry's ``protocol``: the LL paper cites Cole et al. [7] for WAN, LSAN, EPR and
# ROLE, so those rows run Cole et al.'s way, with their search over COLE_SEARCH; the others under the
# LL paper's settings, the methods after it with their authors' own batch size and stopping.


@dataclasses.dataclass
class BestOf:
    """Flags taken from the best of other runs on their results.json's best_val_map: a fine-tuning
    run of Cole et al.'s LinearInit takes the (lr, bsize) of the best run of the linear search."""
    candidates: dict   # run name -> the flags it gives when it is the best
    waiting: str       # the state of a run while a candidate is unfinished, e.g. "after linear search"

    def flags(self, save_path):
        """The best candidate's flags, or None while one has no results.json yet."""
        folders = {name: os.path.join(save_path, name) for name in self.candidates}
        if not all(map(run_files.finished, folders.values())):
            return None
        scores = {name: run_files.read_json(folder, run_files.RESULTS)["best_val_map"] for name, folder in folders.items()}
        return self.candidates[max(self.candidates, key=scores.get)]

    def placeholder(self):
        """The flags as listed before the candidates finish: their names, each value '<best>'."""
        first = next(iter(self.candidates.values()))
        return [f if f.startswith("--") else "<best>" for f in first]


@dataclasses.dataclass
class Run:
    name: str          # folder name under the script's --save_path
    dataset: str
    args: list         # main.py flags besides --dataset, --data_dir, --save_path, --exp_name
    method: str = None  # the registered method it trains (methods/)
    fixed: list = dataclasses.field(default_factory=list)   # after the user's flags, which must not
                                                            # override them (a linear-only run's --num_epochs 0)
    after: typing.Optional[BestOf] = None                   # flags from other runs' results



def script_parser(doc, save_name):
    """The flags every experiment script shares. Unknown flags are passed on to main.py."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=os.path.join(REPO_DIR, "data"),
                   help="parent folder holding one formatted folder per dataset (<data_dir>/coco, ...; "
                        "data/README.md)")
    p.add_argument("--seeds", type=int, default=1, help="number of training seeds: 0, 1, ..., seeds-1")
    p.add_argument("--save_path", default=save_name and os.path.join("runs", save_name),
                   help="the runs' parent folder (default runs/<table or figure>)")
    p.add_argument("--nproc_per_node", type=int, default=1,
                   help="GPUs per run: above 1, each run starts under torchrun with this many processes, "
                        "which share each --bsize batch (README 'Several GPUs')")
    p.add_argument("--dry_run", action="store_true", help="list the runs and their state; start nothing")
    for mode in zero_shot.MODES:
        readers = " and ".join(m.name for m in methods.REGISTRY.values() if m.scores == mode)
        p.add_argument(f"--clip_{mode}", default=None, metavar="FILE",
                       help=f"the CLIP {zero_shot.DEFAULT_MODEL[mode]} weights file from which the {readers} rows' "
                            f"zero-shot scores are made "
                            f"first, once per dataset (scripts/zero_shot_scores.py --mode {mode} --weights; "
                            f"docs/methods.md). --demo scores with the demo backbone's own head instead")
    p.add_argument("--demo", action="store_true",
                   help="run on the demo dataset with a small model (ResNet-18 from scratch, 64 px, 6 "
                        "epochs): the whole pipeline on a CPU in minutes")
    add_launcher_flags(p)
    return p


def add_launcher_flags(p):
    """How the runs are started (docs/reproducing.md 'On several GPUs and on a cluster')."""
    g = p.add_argument_group("launching")
    g.add_argument("--launcher", default="serial", choices=LAUNCHERS,
                   help="serial: one run after another in this process's terminal; local: up to --max_parallel "
                        "runs at once on this machine, each one's output in its folder's launch.log; slurm: one "
                        "SLURM job per run through submitit, submitted at once (this command then returns)")
    g.add_argument("--status", action="store_true",
                   help="list every run as done / running / queued / failed / interrupted / not started, with its "
                        "job id (and a failed run's last log lines); start nothing")
    g.add_argument("--max_parallel", type=int, default=None,
                   help="local: runs at once (default: as many as --gpus holds runs of --nproc_per_node GPUs; "
                        "1 without --gpus); each gets its share of the cores (OMP_NUM_THREADS, unless set)")
    g.add_argument("--gpus", default=None, metavar="0,1,...",
                   help="local: the GPU ids to share out, --nproc_per_node per run, through CUDA_VISIBLE_DEVICES")
    g.add_argument("--slurm_partition", default=None, help="slurm: the partition (default: the cluster's default)")
    g.add_argument("--slurm_time", type=int, default=240,
                   help="slurm: each job's time limit in minutes. A run that needs longer is stopped 90 s before "
                        "it and continues from its last epoch in the requeued job: shorter limits start sooner")
    g.add_argument("--slurm_gpus_per_node", type=int, default=None,
                   help="slurm: GPUs per job (default --nproc_per_node; 0 for CPU-only jobs)")
    g.add_argument("--slurm_cpus_per_task", type=int, default=None,
                   help="slurm: CPUs per job (default 5 per process: main.py's 4 loader workers and itself; "
                        "match it to --num_workers)")
    g.add_argument("--slurm_mem", default=None, help="slurm: memory per job, as sbatch's --mem (e.g. 64G)")
    g.add_argument("--slurm_account", default=None, help="slurm: the account to charge")
    g.add_argument("--slurm_qos", default=None, help="slurm: the quality of service")
    g.add_argument("--slurm_extra", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: any other sbatch option, e.g. --slurm_extra constraint=a100 (repeatable)")


def check_launcher_flags(parser, opts):
    """Stop (exit 2, through parser.error) on launcher flags that cannot work, before anything starts."""
    gpus = opts.gpus.split(",") if opts.gpus else []
    if gpus and len(gpus) < opts.nproc_per_node:
        parser.error(f"--gpus {opts.gpus} lists {len(gpus)} GPUs, fewer than --nproc_per_node {opts.nproc_per_node} "
                     f"that one run takes: list at least {opts.nproc_per_node}, or lower --nproc_per_node")
    slots = len(gpus) // opts.nproc_per_node if gpus else None
    if opts.max_parallel is not None and opts.max_parallel < 1:
        parser.error(f"--max_parallel {opts.max_parallel}: at least 1 run must run at a time")
    if slots is not None and opts.max_parallel is not None and opts.max_parallel > slots:
        parser.error(f"--max_parallel {opts.max_parallel}: --gpus {opts.gpus} hold {slots} runs of --nproc_per_node "
                     f"{opts.nproc_per_node} GPUs; pass at most --max_parallel {slots}, or more --gpus")
    if opts.slurm_gpus_per_node is not None and 0 < opts.slurm_gpus_per_node < opts.nproc_per_node:
        parser.error(f"--slurm_gpus_per_node {opts.slurm_gpus_per_node}: a run with --nproc_per_node "
                     f"{opts.nproc_per_node} needs that many GPUs in its job (or 0 for a CPU-only job)")
    if any("=" not in pair for pair in opts.slurm_extra):
        parser.error(f"--slurm_extra takes KEY=VALUE (an sbatch option without its dashes), got {opts.slurm_extra}")
    opts.gpus = gpus
    opts.max_parallel = opts.max_parallel or slots or 1


def parse(parser, argv):
    """(options, flags for main.py): what the script does not know goes to every run. Paths become
    absolute, since the runs start in the repository folder."""
    opts, passthrough = parser.parse_known_args(argv)
    check_launcher_flags(parser, opts)
    opts.data_dir = os.path.abspath(opts.data_dir)
    if opts.save_path is not None:
        opts.save_path = os.path.abspath(opts.save_path)
    return opts, passthrough


def method_runs(methods, datasets, seeds, extra=(), suffix=""):
    """One run per method, dataset and seed, named <dataset>_<method><suffix>_s<seed>."""
    return [Run(f"{dataset}_{method}{suffix}_s{seed}", dataset,
                [*METHODS[method], *extra, "--seed", str(seed)], ROWS[method].method)
            for dataset in datasets for method in methods for seed in range(seeds)]


def _pair(bsize, lr):
    return f"b{bsize}_lr{lr:g}"


def linear_search_pending(method, dataset, linear_init_style):
    """Whether a row runs the linear-only search first: Cole et al.'s LinearInit with no published
    linear-phase pair for the method on the dataset (config.COLE_LINEAR_INIT: LSAN and ROLE only)."""
    return linear_init_style == "cole" and config.COLE_LINEAR_INIT.get(ROWS[method].method, {}).get(dataset) is None


def cole_runs(base, dataset, flags, search, seed, linear_search, method=None):
    """A Cole row's runs for one seed: one per (bsize, lr) of ``search``. With ``linear_search``, first
    the linear-only runs, one per (bsize, lr) as the linear phase's pair, 25 epochs, nothing after
    (--num_epochs 0); the fine-tuning runs then take the pair with the best val mAP, as Cole et al. fix
    one linear-phase pair, from a linear-only search, for all their fine-tuning runs."""
    grid = [(b, lr) for b in search["bsize"] for lr in search["lr"]]
    seed_flags = ["--seed", str(seed)]
    linear = {f"{base}_linear_{_pair(b, lr)}_s{seed}": ["--linear_init_lr", str(lr), "--linear_init_bsize", str(b)]
              for b, lr in grid} if linear_search else {}
    # A linear-only run trains no fine-tuning epoch, but --protocol cole requires a --lr: the linear
    # pair as --bsize / --lr too, so its config.json records the pair it ran.
    runs = [Run(name, dataset, [*flags, "--bsize", pair[3], "--lr", pair[1], *pair, *seed_flags], method,
                fixed=["--num_epochs", "0"]) for name, pair in linear.items()]
    after = BestOf(linear, "after linear search") if linear else None
    runs += [Run(f"{base}_{_pair(b, lr)}_s{seed}", dataset, [*flags, "--bsize", str(b), "--lr", str(lr), *seed_flags],
                 method, after=after) for b, lr in grid]
    return runs


def protocol_runs(methods, datasets, seeds, search, extra_of=lambda protocol: (),
                  linear_init_style_of=lambda protocol: None):
    """The runs of table rows, each under its entry's protocol, named as the module says: one
    run per dataset and seed for an LL row; a Cole row, one per (bsize, lr) of ``search`` (a dict like
    config.COLE_SEARCH), of which the collector keeps the best on val mAP. ``extra_of(protocol)``: more
    main.py flags for the rows of that protocol; ``linear_init_style_of(protocol)``: their LinearInit
    style (None: end to end), which goes into the folder name and, when cole with no published
    linear-phase pair, adds the linear-only search before a Cole row's runs."""
    runs = []
    for dataset in datasets:
        for method in methods:
            protocol = ROWS[method].protocol
            style = linear_init_style_of(protocol)
            flags = [*METHODS[method], "--protocol", protocol, *extra_of(protocol)]
            base = f"{dataset}_{method}_{protocol}" + (f"_li-{style}" if style else "")
            for seed in range(seeds):
                if protocol == "cole":
                    runs += cole_runs(base, dataset, flags, search, seed, linear_search_pending(method, dataset, style),
                                      ROWS[method].method)
                else:
                    runs.append(Run(f"{base}_s{seed}", dataset, [*flags, "--seed", str(seed)], ROWS[method].method))
    return runs


def command(run, opts, passthrough=()):
    """The main.py command line of a run (without --resume); a run waiting on others lists the flags
    it will take from them with the value '<best>'."""
    demo = [*DEMO_FLAGS] if opts.demo else []
    if opts.demo and "--delta_rel" not in run.args and rate_scheme(run.method):
        demo += ["--delta_rel", str(DEMO_DELTA_REL)]
    after = []
    if run.after is not None:
        after = run.after.flags(opts.save_path) or run.after.placeholder()
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={opts.nproc_per_node}"]
                if opts.nproc_per_node > 1 else [sys.executable])
    # The demo's flags before the run's, so a searched --lr or --bsize wins; the user's after them, then
    # the flags that the run must keep.
    return [*launcher, MAIN, "--dataset", run.dataset, "--data_dir", os.path.join(opts.data_dir, run.dataset),
            "--save_path", opts.save_path, "--exp_name", run.name, *demo, *run.args, *after, "--amp", "none",
            *passthrough, *run.fixed]


def has_checkpoint(folder):
    """Whether a last.pt lies in ``folder`` or below it: a CSL run killed in its stage 1 leaves only
    csl_prior_ignore/last.pt, and main.py refuses to restart such a folder without --resume."""
    return any(run_files.LAST in files for _, _, files in os.walk(folder))


def run_state(run, opts, held=None):
    """'done' (results.json), 'running' or 'queued' while a live owner holds the run's claim
    (claims.py), 'resume' (a last.pt in the folder or below it), the run's waiting state (e.g.
    'after linear search') while the runs it takes flags from are unfinished, or 'new'. ``held``:
    claims.survey of the sweep's folders (read here for this run's folder when None)."""
    folder = os.path.join(opts.save_path, run.name)
    if run_files.finished(folder):
        return "done"
    claim = (claims.survey([folder]) if held is None else held).get(folder)
    if claim is not None and claim.alive:
        return claim.state
    if has_checkpoint(folder):
        return "resume"
    if run.after is not None and run.after.flags(opts.save_path) is None:
        return run.after.waiting
    return "new"


def summary(states):
    """'1 done, 1 to resume, 2 new', then the count of each waiting state."""
    waiting = [s for s in dict.fromkeys(states) if s not in ("done", "resume", "new")]
    return ", ".join([f"{states.count('done')} done", f"{states.count('resume')} to resume",
                      f"{states.count('new')} new", *(f"{states.count(s)} {s}" for s in waiting)])


def score_mode(run):
    """The zero-shot score file a run's method reads (methods.Method.scores), or None."""
    return None if run.method is None else methods.get(run.method).scores


@dataclasses.dataclass
class ScoreStep:
    """A zero-shot score file that runs read, made by scripts/zero_shot_scores.py before them."""
    dataset: str
    mode: str
    command: list
    record: str          # written last: the step is done when it exists

    def done(self):
        return os.path.exists(self.record)

    def task_name(self):
        return f"zero_shot_{self.dataset}_{self.mode}"


def score_steps(runs, opts):
    """The ``ScoreStep`` of each (dataset, mode) that the runs read."""
    steps = []
    for dataset, mode in dict.fromkeys((run.dataset, score_mode(run)) for run in runs if score_mode(run)):
        data_dir = os.path.join(opts.data_dir, dataset)
        weights_file = getattr(opts, f"clip_{mode}")
        weights = ["--weights", weights_file] if weights_file and dataset != "demo" else []
        steps.append(ScoreStep(dataset, mode, [sys.executable, SCORER, "--dataset", dataset, "--data_dir", data_dir,
                                               "--mode", mode, *weights], zero_shot.score_paths(data_dir, mode)[1]))
    return steps


def make_scores(steps):
    """Run the missing score steps; the names of those that failed."""
    failed = []
    for step in steps:
        if not step.done():
            print(f"\n=== zero-shot scores: {' '.join(step.command[1:])} ===", flush=True)
            if subprocess.run(step.command, cwd=REPO_DIR).returncode != 0:
                failed.append(f"zero-shot scores of {step.dataset}")
    return failed


def start_command(run, opts, passthrough):
    """The command that starts ``run`` now: with --resume when it has a checkpoint."""
    resume = ["--resume"] if has_checkpoint(os.path.join(opts.save_path, run.name)) else []
    return [*command(run, opts, passthrough), *resume]


def sweep_tasks(runs, steps, opts, passthrough=()):
    """The score steps and the runs as ``tasks.Task`` for the parallel launchers: a run needs the
    runs it takes flags from and the score file its method reads."""
    sweep = [tasks.Task(step.task_name(), os.path.join(opts.save_path, step.task_name()),
                        functools.partial(list, step.command), step.record) for step in steps]
    step_of = {(step.dataset, step.mode): step.task_name() for step in steps}
    for run in runs:
        folder = os.path.join(opts.save_path, run.name)
        needs = [*(run.after.candidates if run.after else []),
                 *([step_of[run.dataset, score_mode(run)]] if score_mode(run) else [])]
        sweep.append(tasks.Task(run.name, folder, functools.partial(start_command, run, opts, tuple(passthrough)),
                                os.path.join(folder, run_files.RESULTS), needs))
    return sweep


def run_serially(run, opts, passthrough, state):
    """Run one run in this terminal under a claim of this process; its exit status, or None when
    another launcher holds it."""
    folder = os.path.join(opts.save_path, run.name)
    claim = claims.owner()
    taken, message = claims.take(folder, claim)
    if not taken:
        print(f"\n=== {run.name}: skipped, {message} ===", flush=True)
        return None
    print(f"\n=== {run.name}{f' ({message})' if message else ''} ===", flush=True)
    returncode = "interrupted"
    try:
        resume = ["--resume"] if state == "resume" else []
        returncode = subprocess.run([*command(run, opts, passthrough), *resume], cwd=REPO_DIR).returncode
    finally:
        if returncode == 0:
            claims.release(folder, claim["token"])
        else:
            claims.update(folder, claim["token"], exit_status=returncode)
    return returncode


def launch_serially(runs, opts, passthrough, steps):
    """Start each unfinished run in turn, its state read again just before (a run may wait on runs
    started before it), after the missing score files. Returns 0 when every run finished, 1 when
    one failed, still waits or is run by another launcher (the others still run)."""
    failed = make_scores(steps)
    elsewhere = []
    for run in runs:
        state = run_state(run, opts)
        if state == "done":
            continue
        if state not in ("resume", "new", "running", "queued"):
            print(f"\n=== {run.name}: not started, {state} (a run it waits on failed) ===", flush=True)
            failed.append(run.name)
            continue
        returncode = run_serially(run, opts, passthrough, state) if state in ("resume", "new") else None
        if returncode is None:
            elsewhere.append(run.name)
        elif returncode != 0:
            failed.append(run.name)
    if elsewhere:
        print(f"\n{len(elsewhere)} runs are run by another launcher: {', '.join(elsewhere)}")
    if failed:
        print(f"\n{len(failed)} runs failed: {', '.join(failed)}; rerun the script to retry them")
    if failed or elsewhere:
        return 1
    print(f"\nAll {len(runs)} runs finished in {opts.save_path}")
    return 0


def launch(runs, opts, passthrough=()):
    """List the runs (and the zero-shot score files that VLPL and AEVLP rows read, made first), or
    their status with --status; unless --dry_run, start the unfinished ones with the --launcher.
    Returns the exit status: 0 when every run finished (slurm: was submitted), 1 when one failed or
    still waits (the others still run), 2 when the launcher cannot start them."""
    steps = score_steps(runs, opts)
    sweep = sweep_tasks(runs, steps, opts, passthrough)
    if opts.status:
        return sweep_status.report(sweep, opts.save_path)
    held = claims.survey([os.path.join(opts.save_path, run.name) for run in runs])
    states = [run_state(run, opts, held) for run in runs]
    for step in steps:
        print(f"[{'done' if step.done() else 'new'}] {' '.join(step.command[1:])}")
    print(f"{len(runs)} runs in {opts.save_path}: {summary(states)}")
    for run, state in zip(runs, states):
        print(f"[{state}] {' '.join(command(run, opts, passthrough)[1:])}")
    if opts.dry_run:
        return launch_slurm.plan(sweep, opts) if opts.launcher == "slurm" else 0
    try:
        if opts.launcher == "slurm":
            launch_slurm.check_cluster(opts.slurm_partition)
        sweep_status.write_manifest(sweep, opts.save_path)
        if opts.launcher == "serial":
            return launch_serially(runs, opts, passthrough, steps)
        if opts.launcher == "local":
            return launch_local.run_all(sweep, opts.max_parallel, opts.gpus, opts.nproc_per_node)
        return launch_slurm.submit_all(sweep, opts)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    status_parser = argparse.ArgumentParser(description="Where a sweep stands (docs/reproducing.md).")
    status_parser.add_argument("command", choices=["status"])
    status_parser.add_argument("runs_dir", help="the runs' parent folder, e.g. runs/table2_end_to_end")
    status_opts = status_parser.parse_args()
    runs_dir = os.path.abspath(status_opts.runs_dir)
    if not os.path.isfile(os.path.join(runs_dir, sweep_status.MANIFEST)):
        status_parser.error(f"{runs_dir} holds no {sweep_status.MANIFEST}: it is written by a launch of an experiment "
                            f"script; give the folder of its --save_path, or run the script with --status")
    sys.exit(sweep_status.report(sweep_status.manifest_tasks(runs_dir), runs_dir))
