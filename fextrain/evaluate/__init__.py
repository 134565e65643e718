"""Evaluation of a trained expression model (`fex eval`): a registry of sections over one shared context.

`run.evaluate_run` loads the model through its uniform editor, builds an `EvalContext` (the judge, the
generated set and dlib descriptors, each computed once when a section first asks) and runs the selected
sections of `sections.SECTIONS`; each section computes its numbers and renders its own part of
metrics.json, report.html and the terminal summary, and may add numbers to the headline.

Library parts the sections use: `judge` (the independent ResNet expression classifier) and `degrade`
(the generator degradations it trains with), `identity` (dlib descriptors), `frechet` + `inception`
(Fréchet distances), `scores` (accuracies), `grids` (labelled PNG grids), `report` (HTML pieces).
"""
__all__ = ["Evaluation", "EvalOptions", "evaluate_run"]


def __getattr__(name: str):
    # loaded on first use, so `fex eval --help` reads EvalOptions' defaults (options.py) without importing torch
    if name in __all__:
        from fextrain.evaluate import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
