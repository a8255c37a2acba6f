"""A run's per-epoch records as TensorBoard scalars in its folder, beside log.jsonl, so that
``tensorboard --logdir runs/table2_end_to_end`` shows a whole sweep, one run per folder.

Every numeric field of a record (the line of log.jsonl) is written under its log.jsonl name at
step = epoch, so fields that a method or a later change adds appear without a change here;
flags (booleans), texts and empty values (None) are left out. On --resume the events are
rewritten from the checkpoint's history, as log.jsonl is: the folder holds one events file, with
each epoch once, whatever the interruptions.
"""
import glob
import os
import numbers

from torch.utils.tensorboard import SummaryWriter

EVENTS = "events.out.tfevents.*"


def scalars(record):
    """{name: value} of the record's numeric fields, the epoch (the step) left out."""
    return {name: value for name, value in record.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and name != "epoch"}


class EpochEvents:
    """The events file of one run folder. Only the main process writes one."""

    def __init__(self, run_dir, history):
        """Start ``run_dir``'s events afresh with the records of ``history`` (the epochs done)."""
        for old in glob.glob(os.path.join(run_dir, EVENTS)):
            os.remove(old)
        self.writer = SummaryWriter(run_dir)
        for record in history:
            self.add(record)

    def add(self, record):
        """One epoch's record; flushed at once, so that a kill loses no finished epoch."""
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record["epoch"])
        self.writer.flush()

    def close(self):
        self.writer.close()
