"""One task of a sweep as a process whose output goes to ``launch.log`` in its folder (the local
launcher's runs, and a SLURM job's run), framed by a first line that says where and when it
started and a last line with its exit status and duration, so that the log alone tells when a run ran.
"""
import datetime
import os
import shlex
import signal
import socket
import subprocess
import time

import claims
from run_files import LAUNCH_LOG as LOG

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stamp():
    return datetime.datetime.now().isoformat(timespec="milliseconds")


def thread_share(cores, processes):
    """The environment that gives each of ``processes`` processes its share of ``cores``: torch's
    threads (OMP_NUM_THREADS), unless set already. torch's threads spin while they wait, so
    processes that each take every core slow one another down (on 2 cores, 2 demo runs at once
    with 2 threads each took 4x a run's time each). A run's last digits on a CPU depend on its
    thread count: compare runs made with the same (set OMP_NUM_THREADS for both)."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cores // processes))}


def start(task, env=None, ignore_signals=()):
    """Start ``task`` (a ``tasks.Task`` whose folder is claimed with its token) with its output
    appended to <folder>/launch.log; the claim names the new process. ``env``: variables added to
    this process's environment (CUDA_VISIBLE_DEVICES); ``ignore_signals``: signals the process and
    its children ignore (a SLURM job's requeue signal, which is the job's to handle).
    Returns (process, start time)."""
    command = task.command()
    log = open(os.path.join(task.folder, LOG), "a")
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    log.write(f"=== {stamp()} start on {socket.gethostname()}{', ' + shown if shown else ''}: "
              f"{shlex.join(command)}\n")
    log.flush()

    def ignore():
        for number in ignore_signals:
            signal.signal(number, signal.SIG_IGN)

    process = subprocess.Popen(command, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})}, preexec_fn=ignore if ignore_signals else None)
    log.close()                                  # the child holds its own copy
    claims.update(task.folder, task.token, pid=process.pid, pid_start=claims.process_start(process.pid))
    return process, time.time()


def frame(task, text):
    """Append a frame line to ``task``'s launch.log."""
    with open(os.path.join(task.folder, LOG), "a") as log:
        log.write(f"=== {stamp()} {text}\n")


def finish(task, returncode, started):
    """Record the end of ``task``'s process: the last line of launch.log; on success the claim is
    released, on failure it keeps the exit status. Returns the log's last lines before that line
    (for the terminal) when it failed, else ''."""
    frame(task, f"exit {returncode} after {time.time() - started:.1f} s")
    if returncode == 0:
        claims.release(task.folder, task.token)
        return ""
    claims.update(task.folder, task.token, exit_status=returncode)
    return tail(task.folder)


def tail(folder, lines=5):
    """The last ``lines`` lines of the folder's launch.log that are not its frame lines."""
    try:
        with open(os.path.join(folder, LOG), errors="replace") as f:
            text = [line.rstrip("\n") for line in f if not line.startswith("=== ")]
    except FileNotFoundError:
        return ""
    return "\n".join(text[-lines:])
