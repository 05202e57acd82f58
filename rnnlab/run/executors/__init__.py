"""Where batches are trained: one module per backend (``serial``, ``pool``, ``dask``) behind the
interface of ``base``; the commit loop that drives them is ``rnnlab.run.execute``."""

#: The ``--executor`` choices: ``local`` (serial, or the process pool with ``--workers N``) and
#: ``dask`` (a Dask cluster).
EXECUTORS = ("local", "dask")
