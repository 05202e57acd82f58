"""The results folder: its layout, lock, parquet I/O and commit protocol (``store``), readers
and the machine facts of the manifest."""
