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
ROBUSTNESS_WINDOW = (11 / 32, 20 / 32)  # its script's layer sweep, blocks 10-19 of LLaMA 7B's 32, as depth (L+1)/N
CONFLICT_QUERIES = 100
CONFLICT_DEMOS = 4
PROJECTION_TOP = 20       # alphabetic tokens kept from the top 100 logits

# Execution only: never part of what keys a stored result.
BATCH_SIZE = 32
DTYPE = "float32"         # stored results: the same answers on every CPU

# run-book profiles: chapter parameters laid over the chapters' own defaults (which are the paper's protocol).
QUICK_TASKS = ("algorithmic_to_upper,algorithmic_next_letter,translation_en_fr,linguistic_present_simple_past_simple,"
               "knowledge_country_capital")
# A random paper shape (`random:llama-7b`) reads through a character tokenizer: only one-character answers survive.
RANDOM_TASKS = "algorithmic_to_upper,algorithmic_next_letter,algorithmic_prev_letter"
PROFILES = {
    "paper": {},  # every chapter at the paper's protocol: hours on a CPU for a 7B model, minutes on a GPU
    "quick": {    # a smoke run: one task per category (two algorithmic), few contexts, one seed; minutes on a CPU
        "tasks": QUICK_TASKS, "n_dev": 10, "n_test": 10, "n_baseline": 20, "seeds": "41", "n_vectors": 10,
        "n_queries": 20, "demo_counts": "1,5,16",
    },
}
