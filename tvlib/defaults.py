"""The one home of the settings every entry point shares (library, command line, chapters): the default model and
the paper's protocol. Light on purpose (no torch), so `python -m tvlib --help` answers at once."""

DEFAULT_MODEL = "gemma-3-270m"

# The paper's main experiment (Protocol): demonstrations, dev / test contexts, baseline queries, dummy queries, seed.
DEMOS = 5
N_DEV = 50
N_TEST = 50
N_BASELINE = 100
N_DUMMY = 2
SEED = 41

# The other experiments, as the paper's scripts run them.
ROBUSTNESS_VECTORS = 50   # task vectors per task
ROBUSTNESS_DEMOS = 4
CONFLICT_QUERIES = 100
CONFLICT_DEMOS = 4
PROJECTION_TOP = 20       # alphabetic tokens kept from the top 100 logits

# Execution only: never part of what keys a stored result.
BATCH_SIZE = 32
DTYPE = "float32"         # stored results: the same answers on every CPU
