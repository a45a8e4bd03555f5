"""Speed and memory of meta-training, evaluation and the learned step on real-sized models.

    python scripts/bench.py --help
    python scripts/bench.py --ref ../shared/bench/ref_l2o.py   # + the reference prototype, same run
    python scripts/bench.py --device cuda --skip 10m           # on a GPU (the prototype is CPU only)
    python scripts/bench.py --net mlp_lopt --skip quadratic mnist   # the learned step of another net:
                                   # lstm (default) | mlp_lopt | a checkpoint or pretrained name

Prints the machine (CPU model, ISA, threads), then one JSON line per measurement
({"name", "median", "min", "max", "unit", "runs"}), then a table and the ratios the speed
targets are stated in. Speeds only mean something as ratios measured in the same run on the
same machine: the prototype is run before and after l2o's own figures and its medians pooled.
Not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from l2o.meta.bptt import TruncatedBPTT  # noqa: E402
from l2o.meta.objectives import WeightedSum  # noqa: E402
from l2o.meta.trainer import meta_gradient  # noqa: E402
from l2o.meta.unroll import rollout  # noqa: E402
from l2o.optimizees import MLPClassifier, Quadratic  # noqa: E402
from l2o.optimizees.base import split_seeds  # noqa: E402
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer, MLPLOpt, OptimizerNet  # noqa: E402
from l2o.optimizers.files import available, load_checkpoint, net_from_checkpoint, pretrained_path  # noqa: E402
from l2o.utils import configure_torch, resolve_device  # noqa: E402

ROWS: list[dict] = []


def report(name: str, values: list[float], unit: str, **extra) -> dict:
    row = {"name": name, "median": statistics.median(values), "min": min(values), "max": max(values), "unit": unit,
           "runs": len(values), **extra}
    ROWS.append(row)
    print(json.dumps(row), flush=True)
    return row


def machine(device: torch.device) -> dict:
    """CPU model and instruction sets as the kernels see them (speeds differ ~2× between the
    AVX2 and AVX-512 machines this project runs on)."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    info = {"cpu": model, "cpu_count": os.cpu_count(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": isa, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], None], runs: int, device: torch.device, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def lstm_flops_per_coordinate(net: CoordinatewiseLSTM, backward: bool) -> int:
    """Matmul FLOPs of one step per coordinate: 2·(4H)·(H + in + 1) per layer plus the output
    layer; a backward costs two more matmuls of each size (grad input, grad weight)."""
    H, fan_in, flops = net.hidden_size, 1 if net.preprocess_p is None else 2, 0
    for _ in range(net.num_layers):
        flops += 2 * 4 * H * (H + fan_in + 1)
        fan_in = H
    flops += 2 * fan_in
    return flops * (3 if backward else 1)


def flops_per_coordinate(net: OptimizerNet) -> int:
    """Matmul FLOPs of one no-grad step per coordinate, for the FLOP floor of the learned step."""
    if isinstance(net, MLPLOpt):
        sizes = [net.num_inputs, *net.hidden, 2]
        return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:])) + 2 * 2 * net.num_inputs   # + the skip
    if isinstance(net, CoordinatewiseLSTM):
        return lstm_flops_per_coordinate(net, backward=False)
    raise SystemExit(f"no FLOP count for {type(net).__name__}; use --net lstm or mlp_lopt")


def step_net(spec: str, device: torch.device) -> OptimizerNet:
    """The net of the learned-step figures: the paper's 2×20 LSTM (`lstm`, random output layer),
    the per-parameter MLP (`mlp_lopt`, its defaults), or a checkpoint / shipped name."""
    if spec == "lstm":
        net = CoordinatewiseLSTM(20, 2, 10.0, 0.1)
        with torch.no_grad():
            net.out_weight.normal_(0, 0.1)
    elif spec == "mlp_lopt":
        net = MLPLOpt()
    else:
        net = net_from_checkpoint(load_checkpoint(pretrained_path(spec) if spec in available() else spec))
    return net.to(device)


