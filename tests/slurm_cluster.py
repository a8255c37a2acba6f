"""A one-node SLURM cluster on this machine for the launcher's tests: munged, slurmctld and slurmd
from Debian's munge and slurm-wlm (which .ci/run installs), each configuration file, key, socket,
state and log in one temporary folder, SLURM_CONF pointing the client commands (sbatch, squeue,
scancel) at it. The daemons run as root, as a cluster's do.
"""
import os
import shutil
import socket
import subprocess
import time

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
PARTITION = "debug"
NODE_MEMORY_MB = 4000       # what SLURM may hand out (jobs ask for less, so at most a few run at once)
# Fast turns for the tests: a requeued job is eligible again after cred_expire (default 120 s), and
# the scheduler looks at pending jobs every second (default 60 s, backfill 30 s).
CONFIG = """ClusterName=tests
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobRequeue=1
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=5
MinJobAge=3600
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing():
    """Why no cluster can start here (a program missing, not root), or None."""
    absent = [p for p in PROGRAMS if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}")]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing; .ci/run installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "the test cluster's slurmd must run as root (as .ci/run does in CI)"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def program(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


class Cluster:
    def __init__(self, folder):
        self.folder = str(folder)
        self.conf = os.path.join(self.folder, "slurm.conf")
        self.daemons = []
        self.previous_conf = os.environ.get("SLURM_CONF")

    def write_files(self):
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(self.folder, sub))
        key = os.path.join(self.folder, "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(os.urandom(1024))
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(folder=self.folder, ctld_port=free_port(), d_port=free_port(),
                                  cpus=os.cpu_count(), memory=NODE_MEMORY_MB, partition=PARTITION))

    def daemon(self, *command):
        log = open(os.path.join(self.folder, os.path.basename(command[0]) + ".log"), "w")
        self.daemons.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, "SLURM_CONF": self.conf}))

    def start(self):
        """Start the three daemons and wait until the node takes jobs; sets SLURM_CONF."""
        self.write_files()
        f = self.folder
        self.daemon(program("munged"), "--foreground", "--force", f"--key-file={f}/munge.key",
                    f"--socket={f}/munge.socket", f"--pid-file={f}/munged.pid", f"--seed-file={f}/munged.seed",
                    f"--log-file={f}/munged.file.log")
        self.wait_for(lambda: os.path.exists(f"{f}/munge.socket"), "munged's socket")
        self.daemon(program("slurmctld"), "-D", "-f", self.conf)
        self.daemon(program("slurmd"), "-D", "-f", self.conf, "-N", "localhost")
        os.environ["SLURM_CONF"] = self.conf
        self.wait_for(lambda: self.run("sinfo", "-h", "-o", "%T").strip() == "idle", "an idle node")

    def run(self, *command):
        return subprocess.run(command, capture_output=True, text=True).stdout

    def wait_for(self, condition, what, timeout_s=60):
        deadline = time.time() + timeout_s
        while not condition():
            if time.time() > deadline or any(d.poll() is not None for d in self.daemons):
                raise RuntimeError(f"the test SLURM cluster did not come up ({what}); logs in {self.folder}")
            time.sleep(0.2)

    def set_partition(self, state):
        """UP, or DOWN: jobs submitted then stay queued (PENDING) until it is UP again."""
        subprocess.run(["scontrol", "update", f"PartitionName={PARTITION}", f"State={state}"], check=True)

    def job_states(self):
        """{job id: state} of every job the controller knows."""
        return dict(line.split("|") for line in self.run("squeue", "-h", "-t", "all", "-o", "%i|%T").split())

    def stop(self):
        """Cancel what still runs, then end the daemons (slurmd last, after its jobs)."""
        self.run("scancel", "--full", "--user", "root")
        deadline = time.time() + 30
        while time.time() < deadline and set(self.job_states().values()) - {"COMPLETED", "CANCELLED", "FAILED",
                                                                            "TIMEOUT", "NODE_FAIL"}:
            time.sleep(0.5)
        for daemon in reversed(self.daemons):
            daemon.terminate()
            daemon.wait(timeout=30)
        os.environ.pop("SLURM_CONF", None)
        if self.previous_conf is not None:
            os.environ["SLURM_CONF"] = self.previous_conf
