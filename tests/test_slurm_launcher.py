"""The SLURM launcher on a real one-node SLURM cluster (the ``slurm`` fixture, conftest.py): the demo
Table 2 submitted as jobs gives the serial launcher's numbers to the last digit, a second launch
submits nothing twice, a job signalled as before its time limit is requeued and resumes to the
same numbers, and an unknown partition stops before anything is submitted."""
import json
import os
import subprocess
import time

from conftest import SWEEP_FLAGS, run_script
from helpers import run_numbers

JOB_FLAGS = ["--launcher", "slurm", "--slurm_gpus_per_node", "0", "--slurm_cpus_per_task", "1", "--slurm_mem", "1500M"]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def submitted_jobs(out):
    """{run name: job id} from the launcher's 'submitted <name>: job <id>' lines."""
    return {line.split()[1].rstrip(":"): line.split()[3].rstrip(",") for line in out.splitlines()
            if line.startswith("submitted ")}


def wait_for_jobs(slurm, job_ids, timeout_s=300):
    deadline = time.time() + timeout_s
    while not all(slurm.job_states().get(j) in FINAL for j in job_ids):
        assert time.time() < deadline, f"jobs still not done: {slurm.job_states()}"
        time.sleep(0.5)
    return {j: slurm.job_states()[j] for j in job_ids}


def wait_for_epochs(run_dir, count, timeout_s=120):
    deadline = time.time() + timeout_s
    log = os.path.join(run_dir, "log.jsonl")
    while not os.path.exists(log) or sum(1 for _ in open(log)) < count:
        assert time.time() < deadline, f"{run_dir} logged no epoch {count}"
        time.sleep(0.05)


def test_slurm_sweep_equals_serial_and_a_second_launch_submits_nothing(slurm, sweep_data, serial_sweep, tmp_path):
    argv = [*SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path), *JOB_FLAGS]
    first = run_script("table2_end_to_end.py", *argv)
    assert first.returncode == 0, first.stdout + first.stderr
    jobs = submitted_jobs(first.stdout)
    assert sorted(jobs) == ["demo_AN_ll_s0", "demo_LL-R_ll_s0"]
    for name, job_id in jobs.items():                                # each claim names its job
        assert json.loads((tmp_path / name / "claim.json").read_text())["job_id"] == job_id

    second = run_script("table2_end_to_end.py", *argv)                 # while the jobs are queued or running
    assert second.returncode == 0, second.stdout + second.stderr
    assert submitted_jobs(second.stdout) == {}
    assert "SLURM launcher: 0 jobs submitted, 2 queued or running already" in second.stdout
    status = run_script("experiments.py", "status", str(tmp_path)).stdout
    assert all(f"(job {job_id} " in status for job_id in jobs.values())

    assert wait_for_jobs(slurm, jobs.values()) == {j: "COMPLETED" for j in jobs.values()}
    for name in jobs:
        assert run_numbers(tmp_path / name) == run_numbers(os.path.join(serial_sweep, name))
        assert not (tmp_path / name / "claim.json").exists()
    assert "2 tasks in" in (done := run_script("experiments.py", "status", str(tmp_path)).stdout) and "2 done" in done


def test_job_signalled_before_its_time_limit_is_requeued_and_resumes(slurm, sweep_data, serial_sweep, tmp_path):
    argv = [*SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path), *JOB_FLAGS, "--methods", "LL-R"]
    launched = run_script("table2_end_to_end.py", *argv)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (job_id,) = submitted_jobs(launched.stdout).values()
    run_dir = tmp_path / "demo_LL-R_ll_s0"
    wait_for_epochs(run_dir, 1)
    # What SLURM sends 90 s before the time limit (submitit's --signal=USR2@90): USR2 to the job's steps.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    assert wait_for_jobs(slurm, [job_id]) == {job_id: "COMPLETED"}
    log = (run_dir / "launch.log").read_text()
    assert log.count(" start on ") == 2 and "Resuming" in log          # the requeued job continued from last.pt
    assert "Restarts=1" in subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert run_numbers(run_dir) == run_numbers(os.path.join(serial_sweep, "demo_LL-R_ll_s0"))


def test_unknown_partition_stops_before_anything_is_submitted(slurm, sweep_data, tmp_path):
    before = slurm.job_states()
    done = run_script("table2_end_to_end.py", *SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path),
                      *JOB_FLAGS, "--slurm_partition", "no_such_partition")
    assert done.returncode == 2
    assert "--slurm_partition no_such_partition: this cluster has no such partition; its partitions are debug" in done.stderr
    assert slurm.job_states() == before and not os.listdir(tmp_path)
