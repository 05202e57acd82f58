"""Where batches are trained: one module per backend (``serial``, ``pool``, ``dask``) behind the
interface of ``base``; the commit loop that drives them is ``rnnlab.run.execute``."""
