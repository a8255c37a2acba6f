"""Several processes, one per GPU, started by ``torchrun --nproc_per_node=N main.py ...``.

Each global batch of --bsize images is cut into one contiguous share per process (``share``); each
process runs the model on its share, and the logits of all shares are gathered (``gather_rows``)
so that every process computes the loss of the whole batch exactly as one process with the whole
batch would: the same top-k, the same LL-Cp corrections, the same ROLE estimate. Gradients of the
model reach every process through DistributedDataParallel. Without torchrun (one process) every
function here is the identity.
"""
import datetime
import os

import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    """This process's rank; torchrun's RANK before the process group is joined."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main():
    """The process that prints, writes the run folder and shows progress bars."""
    return rank() == 0


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device):
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU); returns this process's device.

    Args:
        device: the --device the user asked for (``torch.device``); on CUDA each process takes the
            GPU of its LOCAL_RANK.
    """
    if not launched_by_torchrun():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # An hour, not NCCL's 10 minutes: the others wait while the main process evaluates (OpenImages'
        # 125,000 test images) and writes checkpoints.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1),
                                device_id=device if device.type == "cuda" else None)
    return device


def close():
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if dist.is_initialized():
        dist.barrier()


def broadcast_buffers(module):
    """Give every process the main process's buffers (BatchNorm's running statistics), which
    DistributedDataParallel sends only before each forward, so that the last batch leaves them apart."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def share_sizes(num_items, parts=None):
    """How many of ``num_items`` each process takes: as equal as possible, the first ones one more."""
    parts = parts or world_size()
    return [num_items // parts + (p < num_items % parts) for p in range(parts)]


def share(items, part=None, parts=None):
    """This process's contiguous share of a sequence (a global batch, or a split to evaluate)."""
    part = rank() if part is None else part
    sizes = share_sizes(len(items), parts)
    start = sum(sizes[:part])
    return items[start:start + sizes[part]]


class _GatherRows(torch.autograd.Function):
    """All processes' rows in process order. Every process then computes the same loss of the whole
    batch, so the gradient of its own rows is already complete: backward keeps that slice, times the
    number of processes because DistributedDataParallel averages (rather than sums) gradients."""

    @staticmethod
    def forward(ctx, rows, sizes):
        ctx.start, ctx.size = sum(sizes[:rank()]), sizes[rank()]
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]))     # all_gather needs equal shapes
        padded[:len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.start:ctx.start + ctx.size] * world_size(), None


def gather_rows(rows, sizes):
    """Concatenate every process's ``rows`` in process order; differentiable (see ``_GatherRows``).

    Args:
        rows: this process's share (along dim 0) of a batch or a split.
        sizes: every process's number of rows (``share_sizes``), known in advance so that no
            process has to wait for the others to learn them.
    Returns:
        the whole batch; ``rows`` itself with one process.
    """
    if world_size() == 1:
        return rows
    if len(rows) != sizes[rank()]:
        raise ValueError(f"process {rank()} has {len(rows)} rows, expected {sizes[rank()]}")
    if rows.dtype == torch.bool:        # not every backend gathers bool tensors
        return _GatherRows.apply(rows.to(torch.uint8), sizes).bool()
    return _GatherRows.apply(rows, sizes)


def gather_to_main(rows, sizes):
    """Every process's ``rows`` in process order, on the main process only (None on the others), which
    receives each share straight into its slice of one preallocated result: no other process ever holds
    the whole, and the main process no second copy of it.

    Args:
        rows: this process's share (along dim 0), on the device its backend sends from (the GPU with NCCL).
        sizes: every process's number of rows (``share_sizes``), known in advance.
    """
    if world_size() == 1:
        return rows
    if len(rows) != sizes[rank()]:
        raise ValueError(f"process {rank()} has {len(rows)} rows, expected {sizes[rank()]}")
    if not is_main():
        if len(rows):
            dist.send(rows.contiguous(), dst=0)
        return None
    out = rows.new_empty((sum(sizes), *rows.shape[1:]))
    starts = [sum(sizes[:p]) for p in range(len(sizes))]
    out[:len(rows)] = rows
    for p in range(1, len(sizes)):
        if sizes[p]:
            dist.recv(out[starts[p]:starts[p] + sizes[p]], src=p)
    return out


def broadcast_object(obj):
    """The main process's ``obj`` (a small picklable value, such as a dict of mAPs) in every process."""
    if world_size() == 1:
        return obj
    holder = [obj if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
