"""Run by tests/test_ddp.py under torchrun: two CPU processes on the gloo backend
train the same tiny model on different halves of each batch."""
import json
import os
import sys

import torch

from smallunet import Trainer, TrainConfig

out = sys.argv[1]
max_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
torch.set_num_threads(1)
skew = len(sys.argv) > 3 and sys.argv[3] == "skew"
budget = dict(max_steps=None, minutes=0.05) if skew else dict(max_steps=max_steps)
if skew and os.environ.get("RANK") == "1":
    # rank 1's clock runs an hour ahead: by its own clock its 3 s budget is spent at once
    import smallunet.fast_trainer as trainer_module
    real_time = trainer_module.time.time
    trainer_module.time = type("SkewedClock", (), {"time": staticmethod(lambda: real_time() + 3600)})
cfg = TrainConfig(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), N=50,
                  batch_size=8, epochs=None, **budget)
data = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
t = Trainer(cfg, data=data, device="cpu", checkpoint=os.path.join(out, "ddp.safetensors"), progress=False)
losses = [float(s.loss) for s in t.steps()]
rank = t.rank
flat = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()])
json.dump({"rank": rank, "step": t.step, "world": t.world, "local_batch": t.local_batch, "losses": losses,
           "params": flat[:200].tolist(), "param_sum": float(flat.double().sum()),
           "generator_state_sum": int(t.generator.get_state().long().sum())},
          open(os.path.join(out, f"rank{rank}_{'skew' if skew else max_steps}.json"), "w"))
torch.distributed.destroy_process_group()
