"""Run by tests/test_ddp.py under torchrun: two CPU processes on the gloo backend
train the same tiny model on different halves of each batch."""
import json
import os
import sys

import torch

from smallunet.trainer import Trainer, TrainConfig

out = sys.argv[1]
max_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
torch.set_num_threads(1)
cfg = TrainConfig(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), N=50,
                  batch_size=8, epochs=None, max_steps=max_steps)
data = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
t = Trainer(cfg, data=data, device="cpu", checkpoint=os.path.join(out, "ddp.safetensors"), progress=False)
losses = [float(s.loss) for s in t.steps()]
rank = t.rank
flat = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()])
json.dump({"rank": rank, "world": t.world, "local_batch": t.local_batch, "losses": losses,
           "params": flat[:200].tolist(), "param_sum": float(flat.double().sum()),
           "generator_state_sum": int(t.generator.get_state().long().sum())},
          open(os.path.join(out, f"rank{rank}_{max_steps}.json"), "w"))
torch.distributed.destroy_process_group()
