"""Under several processes nothing is read before the main process has written it (issue 18): the
other processes wait at a barrier for best_linear.pt at the Cole-style phase switch and for CSL's
class_prior_model.npy after stage 1. Rank 0's write is delayed here; without the barrier rank 1
would read the previous best_linear.pt (a stale ROLE estimate) or no prior file at all."""
import os
import time

import numpy as np
import torch
import torch.multiprocessing as mp

import train
from config import build_config, get_args_parser
from test_distributed import free_port


def _worker(rank, world, port, argv, out, slow_name):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    val_maps = iter(range(10, 100))          # every epoch improves, so best_linear.pt is rewritten

    def scripted_evaluate(model, loader, split, device, desc="eval", class_groups=None, amp="none",
                          skip_without_positive=False):
        return {"map": 0.0 if desc == "test" else float(next(val_maps))}

    real_save, real_np_save = train.save_atomic, np.save

    def slow_save(obj, path):
        if rank == 0 and path.endswith(slow_name) and obj.get("epoch", 1) > 1:
            time.sleep(3)
        real_save(obj, path)

    def slow_np_save(path, array, *args, **kwargs):
        if rank == 0 and str(path).endswith(slow_name):
            time.sleep(3)
        real_np_save(path, array, *args, **kwargs)

    seen = {}
    real_finish = train.Training.finish

    def finish(self):
        seen["estimate"] = None if self.label_estimate is None else self.label_estimate.state_dict()
        seen["prior"] = getattr(self.label_estimate, "prior", None)     # CSL's ClassPrior
        return real_finish(self)

    train.evaluate, train.save_atomic, train.np.save, train.Training.finish = (
        scripted_evaluate, slow_save, slow_np_save, finish)
    try:
        train.run(build_config(get_args_parser().parse_args(argv)))
    finally:
        train.distributed.close()
    torch.save(seen, f"{out}.{rank}")


def _run_two(argv, tmp_path, slow_name):
    out = str(tmp_path / "seen")
    mp.start_processes(_worker, args=(2, free_port(), argv, out, slow_name), nprocs=2, start_method="spawn")
    return [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]


def test_phase_switch_waits_for_best_linear(demo_args, tmp_path):
    argv = demo_args("--mod_scheme", "ROLE", "--expected_num_pos", "2", "--train_mode", "linear_init",
                     "--linear_init_style", "cole", "--linear_init_epochs", "2", "--linear_init_lr", "0.1",
                     "--num_epochs", "1", "--exp_name", "r", "--device", "cpu")
    first, second = _run_two(argv, tmp_path, "best_linear.pt")
    for key, value in first["estimate"].items():
        assert torch.equal(value, second["estimate"][key])


def test_csl_stage_two_waits_for_the_prior_file(demo_args, tmp_path):
    argv = demo_args("--mod_scheme", "CSL", "--num_epochs", "1", "--exp_name", "c", "--device", "cpu")
    first, second = _run_two(argv, tmp_path, "class_prior_model.npy")
    saved = np.load(tmp_path / "c" / "csl_prior_ignore" / "class_prior_model.npy")
    for seen in (first, second):
        np.testing.assert_allclose(seen["prior"].numpy(), saved.astype(np.float32))
