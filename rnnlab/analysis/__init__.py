"""The numbers of a summary, from stored runs: per-run gradient statistics and the grouped
summary table (``summarize``), intervals over seeds (``stats``), Lyapunov statistics. No I/O."""
