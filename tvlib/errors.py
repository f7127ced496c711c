"""One exception type for bad input, so the command line can print its message instead of a traceback."""


class TvlibError(Exception):
    """A problem the user can fix; the message says how."""


class TooFewExamples(TvlibError):
    """A task keeps too few single-token examples for this tokenizer (experiments over many tasks may skip it)."""
