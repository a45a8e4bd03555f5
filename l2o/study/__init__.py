"""Studies: named lists of l2o-train / l2o-eval runs (units) in conf/study/, run by `l2o-study run`
as Hydra multiruns and turned into results pages by `l2o-study report`. The library knows nothing
of them: a study only composes configs that the two CLIs accept."""
