"""The run layer: runs planned into batches, trained (``train``) and executed serially, in
worker processes or on a Dask cluster; ``sweep`` runs a whole experiment into a folder."""
