"""Real training tasks (`conf/task/`): a model, data, a loss, a batch size and a number of steps,
trained by an ordinary PyTorch loop; `l2o-eval task=NAME checkpoint=...` judges learned
optimizers on them, through `LearnedOptimizer`, against tuned torch.optim baselines."""
from l2o.tasks.base import Task, Trained, train
from l2o.tasks.suite import CharLM, ImageClassification

__all__ = ["CharLM", "ImageClassification", "Task", "Trained", "train"]
