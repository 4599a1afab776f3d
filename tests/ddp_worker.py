"""One rank of tests/test_ddp_consistency.py (run as ``python ddp_worker.py RANK WORLD PORT OUT``): a few real jBOT
steps with the student under DDP (gloo), each rank on its own jets, then a dump of what must agree across ranks."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.pretrain.meta_arch import JBOTMetaArch
from jbot_edge.pretrain.train import PretrainConfig


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    cfg = resolve_config(PretrainConfig, config_file=packaged_config("pretrain/small.yaml"),
                         default_file=packaged_config("pretrain/default.yaml"))
    torch.manual_seed(0)  # same initial weights on every rank, as train.py does
    meta = JBOTMetaArch(InputSpec(n_particles=16), cfg.model, cfg.loss, cfg.augment, cfg.masking).train()
    meta.student_forward = torch.nn.parallel.DistributedDataParallel(meta.student)
    opt = torch.optim.AdamW(meta.param_groups(0.04), lr=1e-3)
    gen = torch.Generator().manual_seed(1000 + rank)  # different augmentations per rank, as in training
    data = torch.Generator().manual_seed(rank)  # different jets per rank
    grads = []
    for _ in range(3):
        mask = torch.arange(16)[None] < torch.randint(3, 17, (32, 1), generator=data)
        x = torch.rand(32, 16, 4, generator=data) * mask[..., None]
        opt.zero_grad(set_to_none=True)
        meta.forward_backward(x, mask, gen)
        grads.append(torch.cat([p.grad.reshape(-1) for p in meta.student.parameters() if p.grad is not None]))
        opt.step()
        meta.update_teacher(0.9)
    torch.save({"grads": grads,
                "student": {k: v.clone() for k, v in meta.student.state_dict().items()},
                "teacher": {k: v.clone() for k, v in meta.teacher.state_dict().items()},
                "centers": [meta.dino_loss.center.clone(), meta.ibot_loss.center.clone()]}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
