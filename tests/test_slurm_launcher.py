"""The SLURM launcher on a real one-node SLURM cluster (the ``slurm`` fixture, conftest.py): the demo
Table 2 submitted as jobs gives the serial launcher's numbers to the last digit, a second launch
submits nothing twice, a job signalled as before its time limit is requeued and resumes to the
same numbers, and an unknown partition stops before anything is submitted."""
import argparse
import functools
import json
import os
import subprocess
import sys
import time

from helpers import SWEEP_FLAGS, frame_times, run_numbers, run_script

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import launch_slurm  # noqa: E402  (scripts/ is not a package)
import sweep_status  # noqa: E402
import tasks  # noqa: E402

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
    slurm.set_partition("DOWN")          # the jobs wait in the queue until the status below has seen them
    try:
        first = run_script("table2_end_to_end.py", *argv)
        assert first.returncode == 0, first.stdout + first.stderr
        jobs = submitted_jobs(first.stdout)
        assert sorted(jobs) == ["demo_AN_ll_s0", "demo_LL-R_ll_s0"]
        for name, job_id in jobs.items():                                # each claim names its job
            assert json.loads((tmp_path / name / "claim.json").read_text())["job_id"] == job_id

        second = run_script("table2_end_to_end.py", *argv)                 # while the jobs are queued
        assert second.returncode == 0, second.stdout + second.stderr
        assert submitted_jobs(second.stdout) == {}
        assert "SLURM launcher: 0 jobs submitted, 2 queued or running already" in second.stdout
        status = run_script("experiments.py", "status", str(tmp_path)).stdout.splitlines()
        for name, job_id in jobs.items():                                # queued, with its job
            (line,) = [line for line in status if f" {name}  (job {job_id} " in line]
            assert line.split()[0] == "queued", status
    finally:
        slurm.set_partition("UP")

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
    assert ("--slurm_partition no_such_partition: this cluster has no such partition; its partitions are debug"
            in done.stderr)
    assert slurm.job_states() == before and not os.listdir(tmp_path)


def script_task(folder, name, code, needs=()):
    """A task whose job runs ``code`` (Python; picklable, as a job's task must be) and, when it
    succeeds, writes its result file."""
    result = str(folder / name / "done")
    command = [sys.executable, "-c", f"{code}\nopen({result!r}, 'w').close()"]
    return tasks.Task(name, str(folder / name), functools.partial(list, command), result, list(needs))


def test_dependent_jobs_start_after_their_needs_and_are_cancelled_when_one_fails(slurm, tmp_path, capsys):
    first_result = tmp_path / "first" / "done"
    sweep = [script_task(tmp_path, "first", "import time; time.sleep(1)"),
             # At its start the dependent checks that what it needs is there (as a LinearInit run reads results).
             script_task(tmp_path, "second", f"import os, sys; sys.exit(0 if os.path.exists({str(first_result)!r}) "
                                             f"else 5)", needs=["first"]),
             script_task(tmp_path, "broken", "import sys; print('broken on purpose'); sys.exit(3)"),
             script_task(tmp_path, "after_broken", "pass", needs=["broken"])]
    opts = argparse.Namespace(slurm_partition=None, slurm_time=10, nproc_per_node=1, slurm_gpus_per_node=0,
                              slurm_cpus_per_task=1, slurm_mem="200M", slurm_account=None, slurm_qos=None,
                              slurm_extra=[], save_path=str(tmp_path))
    assert launch_slurm.submit_all(sweep, opts) == 0
    out = capsys.readouterr().out
    jobs = submitted_jobs(out)
    assert f"submitted second: job {jobs['second']}, afterok {jobs['first']}" in out
    assert wait_for_jobs(slurm, jobs.values()) == {jobs["first"]: "COMPLETED", jobs["second"]: "COMPLETED",
                                                   jobs["broken"]: "FAILED", jobs["after_broken"]: "CANCELLED"}
    first_end = frame_times(tmp_path / "first")[1]
    assert frame_times(tmp_path / "second")[0] > first_end               # started after its need had ended
    assert not (tmp_path / "after_broken" / "launch.log").exists()       # never ran
    assert sweep_status.report(sweep, str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"failed       broken  (exit 3, job {jobs['broken']} " in out and "    | broken on purpose" in out
    assert f"failed       after_broken  (job CANCELLED, job {jobs['after_broken']} " in out

    # A launch after the failure takes the ended job's claim over and submits the task again.
    again = script_task(tmp_path, "broken", "pass")
    assert launch_slurm.submit_all([again], opts) == 0
    out = capsys.readouterr().out
    (job_id,) = submitted_jobs(out).values()
    assert f"(taken over from job {jobs['broken']} (pid " in out and ") (exit 3))" in out
    assert wait_for_jobs(slurm, [job_id]) == {job_id: "COMPLETED"}
