"""Data parallelism: training and evaluation under `accelerate launch` with 2 CPU processes give the
same network, loss log, validation and edits as one process with the same global batch."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from hsep_utils.diffusion import ddim_timesteps
from hsep_utils.distributed import Ranks, _destroy_process_group
from hsep_utils.parameters import SCALES
from hsep_utils.presets import resolve

SCRIPT = Path(__file__).with_name("distributed_run.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, out):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run(cmd + [str(SCRIPT), str(out)], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "result.pt", weights_only=True)


def test_two_processes_match_one(tmp_path):
    one = _run([sys.executable], tmp_path / "one")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]
    two = _run(launch, tmp_path / "two")
    assert (one["world"], two["world"]) == (1, 2)
    # The summed gradients differ by float rounding, which Adam turns into whole steps (lr = 1e-4) for
    # the few weights whose gradient is near 0: on an AMD EPYC 0.5 % of one layer's weights differed by
    # up to 2e-4, on an Intel Xeon none by 2e-5. Data given to the wrong process would move most weights.
    close = torch.cat([torch.isclose(two["net"][k], v, atol=2e-5, rtol=1e-4).flatten() for k, v in one["net"].items()])
    assert close.float().mean() >= 0.99, close.float().mean()
    for k, v in one["net"].items():
        torch.testing.assert_close(two["net"][k], v, atol=5e-4, rtol=0, msg=k)
    log1, log2 = (pd.read_csv(tmp_path / d / "mapping" / "train_log.csv") for d in ("one", "two"))
    assert len(log1) == len(log2) == 2 * 2 * 4  # 2 epochs x 2 batches x 4 timesteps
    pd.testing.assert_frame_equal(log1, log2, rtol=1e-4, atol=1e-6)
    warm1, warm2 = (pd.read_csv(tmp_path / d / "mapping" / "warmup_log.csv") for d in ("one", "two"))
    assert len(warm1) == 3
    pd.testing.assert_frame_equal(warm1, warm2, rtol=1e-4, atol=1e-6)
    val1, val2 = (pd.read_csv(tmp_path / d / "mapping" / "val_log.csv") for d in ("one", "two"))
    cols = ["batches", "sr_add", "sr_remove", "n_counted"]
    pd.testing.assert_frame_equal(val1[cols], val2[cols])
    assert len(two["added"]) == len(two["removed"]) == 5  # uneven shares (3 + 2) gathered in order
    # the two networks differ by float rounding (above), which generation through a random U-Net amplifies
    # (up to 0.015 on the AMD EPYC); a wrong gather order would differ by O(1)
    torch.testing.assert_close(two["added"], one["added"], atol=5e-2, rtol=0)
    torch.testing.assert_close(two["removed"], one["removed"], atol=5e-2, rtol=0)
    assert not (tmp_path / "two" / "mapping" / "last.pt.tmp").exists()


def _average_with_a_missing_gradient(rank: int, store: str, out: str) -> None:
    import datetime

    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(seconds=60))
    used, branch, unused = (torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 1))
    used.grad = torch.full((2,), float(rank + 1))
    if rank == 0:  # only this process's share took the branch
        branch.grad = torch.full((3,), 4.0)
    Ranks(rank, 2).average_gradients([used, branch, unused])
    torch.save({"used": used.grad, "branch": branch.grad, "unused": unused.grad}, f"{out}{rank}.pt")
    torch.distributed.destroy_process_group()


def test_a_gradient_missing_in_one_process_averages_as_zero(tmp_path):
    """Before this, the processes all-reduced flat vectors of different lengths (5 and 2 numbers)."""
    torch.multiprocessing.spawn(_average_with_a_missing_gradient, args=(str(tmp_path / "store"), str(tmp_path / "r")),
                                nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"r{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["used"], torch.full((2,), 1.5))
        torch.testing.assert_close(got["branch"], torch.full((3,), 2.0))
        assert got["unused"] is None


def test_shares_and_an_uneven_training_batch_is_named():
    assert [Ranks(r, 3).share(7) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 7)]
    with pytest.raises(ValueError, match="batch_per_class=3 does not split evenly over 2 processes"):
        Ranks(0, 2).even_share(3, "batch_per_class")


def test_training_command_under_accelerate_launch(tmp_path):
    """``accelerate launch -m hsep_utils.train_cli`` (notebook 02 as a command) on the toy preset at
    smoke scale with 2 processes: one classifier, one mapping run, logs written once."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "hsep_utils.train_cli", "--preset", "toy-glasses",
           "-p", "scale", "smoke", "-p", "data_root", str(tmp_path / "data"), "-p", "results_root", str(tmp_path)]
    proc = subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("2 process(es)") == 1  # printed by the main process only
    run = tmp_path / "toy-glasses" / "mapping"
    assert (tmp_path / "toy-glasses" / "classifier.pt").exists() and (run / "best.pt").exists()
    edited = [t for t in ddim_timesteps(5) if t < resolve("toy-glasses")["t_edit_max"]]  # the preset's edit window
    assert len(pd.read_csv(run / "train_log.csv")) == 2 * len(edited) and 0 < len(edited) < 5  # smoke: 2 batches
    # the toy presets' latent warm-up (smoke: 20 updates) is validated once, then the final validation
    assert list(pd.read_csv(run / "val_log.csv")["batches"]) == [0, 2] and (run / "loss_curves.png").exists()
    assert len(pd.read_csv(run / "warmup_log.csv")) == SCALES["smoke"]["latent_warmup_steps"]


def test_the_process_group_is_ended_before_interpreter_shutdown(tmp_path):
    """Left to interpreter shutdown, gloo's threads can abort a finished process (a CI failure)."""
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    _destroy_process_group()
    assert not torch.distributed.is_initialized()
    _destroy_process_group()  # the atexit handler runs again harmlessly if the group is already gone
