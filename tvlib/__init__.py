"""tvlib: the method of Hendel, Geva & Globerson (2023), "In-Context Learning Creates Task Vectors", in small pieces.

models (load any decoder-only LM) -> tasks (data, scoring) -> prompts (format, sampling, batches) ->
vectors (A: theta; f: patched run) -> experiments (tidy DataFrames) -> store/runs (results on disk) -> plots.
"""

__version__ = "0.2.0"
