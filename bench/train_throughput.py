"""Throughput of smallunet against its baseline, smalldiffusion 0.5.0, measured in one run.

Training (images per second):
  ours        smallunet.fast_trainer.Trainer: the data set as one tensor on the device, flips
              by indexing, bf16 autocast where the hardware has it ("auto"), EMA inside
              the step; on the CPU, attention as two matmuls in bf16
              (smallunet.attention.use_explicit_attention) and dropout masks from 15
              random bits per element (smallunet.cpu_speedups.FastDropout).
  ours-fp32   the same Trainer with precision="fp32" (shows what bf16 alone buys).
  baseline    smalldiffusion's ``training_loop`` fed as in its FashionMNIST example
              (examples/fashion_mnist_unet.py): torchvision's FashionMNIST with
              ``img_train_transform`` in a shuffling DataLoader, ``loss.item()`` each step
              for the progress bar, and an EMA of decay 0.999 updated each step. The
              example uses torch_ema; this script uses a stand-in with torch_ema's
              update rule (see ``TorchEmaStandIn``) so that nothing more is installed.
Same architecture (Scaled(Unet)(28, 1, 1, ch=64, ch_mult=(1, 1, 2), attn_resolutions=(14,)),
4,424,833 parameters on both sides), same batch, same device, AdamW lr 7e-4.

Sampling (20 steps, gam=1.6, mu=0, as in the example): ``smallunet.samples`` against
``smalldiffusion.samples``, both on the same weights and the same starting noise (the
final images are checked to agree), and ours under bf16 autocast as an extra row.

The contenders are timed in turn within each repeat (the order rotates), so a change
in background load hits every contender alike (``--blocked`` times them one after the
other instead, which needs less memory); the table gives medians and the ratio to the
baseline measured in the same run.

    python bench/train_throughput.py --batch-size 128 --threads 1
    python bench/train_throughput.py --batch-size 1024 --steps 1 --repeats 3 --no-sampling --blocked
    python bench/train_throughput.py --device cuda --batch-size 1024 --steps 20 --repeats 5
"""
from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # a checkout without an install (the GPU machine)
import smalldiffusion as sd  # noqa: E402
import smallunet as su
from smallunet.data import DEBIAN_DIR, load_fashion_mnist
from smallunet.device import bf16_supported, cpu_name
from smallunet import Trainer, TrainConfig, build_model

