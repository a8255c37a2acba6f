"""claims.py and the sweep status: one owner per run folder, taken over only from an owner that is
gone, and every run of a sweep listed with its state."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import claims  # noqa: E402  (scripts/ is not a package)
import sweep_status  # noqa: E402
import tasks  # noqa: E402


def claim_in_child(folder, barrier, wins):
    barrier.wait()                                        # every process tries at the same moment
    taken, _ = claims.take(folder, claims.owner())
    wins.put(taken)


def test_of_simultaneous_launchers_exactly_one_claims_the_run(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, wins = context.Barrier(8), context.Queue()
    children = [context.Process(target=claim_in_child, args=(str(tmp_path / "run"), barrier, wins)) for _ in range(8)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert sorted(wins.get() for _ in children) == [False] * 7 + [True]
    assert os.listdir(tmp_path / "run") == ["claim.json"]                  # no temporary file left behind


def test_a_claim_is_taken_over_only_when_its_process_has_ended(tmp_path):
    folder = str(tmp_path / "run")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert claims.take(folder, claims.owner(pid=owner.pid)) == (True, None)
    taken, message = claims.take(folder, claims.owner())
    assert not taken and message == f"running, claimed by pid {owner.pid} on {socket.gethostname()}"
    owner.kill()
    owner.wait()
    taken, message = claims.take(folder, mine := claims.owner())
    assert taken and message == f"taken over from pid {owner.pid} on {socket.gethostname()} (process ended)"
    assert claims.read(folder)["token"] == mine["token"]


def test_a_reused_process_id_is_not_the_owner(tmp_path):
    claim = {**claims.owner(), "pid_start": claims.process_start(os.getpid()) - 1}    # same pid, other process
    assert not claims.status(claim, {}).alive


def test_a_job_owns_its_claim_while_squeue_lists_it_unfinished():
    claim = {**claims.owner(), "host": "login-node", "job_id": "12"}
    pending = claims.status(claim, {"12": "PENDING"})
    assert (pending.alive, pending.state) == (True, "queued")
    assert claims.status(claim, {"12": "RUNNING"}).state == "running"
    assert claims.status(claim, {"12": "REQUEUED"}).alive
    assert (claims.status(claim, {"12": "CANCELLED"}).alive, claims.status(claim, {"12": "CANCELLED"}).state) == \
        (False, "job CANCELLED")
    assert not claims.status(claim, {}).alive                              # squeue has forgotten it: ended
    assert claims.status({**claim, "exit_status": 2}, {}).state == "exit 2"
    assert claims.status(claim, None).alive                                # squeue cannot answer: keep off it


def test_status_lists_every_state_and_a_failed_run_s_log(tmp_path, capsys):
    names = ["done", "running", "failed", "interrupted", "not_started"]
    sweep = [tasks.Task(n, str(tmp_path / n), None, str(tmp_path / n / "results.json")) for n in names]
    sweep_status.write_manifest(sweep, str(tmp_path))
    for name in names[:4]:
        (tmp_path / name).mkdir()
    (tmp_path / "done" / "results.json").write_text("{}")
    claims.take(str(tmp_path / "running"), claims.owner())
    (tmp_path / "failed" / "claim.json").write_text(json.dumps({**claims.owner(pid=12), "pid_start": None,
                                                                 "exit_status": 2}))
    (tmp_path / "failed" / "launch.log").write_text("=== start\nepoch 1/6 | ...\nerror: --lr must be positive\n"
                                                    "=== exit 2\n")
    (tmp_path / "interrupted" / "last.pt").write_text("")
    assert sweep_status.report(sweep_status.manifest_tasks(str(tmp_path)), str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"5 tasks in {tmp_path}: 1 done, 1 running, 0 queued, 1 failed, 1 interrupted, 1 not started"
    assert [line.split()[0] for line in lines[1:] if not line.startswith(" ")] == \
        ["done", "running", "failed", "interrupted", "not"]
    assert lines[3].startswith("failed       failed  (exit 2, pid 12 on ")
    assert lines[4:6] == ["    | epoch 1/6 | ...", "    | error: --lr must be positive"]
