"""optileuk: tune leukemia-microscopy pipelines with metaheuristics and Bayesian optimization.

Every candidate any optimizer proposes is an Optuna trial in an Optuna storage.
"""

__version__ = "0.1.0"


def load_model(run_dir, device: str = "auto"):
    """The model ``optileuk train`` wrote into ``run_dir`` (a bundle: data only, never a pickle), with
    ``predict(images)``, ``predict_proba(images)``, ``scores(images)`` and ``segment(images)``.

    Example:
        >>> import optileuk  # doctest: +SKIP
        >>> model = optileuk.load_model("runs/best")  # doctest: +SKIP
        >>> model.predict(["cells/a.png", "cells/b.png"])  # doctest: +SKIP
        array(['L2', 'normal'], dtype='<U6')
    """
    from optileuk.bundle import load

    return load(run_dir, device=device)
