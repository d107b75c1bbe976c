"""The training loop and what it leaves behind: the engine, the task contract, run directories
and their lock, checkpoints, summaries, loading trained runs, cost accounting and curves."""
