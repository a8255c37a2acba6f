"""A sweep as tasks for the parallel launchers (local processes, SLURM jobs): each run of main.py,
and each zero-shot score file that VLPL and AEVLP runs read, is a task with its own folder (its
claim and launch.log) and the names of the tasks that must be done before it starts.
"""
import dataclasses
import json
import os
import typing
import uuid


@dataclasses.dataclass
class Task:
    name: str
    folder: str                      # claim.json, launch.log (and slurm/, a SLURM job's files) go here
    command: typing.Callable         # () -> the command line, built when the task starts: a run that
                                     # takes flags from other runs' results, or resumes, learns so then
    result: str                      # the file that marks the task done (results.json, the score record)
    needs: list = dataclasses.field(default_factory=list)      # names of tasks that must be done first
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)   # its claim's, this launch

    def done(self):
        return os.path.exists(self.result)

    def outcome(self):
        """'test mAP 92.68' from a finished run's results.json, else ''."""
        try:
            with open(self.result) as f:
                test_map = json.load(f).get("test_map")
        except (OSError, ValueError):
            return ""
        return f"test mAP {test_map:.2f}" if isinstance(test_map, (int, float)) else ""

