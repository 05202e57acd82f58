"""The run layer: runs planned into batches (``plan``), trained (``train``) by an executor
(``executors``: serial, worker processes, a Dask cluster) under the one commit loop
(``execute``); ``sweep`` runs a whole experiment into a results folder."""
