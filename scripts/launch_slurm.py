"""--launcher slurm: one SLURM job per task of a sweep, submitted through submitit, as DINO, ConvNeXt
and MAE submit theirs (run_with_submitit.py); the launcher submits, prints the job ids and returns.

- A run with --nproc_per_node P is one job of one task with P GPUs, which starts the run under
  torchrun, the same command as on a workstation: main.py and distributed.py read torchrun's
  variables, torchrun --standalone finds a free port on the node for each job, and one process per
  job handles the requeue signal and the claim. (P SLURM tasks would need SLURM's variables mapped
  to torchrun's, and a claim and a requeue per task.) Runs span one node.
- A task that needs others (a LinearInit fine-tuning run after the linear search; VLPL and AEVLP
  after their zero-shot score file) is submitted with --dependency=afterok on their jobs, and
  --kill-on-invalid-dep=yes, so that it is cancelled, not left pending, when one of them fails. The
  job builds its command when it starts: that is when a fine-tuning run reads the candidates'
  results.json for its '<best>' flags. A needed task run outside SLURM cannot be waited on: the
  dependent is left for a later launch, which never polls.
- Preemption and time limits: submitit asks SLURM for --signal=USR2@90 and, on that signal, calls
  ``TaskJob.checkpoint``, which stops main.py and hands back the same task; submitit requeues the
  job, which starts again with --resume from the run's last.pt (train.py resumes exactly). main.py
  ignores USR2 (it is the job's to handle), so it never dies of it in the middle of a write.
- The job adopts the claim that the launcher wrote for it (the token in the pickled task), so a
  requeued job keeps its claim and a second launcher sees the run as queued or running.
"""
import os
import shutil
import signal
import subprocess

import submitit

import claims
import run_process

from errors import UserError        # the repository is on the path: experiments.py puts it there

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(SCRIPTS_DIR)
REQUEUE_SIGNAL = signal.SIGUSR2     # submitit's (SlurmJobEnvironment.USR_SIG)
# A run longer than --slurm_time is stopped at its time limit and continues in the requeued job,
# at most this many times (submitit's max_num_timeout); preemptions do not count.
MAX_TIMEOUTS = 20


class TaskJob(submitit.helpers.Checkpointable):
    """What a job runs: one task, its output in its folder's launch.log."""

    def __init__(self, task, env):
        self.task, self.env = task, env         # env: added to the run's environment (its threads)
        self.process = None

    def __call__(self):
        task, job_id = self.task, os.environ["SLURM_JOB_ID"]
        here = {k: v for k, v in claims.owner(job_id=job_id, token=task.token).items() if k != "token"}
        if not claims.adopt(task.folder, task.token, **here, exit_status=None):
            raise RuntimeError(f"{task.folder} is claimed by {claims.describe(claims.read(task.folder))}, not by job "
                               f"{job_id}: another launcher took the run over; this job does nothing")
        if task.done():                 # requeued after the run had finished
            claims.release(task.folder, task.token)
            return
        self.process, started = run_process.start(task, self.env, ignore_signals=(REQUEUE_SIGNAL,))
        returncode = self.process.wait()
        log_tail = run_process.finish(task, returncode, started)
        if returncode != 0:
            raise RuntimeError(f"{task.name}: exit {returncode}; {task.folder}/{run_process.LOG} ends:\n{log_tail}")

    def checkpoint(self):
        """Called by submitit on the requeue signal: stop main.py (its last.pt holds the last whole
        epoch) and requeue the same task. Without waiting: this runs inside the signal handler, which
        interrupted this job's own wait for that process (waiting again there deadlocks)."""
        if self.process is not None:
            self.process.terminate()
            run_process.frame(self.task, "stopped by SLURM's requeue signal (time limit or preemption); "
                                         "the requeued job resumes")
        return submitit.helpers.DelayedSubmission(TaskJob(self.task, self.env))


def check_cluster(partition):
    """Stop with a UserError before anything is submitted where SLURM cannot take the jobs."""
    if shutil.which("sbatch") is None:
        raise UserError("--launcher slurm needs SLURM's sbatch, which is not on this machine's PATH: run the "
                        "script on the cluster's login node, or use --launcher local (or serial)")
    if partition is None:
        return
    listed = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True)
    known = listed.stdout.split()
    if listed.returncode == 0 and partition not in known:
        raise UserError(f"--slurm_partition {partition}: this cluster has no such partition; its partitions "
                        f"are {', '.join(known)} (sinfo)")


def job_parameters(opts):
    """submitit's SlurmExecutor parameters of every job, from the --slurm_* flags."""
    extra = dict(pair.split("=", 1) for pair in opts.slurm_extra)
    optional = {"partition": opts.slurm_partition, "account": opts.slurm_account, "qos": opts.slurm_qos}
    gpus = opts.nproc_per_node if opts.slurm_gpus_per_node is None else opts.slurm_gpus_per_node
    params = {"time": opts.slurm_time, "nodes": 1, "ntasks_per_node": 1,
              "cpus_per_task": opts.slurm_cpus_per_task or 5 * opts.nproc_per_node,
              **({"gpus_per_node": gpus} if gpus else {}),
              **{k: v for k, v in optional.items() if v is not None},
              # The job unpickles this module's TaskJob and the scripts' tasks: scripts/ and the
              # repository (errors.py) on its path.
              "setup": [f"export PYTHONPATH={SCRIPTS_DIR}:{REPO_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"],
              "additional_parameters": {**({"mem": opts.slurm_mem} if opts.slurm_mem else {}), **extra}}
    return params


