"""The top floor: the console script and the runs that put several parts in one process (replay, bench, amd-report)."""