def rss_mib(key: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def step_memory(name: str, label: str, device: torch.device, net_spec: str = "lstm") -> float:
    """Peak working memory of a learned step on model `name`, beyond the model, its gradients
    and the optimizer's state, measured in a fresh process (CPU) so no earlier heap is reused."""
    if device.type == "cuda":
        return _step_memory(name, label, device, net_spec)
    cmd = [sys.executable, __file__, "--memory-child", name, label, "--net", net_spec]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _step_memory(name: str, label: str, device: torch.device, net_spec: str = "lstm") -> float:
    configure_torch()
    model, x, y = build_model(name, device)
    nn.functional.cross_entropy(model(x), y).backward()
    net = step_net(net_spec, device)
    opt = LearnedOptimizer(model, net=net, state_dtype=torch.bfloat16 if label == "bf16" else None)
    # the first step in this fresh process: its peak minus the state it leaves is its working memory
    if device.type == "cuda":
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        before = rss_mib()
        Path("/proc/self/clear_refs").write_text("5")
    opt.step()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else rss_mib("VmHWM")
    state = sum(v.nbytes for s in opt.state.values() for k, v in s.items() if k != "step") / 2**20
    return peak - before - state


def run_reference(path: Path, reps: int) -> dict[str, list[float]]:
    """The prototype's MNIST meta-epoch and 100-step evaluation times, in a child process."""
    cmd = [sys.executable, str(path), "--bench", "mnist", "--reps", str(reps), "--eval", "1"]
    print(f"# reference: {' '.join(cmd)}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    times: dict[str, list[float]] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            times[row["figure"]] = row["times"]
    return times


def meta_epoch(net, problem, horizon=100, unroll_len=20) -> Callable[[], None]:
    """One meta-training epoch as l2o-train runs it: the estimator's truncations, a meta-step after each."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    estimator = TruncatedBPTT(WeightedSum(), unroll_len)

    def run():
        for item in estimator.truncations(net, problem, horizon, torch.Generator().manual_seed(0), 0):
            meta_gradient(net, opt, item.value, clip_grad_norm=10.0)
            opt.step()

    return run


MODELS = ("mlp", "1m", "10m")


def build_model(name: str, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The learned step's test models, with a fixed random minibatch: the paper's MNIST MLP
    (15,910 parameters), an ordinary MNIST CNN (PyTorch's MNIST example network, 1.2M) and a
    10.5M-parameter MLP on 32×32×3 inputs."""
    torch.manual_seed(0)
    if name == "mlp":
        model, x = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10)), torch.rand(128, 784)
    elif name == "1m":
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
        x = torch.rand(64, 1, 28, 28)
    else:
        model = nn.Sequential(nn.Linear(3072, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
        x = torch.randn(64, 3072)
    y = torch.randint(0, 10, (x.shape[0],))
    return model.to(device), x.to(device), y.to(device)


def learned_step(name: str, net: OptimizerNet, peak: float, runs: int, device: torch.device, net_spec: str) -> None:
    """Time, FLOP floor, memory and state bytes per parameter of `LearnedOptimizer.step()`
    (fp32 and bfloat16 state) next to Adam's, on one model with fixed gradients."""
    model, x, y = build_model(name, device)
    numel = sum(p.numel() for p in model.parameters())
    nn.functional.cross_entropy(model(x), y).backward()
    floor = flops_per_coordinate(net) * numel / (peak * 1e9)
    start_params = [p.detach().clone() for p in model.parameters()]
    moved = {}
    for label, kwargs in (("fp32", {}), ("bf16", {"state_dtype": torch.bfloat16})):
        with torch.no_grad():
            for p, s in zip(model.parameters(), start_params):
                p.copy_(s)
        opt = LearnedOptimizer(model, net=net, **kwargs)
        t = measure(opt.step, runs, device)
        extra = step_memory(name, label, device, net_spec)
        state_bytes = sum(v.nbytes for s in opt.state.values() for k, v in s.items() if k != "step")
        report(f"learned_step_{name}_{label}", t, "s", params=numel, floor_s=floor,
               over_floor=statistics.median(t) / floor, state_bytes_per_param=state_bytes / numel,
               step_extra_mib=extra)
        moved[label] = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start_params)])
    # the same steps from the same start and gradients: how far bfloat16 state moves the parameters off
    dev = (moved["bf16"] - moved["fp32"]).norm() / moved["fp32"].norm().clamp_min(1e-30)
    report(f"bf16_state_deviation_{name}", [float(dev)], "relative")
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = measure(adam.step, runs, device)
    state_bytes = sum(v.nbytes for s in adam.state.values() for k, v in s.items() if k != "step")
    report(f"adam_step_{name}", t, "s", params=numel, state_bytes_per_param=state_bytes / numel)
    model.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--runs", type=int, default=5, help="timed repetitions per figure (after one warm-up)")
    ap.add_argument("--compile", action="store_true", help="the LSTM layers through torch.compile (fused kernels)")
    ap.add_argument("--ref", type=Path, default=None,
                    help="path of the reference prototype (../shared/bench/ref_l2o.py here): run it in the same "
                         "run and print l2o's ratios to it")
    ap.add_argument("--skip", nargs="*", default=[], choices=["quadratic", "mnist", "mlp", "1m", "10m"],
                    help="figures to leave out")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--net", default="lstm", help="the learned step's net: lstm (the paper's 2×20 LSTM), mlp_lopt "
                                                  "(the per-parameter MLP), or a checkpoint / shipped name")
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)  # internal: one step_memory measurement
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.memory_child:
        print(_step_memory(*args.memory_child, device, args.net))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    configure_torch()
    torch.manual_seed(0)
    print("# machine: " + json.dumps(machine(device)), flush=True)
    ref: dict[str, list[float]] = {}
    use_ref = args.ref is not None and device.type == "cpu" and "mnist" not in args.skip
    if args.ref is not None and not use_ref:
        print("# the reference prototype runs on the CPU only, with the mnist figures: skipped", flush=True)
    if use_ref:
        for figure, times in run_reference(args.ref, args.runs).items():
            ref.setdefault(figure, []).extend(times)

    a = torch.randn(4096, 4096, device=device)
    peak_row = report("matmul_peak", [2 * 4096**3 / s / 1e9 for s in measure(lambda: a @ a, args.runs, device)],
                      "GFLOP/s")
    peak = peak_row["median"]
    del a

    if "quadratic" not in args.skip:  # paper setting: B = 128 functions, d = 10, T = 100, U = 20
        quad_net = CoordinatewiseLSTM(20, 2, None, 1.0).to(device).compile_layers(args.compile)
        quad = Quadratic(dim=10).sample(split_seeds("train", 128), device)
        t = measure(meta_epoch(quad_net, quad), args.runs, device)
        report("quadratic_meta_epoch", t, "s", function_steps_per_s=128 * 100 / statistics.median(t))

    data = Path(os.environ.get("L2O_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "mnist"
    fam = MLPClassifier(torchvision.datasets.MNIST(str(data), train=True), torchvision.datasets.MNIST(str(data), train=False))
    net = step_net("lstm", device).compile_layers(args.compile)
    if "mnist" not in args.skip:  # MNIST 1×20 sigmoid, batch 128, one instance (15,910 coordinates)
        problem = fam.sample(split_seeds("train", 1), device)
        epoch = meta_epoch(net, problem)
        t = measure(epoch, args.runs, device)
        flops = lstm_flops_per_coordinate(net, backward=True) * fam.spec.numel * 100
        report("mnist_meta_epoch", t, "s", fraction_of_matmul_peak=flops / statistics.median(t) / 1e9 / peak)
        t = measure(lambda: rollout(net, problem, 100), args.runs, device)
        report("mnist_eval", [100 / s for s in t], "steps/s")
        if use_ref:  # the prototype again, after l2o's figures: both sides see the same drift
            for figure, times in run_reference(args.ref, args.runs).items():
                ref.setdefault(figure, []).extend(times)
            report("ref_mnist_meta_epoch", ref["mnist_train_epoch"], "s")
            report("ref_mnist_eval", [100 / s for s in ref["mnist_eval_100steps"]], "steps/s")

    stepper = net if args.net == "lstm" else step_net(args.net, device).compile_layers(args.compile)
    print(f"# learned step: {args.net} ({type(stepper).__name__})", flush=True)
    for name in MODELS:
        if name not in args.skip:
            learned_step(name, stepper, peak, max(2, args.runs // 2 if name == "10m" else args.runs), device, args.net)

    print("\n| name | median | min | max | unit | runs |\n|---|---|---|---|---|---|")
    for r in ROWS:
        print(f"| {r['name']} | {r['median']:.4g} | {r['min']:.4g} | {r['max']:.4g} | {r['unit']} | {r['runs']} |")
    rows = {r["name"]: r for r in ROWS}
    print("\nTargets (issue 11), measured in this run:")
    if "ref_mnist_meta_epoch" in rows:
        print(f"- MNIST meta-epoch / prototype's: {rows['mnist_meta_epoch']['median'] / rows['ref_mnist_meta_epoch']['median']:.2f} (target <= 0.5)")
        print(f"- evaluation steps/s / prototype's: {rows['mnist_eval']['median'] / rows['ref_mnist_eval']['median']:.2f} (target >= 2)")
    for name in ("mlp", "1m", "10m"):
        for label in ("fp32", "bf16"):
            r = rows.get(f"learned_step_{name}_{label}")
            if r:
                adam = rows[f"adam_step_{name}"]
                print(f"- learned step, {name} ({r['params']:,} parameters, {label} state): {r['median'] * 1e3:.1f} ms = "
                      f"{r['over_floor']:.1f}x its matmul FLOP floor (target <= 3); {r['state_bytes_per_param']:.0f} B of "
                      f"state per parameter (Adam: {adam['state_bytes_per_param']:.0f} B, {adam['median'] * 1e3:.1f} ms); "
                      f"{r['step_extra_mib']:.0f} MiB working memory; {r['median'] / adam['median']:.1f}x Adam's step "
                      f"(issue 37's targets on 1m: <= 10x Adam's step, <= 32 B per parameter)")


if __name__ == "__main__":
    main()