def submit(task, params, after, processes):
    """Submit ``task`` as a job (after the jobs ``after``, if any) whose ``processes`` share its CPUs; its id."""
    executor = submitit.SlurmExecutor(folder=os.path.join(task.folder, "slurm"), max_num_timeout=MAX_TIMEOUTS)
    depend = {"dependency": "afterok:" + ":".join(after), "kill-on-invalid-dep": "yes"} if after else {}
    executor.update_parameters(**{**params, "job_name": task.name,
                                  "additional_parameters": {**params["additional_parameters"], **depend}})
    threads = run_process.thread_share(params["cpus_per_task"], processes)
    return executor.submit(TaskJob(task, threads)).job_id


def dependencies(task, by_name, job_of, unsubmitted):
    """(job ids ``task`` must wait for, or None with the reason it cannot be submitted now)."""
    after = []
    for need in task.needs:
        if by_name[need].done():
            continue
        if need in job_of:
            after.append(str(job_of[need]))
        elif need in unsubmitted:
            return None, f"needs {need}, which was not submitted"
        else:
            return None, f"needs {need}, which runs outside SLURM: launch again when it is done"
    return after, None


def sbatch_flags(params):
    """The main sbatch flags of ``params``, for the dry run."""
    shown = {k: v for k, v in params.items() if k not in ("setup", "additional_parameters")}
    shown.update(params["additional_parameters"])
    return " ".join(f"--{k.replace('_', '-')}={v}" for k, v in shown.items())


def plan(tasks, opts):
    """--dry_run: the tasks that would be submitted now (not those done, queued or running), each
    with the tasks it would wait for."""
    held = claims.survey([task.folder for task in tasks])
    by_name = {task.name: task for task in tasks}
    print(f"--launcher slurm would submit these jobs, each with {sbatch_flags(job_parameters(opts))}:")
    for task in tasks:
        if task.done() or (task.folder in held and held[task.folder].alive):
            continue
        waits = [need for need in task.needs if not by_name[need].done()]
        print(f"  {task.name}" + (f"  (afterok: {', '.join(waits)})" if waits else ""))
    return 0


class Submission:
    """One launch: the job of each task (submitted now, or found in a live claim) and what was not submitted."""

    def __init__(self, tasks, params, processes):
        self.tasks, self.params, self.processes = tasks, params, processes
        self.by_name = {task.name: task for task in tasks}
        self.held = claims.survey([task.folder for task in tasks])
        self.job_of, self.unsubmitted, self.submitted, self.found = {}, {}, [], []

    def place(self, task):
        """Submit ``task`` unless a live owner holds it; one line for the terminal."""
        status = self.held.get(task.folder)
        if status is not None and status.alive:
            self.found.append(task.name)
            if status.claim.get("job_id"):
                self.job_of[task.name] = status.claim["job_id"]
            return f"{status.state:9} {task.name}: {status.owner}"
        after, why = dependencies(task, self.by_name, self.job_of, self.unsubmitted)
        if why is not None:
            return self.not_submitted(task, why)
        taken, message = claims.take(task.folder, claims.owner(token=task.token))
        if not taken:
            self.found.append(task.name)
            return f"skipped   {task.name}: {message}"
        try:
            job_id = submit(task, self.params, after, self.processes)
        except submitit.core.utils.FailedJobError as err:
            claims.release(task.folder, task.token)
            return self.not_submitted(task, f"sbatch failed: {str(err).strip()}")
        claims.update(task.folder, task.token, job_id=job_id)
        self.job_of[task.name] = job_id
        self.submitted.append(job_id)
        return (f"submitted {task.name}: job {job_id}" + (f", afterok {':'.join(after)}" if after else "")
                + (f" ({message})" if message else ""))

    def not_submitted(self, task, why):
        self.unsubmitted[task.name] = why
        return f"not submitted {task.name}: {why}"

    def summary(self):
        parts = [f"{len(self.submitted)} jobs submitted" + (f" ({', '.join(map(str, self.submitted))})"
                                                           if self.submitted else ""),
                 f"{len(self.found)} queued or running already"]
        if self.unsubmitted:
            parts.append(f"{len(self.unsubmitted)} not submitted ({', '.join(self.unsubmitted)})")
        return "SLURM launcher: " + ", ".join(parts) + "; watch them with: python scripts/experiments.py status DIR"


def submit_all(tasks, opts):
    """Submit one job per unfinished task that no live owner holds, in order, each after the jobs of
    the tasks it needs; print each job id and return (0, or 1 when a task could not be submitted)."""
    check_cluster(opts.slurm_partition)
    submission = Submission(tasks, job_parameters(opts), opts.nproc_per_node)
    for task in tasks:
        if not task.done():
            print(submission.place(task), flush=True)
    print(submission.summary().replace("DIR", opts.save_path), flush=True)
    return 1 if submission.unsubmitted else 0