ARCH = dict(ch=64, ch_mult=(1, 1, 2), attn_resolutions=(14,))
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128, help="training batch (default 128)")
    p.add_argument("--steps", type=int, default=20,
                   help="optimizer steps per timed repeat (default 20: a repeat long enough that "
                        "timer and scheduler noise stay small)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per contender (default 5)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: smallunet.default_device())")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-fp32", action="store_true", help="skip the ours-fp32 contender")
    p.add_argument("--blocked", action="store_true",
                   help="time the contenders one after the other instead of interleaved "
                        "(less memory: needed for batch 1024 on a CPU with 24 GB)")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (GPU)")
    p.add_argument("--no-training", action="store_true")
    p.add_argument("--no-sampling", action="store_true")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--sample-repeats", type=int, default=3)
    p.add_argument("--data", type=Path, default=DEBIAN_DIR,
                   help="folder with the four FashionMNIST .gz files (default Debian's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--md", type=Path, default=None,
                   help="write the report as a section of this markdown file (e.g. bench/RESULTS.md)")
    p.add_argument("--title", default=None, help="the section's title, e.g. 'CPU, 2 threads'")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict:
    cpu = cpu_name()
    info = dict(cpu=cpu, cores=os.cpu_count(), threads=torch.get_num_threads(), torch=torch.__version__,
                smalldiffusion=getattr(sd, "__version__", "0.5.0"), device=str(device),
                bf16=bf16_supported(device), python=platform.python_version())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def torchvision_root(data: Path, tmp: Path) -> Path:
    """torchvision's layout (root/FashionMNIST/raw/<name>, uncompressed) from the .gz files,
    so that FashionMNIST(root, download=False) works offline."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        src = data / f"{name}.gz"
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing; pass --data FOLDER holding the four FashionMNIST .gz files")
        with gzip.open(src, "rb") as f, open(raw / name, "wb") as g:
            shutil.copyfileobj(f, g)
    return tmp


class TorchEmaStandIn:
    """torch_ema.ExponentialMovingAverage(params, decay) as the example uses it:
    shadow copies, decay min(decay, (1 + n) / (10 + n)), one update per parameter."""

    def __init__(self, parameters, decay: float):
        self.params = [p for p in parameters if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay, self.num_updates = decay, 0

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        one_minus_decay = 1.0 - min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, self.params):
            s.sub_((s - p).mul_(one_minus_decay))


def ours_trainer(batch, device, data, precision, compile_):
    cfg = TrainConfig(batch_size=batch, epochs=None, max_steps=10 ** 9, precision=precision,
                      compile=compile_, save_every_minutes=1e9)
    trainer = Trainer(cfg, data=data, device=device, progress=False)
    gen = trainer.steps()

    def run(k: int) -> int:
        for _ in range(k):
            s = next(gen)
        float(s.loss)          # wait for the device
        return k * batch
    return run, trainer.precision


def baseline_loop(batch, device, root):
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from torchvision.datasets import FashionMNIST

    accelerator = Accelerator(cpu=device.type == "cpu")
    dataset = sd.MappedDataset(FashionMNIST(str(root), train=True, download=False,
                                            transform=sd.img_train_transform), lambda x: x[0])
    loader = DataLoader(dataset, batch_size=batch, shuffle=True)
    schedule = sd.ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800)
    torch.manual_seed(0)
    model = sd.Scaled(sd.Unet)(28, 1, 1, **ARCH).to(accelerator.device)
    ema = TorchEmaStandIn(model.parameters(), decay=0.999)
    gen = sd.training_loop(loader, model, schedule, accelerator=accelerator, epochs=10 ** 6, lr=7e-4)

    def run(k: int) -> int:
        images = 0
        for _ in range(k):
            ns = next(gen)
            ns.loss.item()          # the example's pbar.set_description(f'Loss={ns.loss.item():.5}')
            ema.update()
            images += ns.x0.shape[0]
        return images
    return run, "fp32"


def timed(fn, k, device) -> tuple[float, int]:
    sync(device)
    t0 = time.perf_counter()
    images = fn(k)
    sync(device)
    return time.perf_counter() - t0, images


def measure(contenders: dict, k: int, warmup: int, repeats: int, device, blocked: bool = False) -> dict:
    """{name: [images/s per repeat]}.

    Interleaved (default): after every contender's warm-up, each repeat times every
    contender in turn, the order rotating, so load changes hit all alike. Blocked: one
    contender's warm-up and repeats, then it is dropped (freeing its memory), then the
    next. smalldiffusion's training_loop yields between the forward and the backward
    pass, so while it waits its autograd graph stays alive; at batch 1024 on a CPU that
    is about 10 GB, too much to keep while the other contenders run."""
    names = list(contenders)
    rates = {name: [] for name in names}

    def time_one(name):
        seconds, images = timed(contenders[name], k, device)
        rates[name].append(images / seconds)
        print(f"  {name}: {rates[name][-1]:.3g} images/s", file=sys.stderr, flush=True)

    if blocked:
        for name in names:
            if warmup:
                timed(contenders[name], warmup, device)
            for _ in range(repeats):
                time_one(name)
            contenders[name] = None      # drop the generator and its pending graph
            gc.collect()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20   # KiB -> GiB (Linux)
            print(f"  after {name}: peak resident memory of this process so far {peak:.1f} GiB",
                  flush=True)
        return rates
    for name in names:
        if warmup:
            timed(contenders[name], warmup, device)
        print(f"  warmed up {name}", file=sys.stderr, flush=True)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time_one(name)
    return rates


def table(rates: dict, baseline: str, unit: str, notes: dict) -> str:
    base = statistics.median(rates[baseline])
    lines = [f"| contender | median {unit} | min | max | repeats | vs {baseline} |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rates.items():
        m = statistics.median(r)
        lines.append(f"| {name} {notes.get(name, '')} | {m:.3g} | {min(r):.3g} | {max(r):.3g} | {len(r)} | {m / base:.2f}x |")
    return "\n".join(lines)


def matmul_rate(device, dtype, n: int = 1024, repeats: int = 5) -> float:
    """This machine's dense matrix-multiply rate in GFLOP/s (median of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        times.append((time.perf_counter() - t0) / 4)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def step_flops_per_image(device, batch: int = 8) -> int:
    """FLOPs of one training step per image: forward and backward of the seed model,
    counted by FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode
    model = build_model(TrainConfig()).to(device)
    x = torch.randn(batch, 1, 28, 28, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.full((batch, 1, 1, 1), 1.0, device=device)).square().mean().backward()
    return counter.get_total_flops() // batch


def bench_training(args, device) -> tuple[dict, str]:
    data, _ = load_fashion_mnist("train", root=args.data)
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.data, Path(tmp))
        contenders, notes = {}, {}
        run, prec = ours_trainer(args.batch_size, device, data, "auto", args.compile)
        contenders["ours"], notes["ours"] = run, f"({prec})"
        if not args.no_fp32 and prec != "fp32":
            contenders["ours-fp32"], notes["ours-fp32"] = ours_trainer(args.batch_size, device, data, "fp32", args.compile)[0], "(fp32)"
        contenders["baseline"], notes["baseline"] = baseline_loop(args.batch_size, device, root)[0], "(fp32)"
        rates = measure(contenders, args.steps, args.warmup, args.repeats, device, args.blocked)
    return rates, table(rates, "baseline", "images/s", notes) + which_row(rates)


def which_row(rates: dict) -> str:
    """What each comparison of the table answers, with its ratio from this run."""
    m = {name: statistics.median(r) for name, r in rates.items()}
    if "ours-fp32" not in m:
        return ""
    return (f"\n\nWhich row answers what: *is the code faster?* ours-fp32 against the baseline, both fp32: "
            f"{m['ours-fp32'] / m['baseline']:.2f}x. *Is bf16 faster on this machine?* ours against ours-fp32, "
            f"the same code: {m['ours'] / m['ours-fp32']:.2f}x. Ours against the baseline "
            f"({m['ours'] / m['baseline']:.2f}x) is the two together.")


def bench_sampling(args, device) -> tuple[dict, str]:
    from accelerate import Accelerator
    torch.manual_seed(0)
    ours = build_model(TrainConfig()).to(device).eval()
    theirs = sd.Scaled(sd.Unet)(28, 1, 1, **ARCH).to(device).eval()
    theirs.load_state_dict(ours.state_dict())
    accelerator = Accelerator(cpu=device.type == "cpu")
    sigmas = su.ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20).sample_sigmas(args.sample_steps).to(device)
    x_start = torch.randn(args.sample_batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device) * sigmas[0]
    last = {}

    def make(name):
        def run(k, sigmas=sigmas):
            for _ in range(k):
                if name == "smalldiffusion":
                    *_, x0 = sd.samples(theirs, sigmas, gam=1.6, mu=0., batchsize=args.sample_batch,
                                        xt=x_start.clone(), accelerator=accelerator)
                else:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "ours-bf16"):
                        *_, x0 = su.samples(ours, sigmas, gam=1.6, mu=0., batchsize=args.sample_batch,
                                            xt=x_start.clone())
                last[name] = x0
            return k * args.sample_batch
        return run

    names = ["ours", "smalldiffusion"] + (["ours-bf16"] if bf16_supported(device) else [])
    contenders = {n: make(n) for n in names}
    for fn in contenders.values():       # warm-up: a 2-step sampling each
        fn(1, sigmas=sigmas[-3:])
    rates = measure(contenders, 1, 0, args.sample_repeats, device)
    diff = (last["ours"] - last["smalldiffusion"]).abs().max().item()
    notes = {n: "(fp32)" for n in ("ours", "smalldiffusion")}
    notes["ours-bf16"] = "(bf16 autocast)"
    text = table(rates, "smalldiffusion", "images/s", notes)
    text += f"\n\nmax |ours - smalldiffusion| over the final images (fp32, same start, deterministic): {diff:.2e}"
    return rates, text


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else su.default_device()
    info = machine(device)
    print("command: python " + " ".join([sys.argv[0]] + sys.argv[1:]))
    print("machine: " + json.dumps(info))
    out = dict(machine=info, args={k: str(v) for k, v in vars(args).items()})
    report = [f"command: `python {' '.join([sys.argv[0]] + sys.argv[1:])}`", "",
              f"machine: {info.get('cpu')}, {info.get('cores')} cores, {info.get('threads')} torch threads, "
              f"torch {info.get('torch')}, smalldiffusion {info.get('smalldiffusion')}"]
    try:
        info["loadavg_start"] = os.getloadavg()
        report.append(f"load average at the start: {tuple(round(v, 2) for v in info['loadavg_start'])}")
    except OSError:
        pass
    if not args.no_training:
        rates, text = bench_training(args, device)
        out["training"] = rates
        header = (f"### Training, batch {args.batch_size}, {args.steps} steps per repeat, "
                  f"{args.warmup} warm-up steps")
        print(f"\n{header}\n\n{text}")
        report += ["", header, "", text]
        peak = {str(dt): matmul_rate(device, dt) for dt in (torch.float32, torch.bfloat16)}
        flops = step_flops_per_image(device)
        out["matmul_gflops"], out["step_flops_per_image"] = peak, flops
        ours = statistics.median(rates["ours"])
        achieved = ours * flops / 1e9
        line = (f"A training step costs {flops / 1e9:.3f} GFLOP per image (forward and backward); ours at "
                f"{ours:.3g} images/s achieves {achieved:.1f} GFLOP/s, against this machine's matrix multiply "
                f"measured in the same run at {peak['torch.bfloat16']:.0f} GFLOP/s in bf16 and "
                f"{peak['torch.float32']:.0f} GFLOP/s in fp32 (1024x1024): "
                f"{achieved / peak['torch.bfloat16']:.0%} of the bf16 rate.")
        out["achieved_gflops"] = achieved
        print(line)
        report += ["", line]
    if not args.no_sampling:
        rates, text = bench_sampling(args, device)
        out["sampling"] = rates
        header = f"### Sampling, batch {args.sample_batch}, {args.sample_steps} steps (gam=1.6, mu=0)"
        print(f"\n{header}\n\n{text}")
        report += ["", header, "", text]
    try:
        info["loadavg_end"] = os.getloadavg()
        print(f"\nload average at the end: {info['loadavg_end']}")
        report += ["", f"load average at the end: {tuple(round(v, 2) for v in info['loadavg_end'])}"]
    except OSError:
        pass
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        title = f"## {args.title}" if args.title else "## Results"
        block = "\n".join([title, "", *report, ""])
        old = args.md.read_text() if args.md.exists() else "# Throughput: smallunet against smalldiffusion 0.5.0\n\n"
        start = old.find(title + "\n")                 # replace this section, keep the others
        if start >= 0:
            end = old.find("\n## ", start + len(title))
            old = old[:start] + (old[end + 1:] if end >= 0 else "")
        args.md.write_text(old.rstrip() + "\n\n" + block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
