"""One run, one owner: the claim file that a launcher writes into a run's folder before the run starts,
so that two launchers pointed at the same folder (two terminals, a rerun while the first still runs,
a second submission to SLURM) never start the same run twice.

``claim.json`` names its owner: the host and process that run the run, the SLURM job id when a job
runs it, and a token that the launcher hands to that job. It appears atomically, complete: written
to a file of its own, then hard-linked to its name, which fails when the name exists (of two
launchers exactly one wins; os.link is atomic on NFS too, where O_EXCL was not always). A run that
succeeds removes its claim; one that fails leaves it with its exit status, which
``experiments.py status`` shows.

An owner is alive, in this order of evidence:
  - with a SLURM job id: while squeue lists the job in a state other than a final one (pending,
    running, requeued, completing, ...); a completed, failed or cancelled job, or one that squeue
    no longer knows, is gone. Where squeue cannot answer, the owner counts as alive.
  - without one, on this host: while its process runs (os.kill(pid, 0)) with the start time the
    claim recorded, since the kernel reuses process ids.
  - on another host, without a job: it cannot be checked, so it counts as alive; the message
    says to delete claim.json once that host's launcher is gone.
A claim whose owner is gone is taken over, with a message that says whose it was.
"""
import dataclasses
import datetime
import json
import os
import socket
import subprocess
import uuid

from run_files import CLAIM  # the repository is on the path: experiments.py and the tests put it there

# squeue's final job states: the job's processes have ended.
FINAL_JOB_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                    "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"}


def process_start(pid):
    """The start time of process ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), or None
    where /proc has no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def owner(pid=None, job_id=None, token=None):
    """A claim for process ``pid`` (default this one) of this host, inside SLURM job ``job_id``
    (default this process's own job, if it runs in one)."""
    pid = pid or os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid),
            "job_id": job_id or os.environ.get("SLURM_JOB_ID"), "token": token or uuid.uuid4().hex,
            "time": datetime.datetime.now().isoformat(timespec="seconds")}


def path(folder):
    return os.path.join(folder, CLAIM)


def read(folder):
    """The folder's claim, or None."""
    try:
        with open(path(folder)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _temporary(folder, claim):
    """``claim`` written to a file of its own in ``folder`` (a name no other writer uses); its path."""
    tmp = os.path.join(folder, f".{CLAIM}.{uuid.uuid4().hex}")
    with open(tmp, "w") as f:
        json.dump(claim, f, indent=1)
    return tmp


def _create(folder, claim):
    """Make ``claim`` the folder's claim if it has none; whether it did."""
    tmp = _temporary(folder, claim)
    try:
        os.link(tmp, path(folder))
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)


def update(folder, token, **fields):
    """Set ``fields`` in the folder's claim if it still holds ``token``; whether it did."""
    claim = read(folder)
    if claim is None or claim["token"] != token:
        return False
    os.replace(_temporary(folder, {**claim, **fields}), path(folder))
    return True


def adopt(folder, token, **fields):
    """Make the folder's claim hold ``fields`` when it holds ``token`` (a SLURM job taking up the
    claim its launcher wrote for it) or when it has none; whether it did."""
    return _create(folder, {**fields, "token": token}) or update(folder, token, **fields)


def release(folder, token):
    """Remove the claim that holds ``token`` (the run succeeded)."""
    claim = read(folder)
    if claim is not None and claim["token"] == token:
        os.remove(path(folder))


def job_states(job_ids):
    """{job id: squeue's state} for the ids squeue knows (one call for all), or None when squeue
    cannot answer (not installed, controller down)."""
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    try:
        done = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(ids)],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None
    return dict(line.split("|", 1) for line in done.stdout.split())


@dataclasses.dataclass
class Status:
    claim: dict           # the claim file's content
    alive: bool           # whether its owner still holds the run
    state: str            # 'running', 'queued' (a pending job), or how it ended ('exit 2', 'job CANCELLED', ...)
    owner: str            # who, for messages: 'job 12', 'pid 345 on host-a'


def describe(claim):
    """Who holds ``claim``, for messages: 'pid 345 on host-a', 'job 12 (pid 345 on node-3)'."""
    if claim is None:
        return "no one (its claim is gone)"
    who = f"pid {claim['pid']} on {claim['host']}"
    return f"job {claim['job_id']} ({who})" if claim.get("job_id") else who


def status(claim, states):
    """The ``Status`` of ``claim``, given ``states`` = job_states(...) of the claims' job ids."""
    who = describe(claim)
    ended = f"exit {claim['exit_status']}" if claim.get("exit_status") is not None else None
    if claim.get("job_id"):                 # a requeued job runs on after an exit: its job state decides
        if states is None:
            return Status(claim, True, "running", f"{who}; squeue cannot tell whether it runs")
        job_state = states.get(str(claim["job_id"]))
        if job_state is None or job_state in FINAL_JOB_STATES:
            return Status(claim, False, ended or f"job {job_state or 'ended'}", who)
        return Status(claim, True, "queued" if job_state == "PENDING" else "running", who)
    if ended:
        return Status(claim, False, ended, who)
    if claim["host"] != socket.gethostname():
        return Status(claim, True, "running", f"{who}, another host: delete {CLAIM} if that launcher is gone")
    running = claim["pid_start"] is not None and process_start(claim["pid"]) == claim["pid_start"]
    return Status(claim, running, "running" if running else "process ended", who)


def survey(folders):
    """{folder: Status} of every claimed folder among ``folders``, with one squeue call for all."""
    found = {folder: claim for folder in folders if (claim := read(folder)) is not None}
    states = job_states(c["job_id"] for c in found.values() if c.get("job_id"))
    return {folder: status(claim, states) for folder, claim in found.items()}


def take(folder, claim):
    """Claim ``folder`` (created if missing) for ``claim``; a claim whose owner is gone is taken over.

    Returns (whether ``claim`` now holds the folder, a message for the user or None). A takeover
    first moves the stale claim aside under a name of its own and checks that it moved the claim it
    judged stale: a launcher that lost the race to another one puts the other's fresh claim back.
    """
    os.makedirs(folder, exist_ok=True)
    if _create(folder, claim):
        return True, None
    held = survey([folder]).get(folder)
    if held is None:                                 # released meanwhile
        return _create(folder, claim), None
    if held.alive:
        return False, f"{held.state}, claimed by {held.owner}"
    aside = os.path.join(folder, f".{CLAIM}.stale.{claim['token']}")
    try:
        os.rename(path(folder), aside)
    except FileNotFoundError:
        return _create(folder, claim), None
    with open(aside) as f:
        moved = json.load(f)
    if moved["token"] != held.claim["token"]:        # another launcher's fresh claim: give it back
        os.replace(aside, path(folder))
        return False, f"claimed by {describe(moved)}"
    os.remove(aside)
    taken = _create(folder, claim)
    return taken, f"taken over from {held.owner} ({held.state})" if taken else None
