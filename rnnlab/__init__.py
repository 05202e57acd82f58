"""rnnlab: a command-line laboratory for the gradient dynamics of recurrent neural networks."""

__version__ = "0.1.0"


def open(path, **options):  # noqa: A001 - rnnlab.open(DIR), as in a notebook
    """A results folder as an ``rnnlab.notebook.Results`` (runs, norms, metrics, summary, plot)."""
    from rnnlab.notebook import open as _open

    return _open(path, **options)
