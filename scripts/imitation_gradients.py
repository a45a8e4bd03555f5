"""Why imitation=adam normalizes: meta-gradient norms of one 20-step unroll on the MNIST MLP (untrained
LSTM, 40 steps in), the ordinary meta-loss against imitation of Adam, raw (Chen et al.) and normalized.
    python scripts/imitation_gradients.py
"""
import functools
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from l2o.meta.imitation import Imitation, imitate
from l2o.meta.unroll import start, unroll
torch.manual_seed(0)
with initialize_config_dir(str(Path(__file__).resolve().parents[1] / 'conf'), version_base='1.3'):
    cfg = compose('train', overrides=['experiment=mnist'])
fam = instantiate(cfg.optimizee); net = instantiate(cfg.optimizer)
def gnorm():
    n = torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters())); net.zero_grad(); return float(n)
for name, ctor in (("normal", None), ("imit raw", False), ("imit normalized", True)):
    prob = fam.sample([11]); carry = start(net, prob)
    if ctor is None:
        # warm: 40 steps in, then a 20-step unroll as in training
        _, _, carry = unroll(net, prob, carry, 40)
        loss, _, _ = unroll(net, prob, carry, 20, lambda l, t: l.mean())
    else:
        im = Imitation(functools.partial(torch.optim.Adam, lr=0.0316), normalize=ctor)
        t = im.teacher(carry.params)
        _, _, carry = imitate(net, prob, carry, 40, t, im.loss)
        loss, _, _ = imitate(net, prob, carry, 20, t, im.loss)
    loss.backward(); print(f"{name}: meta-loss {float(loss.detach()):.4g}, |grad φ| {gnorm():.4g}")
