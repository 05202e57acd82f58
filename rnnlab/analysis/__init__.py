"""Numbers derived from stored runs: per-run gradient statistics and the grouped summary table
(``summarize``), intervals over seeds (``stats``), Lyapunov statistics (``lyapunov_stats``), the
limit map (``limits``). Computation over tables; only ``summarize.summary_of`` and
``limits.limits_of`` read a folder."""
