"""--launcher local: up to --max_parallel tasks of a sweep at once on this machine, each on its own
share of --gpus (a run with --nproc_per_node P takes P of them, through CUDA_VISIBLE_DEVICES) and of
the CPU's cores (OMP_NUM_THREADS), in the listed order as soon as the tasks they need are done.
Each task's output goes to its folder's launch.log; the terminal shows one line per task started,
finished or failed, and a summary. A failed task never stops the others; only the tasks that need
it are left out.
"""
import os
import time

import claims
import run_process


def clock():
    return time.strftime("%H:%M:%S")


class LocalPool:
    """The tasks still to run, those running (with their GPUs) and how the others ended."""

    def __init__(self, tasks, max_parallel, gpus, processes):
        self.by_name = {task.name: task for task in tasks}
        self.todo = [task for task in tasks if not task.done()]
        self.max_parallel, self.free_gpus, self.processes = max_parallel, list(gpus or []), processes
        # Each run's share of the cores; a run alone keeps torch's (and torchrun's) own choice.
        self.threads = (run_process.thread_share(os.cpu_count() or 1, max_parallel * processes)
                        if max_parallel > 1 else {})
        self.running = {}                     # name -> (task, process, start time, its GPUs)
        self.finished, self.failed, self.left_out = [], {}, {}    # failed / left_out: name -> why

    def blocker(self, task):
        """Why ``task`` cannot start: 'later' while a task it needs will still run here, a reason to
        leave it out when one failed or runs elsewhere, or None when it can start."""
        for need in task.needs:
            if need in self.failed or need in self.left_out:
                return f"needs {need}, which {'failed' if need in self.failed else 'did not run'}"
            if not self.by_name[need].done():
                mine = need in self.running or any(t.name == need for t in self.todo)
                return "later" if mine else f"needs {need}, run by another launcher: launch again when it is done"
        return None

    def start_ready(self):
        """Start the tasks that can start, in order, while there is room."""
        for task in list(self.todo):
            if len(self.running) >= self.max_parallel:
                return
            why = self.blocker(task)
            if why == "later":
                continue
            self.todo.remove(task)
            if why is not None:
                self.left_out[task.name] = why
                print(f"{clock()} not started {task.name}: {why}", flush=True)
                continue
            self.start(task)

    def start(self, task):
        taken, message = claims.take(task.folder, claims.owner(token=task.token))
        if not taken:
            self.left_out[task.name] = message
            print(f"{clock()} skipped  {task.name}: {message}", flush=True)
            return
        if message:
            print(f"{clock()} {task.name}: {message}", flush=True)
        gpus, self.free_gpus = self.free_gpus[:self.processes], self.free_gpus[self.processes:]
        env = {**self.threads, **({"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {})}
        process, started = run_process.start(task, env)
        self.running[task.name] = (task, process, started, gpus)
        shown = f", GPUs {','.join(gpus)}" if gpus else ""
        print(f"{clock()} started  {task.name} (pid {process.pid}{shown}) > {task.folder}/{run_process.LOG}",
              flush=True)

    def collect(self):
        """Record the tasks whose process ended; whether any did."""
        ended = [(name, process.poll()) for name, (_, process, _, _) in self.running.items()]
        ended = [(name, code) for name, code in ended if code is not None]
        for name, returncode in ended:
            self.end(name, returncode)
        return bool(ended)

    def end(self, name, returncode):
        task, _, started, gpus = self.running.pop(name)
        self.free_gpus += gpus
        log_tail = run_process.finish(task, returncode, started)
        took = f"{time.time() - started:.0f} s"
        if returncode == 0:
            self.finished.append(name)
            print(f"{clock()} finished {name} in {took}" + (f": {task.outcome()}" if task.outcome() else ""),
                  flush=True)
            return
        self.failed[name] = f"exit {returncode}"
        print(f"{clock()} failed   {name}: exit {returncode} after {took}; {task.folder}/{run_process.LOG} ends:",
              flush=True)
        print("\n".join(f"    {line}" for line in log_tail.splitlines()), flush=True)

    def stop(self):
        """On Ctrl-C: end the running processes; their claims keep the exit status."""
        for name, (_, process, _, _) in list(self.running.items()):
            process.terminate()
            self.end(name, process.wait())

    def summary(self):
        parts = [f"{len(self.finished)} finished"]
        for label, names in (("failed", self.failed), ("not started", self.left_out)):
            if names:
                parts.append(f"{len(names)} {label} ({'; '.join(f'{n}: {why}' for n, why in names.items())})")
        return "Local launcher: " + ", ".join(parts)


def run_all(tasks, max_parallel, gpus=None, processes=1, poll_s=0.2):
    """Run the unfinished ``tasks`` (``tasks.Task``) at most ``max_parallel`` at a time, each as
    ``processes`` processes (--nproc_per_node) that take as many of ``gpus`` (device ids), if given.
    Returns 0 when every task is done, else 1."""
    pool = LocalPool(tasks, max_parallel, gpus, processes)
    try:
        while pool.todo or pool.running:
            pool.start_ready()
            if not pool.collect():
                time.sleep(poll_s)
    finally:
        pool.stop()
    print(pool.summary(), flush=True)
    return 0 if all(task.done() for task in tasks) else 1
