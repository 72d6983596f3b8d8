"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo): ReLIFT's checkpointed SFT optimiser under FSDP2, where each
process's AdamW holds the moments of its own parameter shard. Writes ``<out>/rank<k>.json``.

:class:`ReliftMixin` runs its own ``_save_checkpoint`` / ``_load_optimizer_and_scheduler`` in front of a stand-in
for TRL's trainer (what the mixin calls on it), on a layer sharded with ``fully_shard`` and an SFT step on data of
its own per process:

1. each process writes its own state file, and both files exist when ``_save_checkpoint`` returns on either process
   (process 1 writes a second late): ``CompleteMarker`` stamps the checkpoint only after that;
2. a fresh trainer restores, on each process, that process's own ``exp_avg`` / ``exp_avg_sq`` shard, the buffer and
   the SFT step count; the two processes' shards differ, so rank 0's file on every process would show;
3. a checkpoint of the older layout (one ``relift_state.pt``, process 0's) is refused in one line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from giftlab.rl_methods.relift import RELIFT, ReliftMixin

LEGACY_STATE_FILE = "relift_state.pt"  # the older layout: process 0's state only


class TrainerStandIn:
    """The parts of TRL's GRPOTrainer that ReliftMixin's checkpointing calls."""

    def __init__(self, model, out: Path, step: int):
        rank, world = dist.get_rank(), dist.get_world_size()
        self.model, self.out = model, out
        self.args = SimpleNamespace(learning_rate=1e-3, should_save=rank == 0)
        self.state = SimpleNamespace(global_step=step)
        self.accelerator = SimpleNamespace(process_index=rank, num_processes=world, device=torch.device("cpu"),
                                           wait_for_everyone=dist.barrier)
        self.train_dataset = [{"row": i, "prompt": f"q{i}", "demonstration": f"d{i}"} for i in range(4)]

    def add_callback(self, callback):
        pass

    def _get_output_dir(self, trial):
        return str(self.out)

    def _save_checkpoint(self, model, trial):  # the Trainer's own files: the folder exists afterwards
        os.makedirs(os.path.join(self.out, f"checkpoint-{self.state.global_step}"), exist_ok=True)
        if dist.get_rank() == 1:
            time.sleep(1.0)  # a slower process: process 0 must not return (and stamp) before this one wrote

    def _load_optimizer_and_scheduler(self, checkpoint):
        pass


class Relift(ReliftMixin, TrainerStandIn):
    method_params = RELIFT.check({"sft_batch": 2})


def shard(out: Path, step: int):
    torch.manual_seed(0)  # the same initial weights on both processes
    model = torch.nn.Linear(8, 8, bias=False)
    fully_shard(model, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    return Relift(model, out, step)


def local(t):
    return t.to_local() if hasattr(t, "to_local") else t


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = Path(out_dir)
    result: dict = {"rank": rank}

    trainer = shard(out, step=3)
    trainer._relift_init()
    torch.manual_seed(1 + rank)  # each process's own share of the SFT batch
    trainer.model(torch.randn(4, 8)).pow(2).sum().backward()
    trainer._relift_optimizer.step()
    trainer._relift_buffer.add([3, 1, 2])
    trainer._relift_steps = 5
    param = next(trainer.model.parameters())
    saved = {k: local(trainer._relift_optimizer.state[param][k]).clone() for k in ("exp_avg", "exp_avg_sq")}

    trainer._save_checkpoint(trainer.model, None)
    folder = out / "checkpoint-3"
    result["files_when_save_returned"] = sorted(p.name for p in folder.iterdir() if p.name.startswith("relift_state"))

    restored = shard(out, step=3)
    restored._load_optimizer_and_scheduler(str(folder))
    got = {k: local(restored._relift_optimizer.state[next(restored.model.parameters())][k]) for k in saved}
    result["restored_own_shard"] = all(torch.equal(got[k], saved[k]) for k in saved)
    result["buffer"], result["sft_steps"] = restored._relift_buffer.items, restored._relift_steps
    theirs = [None] * dist.get_world_size()
    dist.all_gather_object(theirs, saved["exp_avg"])
    result["shards_differ"] = not torch.equal(theirs[0], theirs[1])

    legacy = out / "legacy" / "checkpoint-3"
    if rank == 0:
        legacy.mkdir(parents=True)
        torch.save({"buffer": trainer._relift_buffer.state_dict(), "sft_steps": 5,
                    "optimizer": trainer._relift_optimizer.state_dict()}, legacy / LEGACY_STATE_FILE)
    dist.barrier()
    try:
        shard(out, step=3)._load_optimizer_and_scheduler(str(legacy))
        result["legacy"] = "loaded"
    except ValueError as exc:
        result["legacy"] = str(exc)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
