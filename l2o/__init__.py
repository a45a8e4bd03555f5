"""l2o: learned optimizers (Andrychowicz et al., NIPS 2016) in PyTorch."""

__version__ = "0.1.0"
