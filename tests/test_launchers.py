"""The local launcher (several runs at once on this machine) and the launcher flags that must stop
before anything starts; the SLURM launcher is in test_slurm_launcher.py."""
import json
import os
import subprocess
import sys

import pytest

from helpers import SWEEP_FLAGS, frame_times, run_numbers, run_script

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import claims  # noqa: E402  (scripts/ is not a package)
import experiments  # noqa: E402
import launch_local  # noqa: E402
import table2_end_to_end  # noqa: E402
import tasks  # noqa: E402

RUNS = ("demo_AN_ll_s0", "demo_LL-R_ll_s0")


def test_local_launcher_runs_two_at_once_with_the_serial_numbers(sweep_data, serial_sweep, tmp_path, capsys):
    argv = [*SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path)]
    done = run_script("table2_end_to_end.py", *argv, "--launcher", "local", "--max_parallel", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert sum(" started  demo_" in line for line in lines) == sum(" finished demo_" in line for line in lines) == 2
    assert lines[-1] == "Local launcher: 2 finished"
    (start_a, end_a), (start_b, end_b) = (frame_times(tmp_path / name) for name in RUNS)
    assert start_a < end_b and start_b < end_a, "the two runs did not overlap"
    for name in RUNS:
        assert "exit 0 after" in open(tmp_path / name / "launch.log").read()
        assert not (tmp_path / name / "claim.json").exists()           # released by the finished run
        assert run_numbers(tmp_path / name) == run_numbers(os.path.join(serial_sweep, name))
    assert table2_end_to_end.main([*argv, "--status"]) == 0
    test_map = json.loads((tmp_path / RUNS[0] / "results.json").read_text())["test_map"]
    assert f"done         {RUNS[0]}  (test mAP {test_map:.2f})" in capsys.readouterr().out.splitlines()


def test_serial_launcher_skips_a_run_that_another_launcher_holds(tmp_path, monkeypatch, capsys):
    claims.take(str(tmp_path / "demo_AN_ll_s0"), claims.owner())          # held by this live process
    started = []
    monkeypatch.setattr(experiments.subprocess, "run",
                        lambda cmd, cwd: started.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert table2_end_to_end.main(["--demo", "--save_path", str(tmp_path), "--methods", "AN", "LL-R"]) == 1
    out = capsys.readouterr().out
    assert "2 runs in" in out and "0 done, 0 to resume, 1 new, 1 running" in out
    assert [cmd[cmd.index("--exp_name") + 1] for cmd in started] == ["demo_LL-R_ll_s0"]
    assert "1 runs are run by another launcher: demo_AN_ll_s0" in out
    assert not (tmp_path / "demo_LL-R_ll_s0" / "claim.json").exists()     # released: its run succeeded


def fake_task(folder, name, code, needs=()):
    """A task whose process runs ``code`` (Python) and, when it succeeds, writes its result file."""
    task_dir = folder / name
    result = task_dir / "done"
    command = [sys.executable, "-c", f"{code}\nopen({str(result)!r}, 'w').close()"]
    return tasks.Task(name, str(task_dir), lambda: command, str(result), list(needs))


def test_local_pool_shares_gpus_and_cores_and_a_failure_stops_only_its_dependents(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    show_gpus = ("import os, time; print('GPUs', os.environ['CUDA_VISIBLE_DEVICES']); "
                 "print('threads', os.environ['OMP_NUM_THREADS']); time.sleep(0.5)")
    sweep = [fake_task(tmp_path, "a", show_gpus), fake_task(tmp_path, "b", show_gpus),
             fake_task(tmp_path, "broken", "import sys; print('broken on purpose'); sys.exit(3)"),
             fake_task(tmp_path, "after_broken", show_gpus, needs=["broken"]),
             fake_task(tmp_path, "after_a", show_gpus, needs=["a"])]
    assert launch_local.run_all(sweep, max_parallel=2, gpus=["4", "5", "6", "7"], processes=2) == 1
    out = capsys.readouterr().out
    gpus = {name: [line for line in open(tmp_path / name / "launch.log") if line.startswith("GPUs")]
            for name in ("a", "b", "after_a")}
    assert gpus["a"] == ["GPUs 4,5\n"] and gpus["b"] == ["GPUs 6,7\n"]     # two runs at once, two GPUs each
    assert gpus["after_a"] in (["GPUs 4,5\n"], ["GPUs 6,7\n"])
    assert f"threads {max(1, os.cpu_count() // 2)}\n" in open(tmp_path / "a" / "launch.log")    # the cores shared out
    assert "failed   broken: exit 3 after" in out and "\n    broken on purpose\n" in out    # its log's last lines
    assert not (tmp_path / "after_broken").exists()                    # never started
    assert out.splitlines()[-1] == ("Local launcher: 3 finished, 1 failed (broken: exit 3), "
                                    "1 not started (after_broken: needs broken, which failed)")
    assert '"exit_status": 3' in open(tmp_path / "broken" / "claim.json").read()


@pytest.mark.parametrize("flags, message", [
    (["--launcher", "local", "--max_parallel", "0"], "--max_parallel 0: at least 1 run must run at a time"),
    (["--launcher", "local", "--gpus", "0", "--nproc_per_node", "2"],
     "--gpus 0 lists 1 GPUs, fewer than --nproc_per_node 2"),
    (["--launcher", "local", "--gpus", "0,1", "--max_parallel", "3"], "pass at most --max_parallel 2"),
    (["--launcher", "slurm", "--slurm_gpus_per_node", "1", "--nproc_per_node", "2"], "needs that many GPUs"),
])
def test_impossible_launcher_flags_stop_with_exit_2(flags, message, sweep_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        table2_end_to_end.main([*SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not os.listdir(tmp_path)                                     # nothing started, nothing claimed


def test_slurm_launcher_without_sbatch_stops_with_exit_2(sweep_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no_slurm_here"))
    argv = [*SWEEP_FLAGS, "--data_dir", sweep_data, "--save_path", str(tmp_path / "runs"), "--launcher", "slurm"]
    assert table2_end_to_end.main(argv) == 2
    err = capsys.readouterr().err
    assert "--launcher slurm needs SLURM's sbatch" in err and "--launcher local" in err
    assert not (tmp_path / "runs").exists()
