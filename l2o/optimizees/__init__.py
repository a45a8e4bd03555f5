"""Problem families the learned optimizer is trained and tested on."""
from l2o.optimizees.autoencoder import ConvAutoencoder
from l2o.optimizees.base import Family, ParamSpec, Problem, split_seeds
from l2o.optimizees.cnn import ConvClassifier
from l2o.optimizees.mlp import MLPClassifier
from l2o.optimizees.neural_art import NeuralArt
from l2o.optimizees.quadratic import Quadratic, Simple

__all__ = ["ConvAutoencoder", "ConvClassifier", "Family", "MLPClassifier", "NeuralArt", "ParamSpec", "Problem", "Quadratic", "Simple", "split_seeds"]
