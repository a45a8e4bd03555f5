"""The learned optimizer (coordinatewise LSTM) and its torch.optim wrapper.

Baselines are torch.optim's own SGD, RMSprop, Adam and SGD(momentum=0.9, nesterov=True),
configured in `conf/optimizer/`; nothing here re-implements them.
"""
from l2o.optimizers.learned import LearnedOptimizer
from l2o.optimizers.lstm import CoordinatewiseLSTM
from l2o.optimizers.preprocess import log_sign, preprocess

__all__ = ["CoordinatewiseLSTM", "LearnedOptimizer", "log_sign", "preprocess"]
