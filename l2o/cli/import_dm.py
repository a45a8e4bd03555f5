"""Convert a DeepMind-format learned optimizer (`cw.l2l` of the `learning-to-learn` code, or of
Chen et al. 2020's L2O-DM / -CL / -IL / -CL-IL models) into an l2o checkpoint, so that
`l2o-eval checkpoint=OUT.pt` evaluates it on our test problems beside tuned baselines.

    python -m l2o.cli.import_dm cw.l2l OUT.pt [--optimizee mnist_mlp] [--k 5] [--scale 0.01]

--k and --scale are the DM net's LogAndSign k and output scale (its defaults: 5 and 0.01), so
`l2o-eval` needs `optimizer.preprocess_p=K optimizer.output_scale=SCALE` (it checks them).
--optimizee names the conf/optimizee file recorded as what it was trained on (the DM MNIST
problem is our mnist_mlp: 784-20-10 sigmoid, batches of 128).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from l2o.cli.common import CONF_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a DeepMind-format .l2l file (CoordinateWiseDeepLSTM)")
    ap.add_argument("out", help="the l2o checkpoint to write (.pt)")
    ap.add_argument("--optimizee", default="mnist_mlp", help="conf/optimizee/NAME.yaml it was trained on")
    ap.add_argument("--k", type=float, default=5.0, help="LogAndSign k (DM default 5)")
    ap.add_argument("--scale", type=float, default=0.01, help="output scale (DM default 0.01)")
    args = ap.parse_args()

    import torch
    from omegaconf import OmegaConf

    from l2o.checkpoint import payload
    from l2o.optimizers.dm_format import load_l2l, lstm_from_sonnet

    net = lstm_from_sonnet(load_l2l(args.source), preprocess_p=args.k, output_scale=args.scale)
    optimizee = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "optimizee" / f"{args.optimizee}.yaml"))
    data = payload(net, optimizee={"name": args.optimizee, "config": optimizee, "description": None},
                   schedule={"horizon": 100}, imported={"source": str(Path(args.source).resolve()), "format": "dm-l2l"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.out)
    print(f"wrote {args.out}: {net.full_config()}")


if __name__ == "__main__":
    main()
