"""Speed and memory benchmark of meta-training and evaluation (issue: Speed).

    python scripts/bench.py                 # CPU (device=auto picks CUDA when present)
    python scripts/bench.py device=cuda runs=5
    python scripts/bench.py compile=true     # the LSTM layers through torch.compile

Prints one JSON line per measurement, {"name", "device", "median", "min", "max", "unit", "runs"},
then a table. Medians over `runs` repetitions after one warm-up. Not a test: nothing asserts.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from l2o.meta.unroll import rollout, start, unroll  # noqa: E402
from l2o.optimizees import MLPClassifier, Quadratic  # noqa: E402
from l2o.optimizees.base import split_seeds  # noqa: E402
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer  # noqa: E402
from l2o.utils import configure_torch, resolve_device  # noqa: E402


def lstm_flops_per_coordinate(net: CoordinatewiseLSTM, backward: bool) -> int:
    """Matmul FLOPs of one step per coordinate: 2·(4H)·(H + in + 1) per layer plus the output
    layer; backward costs two more matmuls of the same size per matmul (grad input, grad weight)."""
    H, fan_in, flops = net.hidden_size, 1 if net.preprocess_p is None else 2, 0
    for _ in range(net.num_layers):
        flops += 2 * 4 * H * (H + fan_in + 1)
        fan_in = H
    flops += 2 * fan_in
    return flops * (3 if backward else 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], None], runs: int, device: torch.device) -> list[float]:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def meta_epoch(net, problem, horizon=100, unroll_len=20):
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def run():
        carry = start(net, problem)
        while carry.step < horizon:
            meta, _, carry = unroll(net, problem, carry, unroll_len, lambda loss, t: loss.mean())
            opt.zero_grad(set_to_none=True)
            meta.backward()
            opt.step()

    return run


def peak_rss_mib(fn: Callable[[], None], device: torch.device) -> float:
    """Peak memory of one call: CUDA max_memory_allocated, or the process's peak RSS (VmHWM,
    reset through /proc/self/clear_refs) on the CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        return torch.cuda.max_memory_allocated() / 2**20
    Path("/proc/self/clear_refs").write_text("5")
    fn()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    device = resolve_device(args.get("device", "auto"))
    runs = int(args.get("runs", 5))
    compiled = args.get("compile", "false").lower() == "true"
    configure_torch()
    torch.manual_seed(0)
    data = Path(os.environ.get("L2O_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "mnist"
    results = []

    def report(name, values, unit, n=runs):
        row = {"name": name, "device": str(device) + (" compiled" if compiled else ""), "median": statistics.median(values), "min": min(values),
               "max": max(values), "unit": unit, "runs": n}
        results.append(row)
        print(json.dumps(row), flush=True)

    # the machine's own matmul peak
    a = torch.randn(4096, 4096, device=device)
    t = measure(lambda: a @ a, runs, device)
    peak = [2 * 4096**3 / s / 1e9 for s in t]
    report("matmul_peak", peak, "GFLOP/s")

    # quadratics, paper setting: B = 128 functions, d = 10, T = 100, U = 20
    quad_net = CoordinatewiseLSTM(20, 2, None, 1.0).to(device).compile_layers(compiled)
    quad = Quadratic(dim=10).sample(split_seeds("train", 128), device)
    t = measure(meta_epoch(quad_net, quad), runs, device)
    report("quadratic_meta_epoch", t, "s")
    report("quadratic_meta_throughput", [128 * 100 / s for s in t], "function-steps/s")

    # MNIST 1×20 sigmoid, batch 128, one instance (15,910 coordinates)
    train = torchvision.datasets.MNIST(str(data), train=True)
    test = torchvision.datasets.MNIST(str(data), train=False)
    fam = MLPClassifier(train, test)
    net = CoordinatewiseLSTM(20, 2, 10.0, 0.1).to(device).compile_layers(compiled)
    with torch.no_grad():
        net.out_weight.normal_(0, 0.1)
    problem = fam.sample(split_seeds("train", 1), device)
    epoch = meta_epoch(net, problem)
    t = measure(epoch, runs, device)
    report("mnist_meta_epoch", t, "s")
    flops = lstm_flops_per_coordinate(net, backward=True) * fam.spec.numel * 100
    report("lstm_fraction_of_peak", [flops / s / 1e9 / statistics.median(peak) for s in t], "fraction")
    report("mnist_meta_peak_memory", [peak_rss_mib(epoch, device) for _ in range(3)], "MiB", 3)

    t = measure(lambda: rollout(net, problem, 100), runs, device)
    report("mnist_eval_throughput", [100 / s for s in t], "steps/s")

    # LearnedOptimizer.step() next to a full Adam training step on the same MLP
    model = torch.nn.Sequential(torch.nn.Linear(784, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 10)).to(device)
    x, y = fam.x[:128].to(device), fam.y[:128].to(device)
    learned = LearnedOptimizer(model.parameters(), net=net)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    t = measure(lambda: [learned.step() for _ in range(10)], runs, device)
    report("mnist_learned_step", [s / 10 for s in t], "s")
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)

    def adam_steps():
        for _ in range(10):
            adam.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            adam.step()

    t = measure(adam_steps, runs, device)
    report("mnist_adam_train_step", [s / 10 for s in t], "s")
    floor = lstm_flops_per_coordinate(net, backward=False) * fam.spec.numel / 1e9 / statistics.median(peak)
    print(f"# learned step FLOP floor at matmul peak: {floor * 1e3:.3f} ms")

    print("\n| name | device | median | min | max | unit |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['device']} | {r['median']:.4g} | {r['min']:.4g} | {r['max']:.4g} | {r['unit']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
