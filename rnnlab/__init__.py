"""rnnlab: a command-line laboratory for the gradient dynamics of recurrent neural networks."""

__version__ = "0.1.0"
