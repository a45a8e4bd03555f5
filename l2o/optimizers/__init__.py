"""Learned optimizers behind one interface (`OptimizerNet`: init_state + update), routing,
and `LearnedOptimizer`, the torch.optim wrapper that runs a trained one on any model.

Baselines are torch.optim's own SGD, RMSprop, Adam and SGD(momentum=0.9, nesterov=True),
configured in `conf/optimizer/`; nothing here re-implements them.
"""
from l2o.optimizers.adam_lstm import AdamLSTM
from l2o.optimizers.base import OptimizerNet, build_net
from l2o.optimizers.gac import LSTMGAC
from l2o.optimizers.learned import LearnedOptimizer
from l2o.optimizers.lstm import CoordinatewiseLSTM
from l2o.optimizers.mlp_lopt import MLPLOpt
from l2o.optimizers.preprocess import log_sign, preprocess
from l2o.optimizers.rnnprop import RNNprop
from l2o.optimizers.routed import Routed

__all__ = ["AdamLSTM", "CoordinatewiseLSTM", "LSTMGAC", "LearnedOptimizer", "MLPLOpt", "OptimizerNet", "RNNprop", "Routed", "build_net",
           "log_sign", "preprocess"]
