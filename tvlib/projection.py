"""Reading a vocabulary projection by a stated rule: which top tokens lie in the task's output space, and whether a
translation vector names its language. The paper reads its lists by eye; a rule lets ours and the paper's lists be
read alike."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from tvlib.tasks import load_task, task_names

MIN_PREFIX = 4
"""A token shorter than the answer counts when it starts the answer and has at least this many letters (a sub-word
piece such as 'Fran' for 'France'); shorter pieces ('F', 'ma') would match almost any list."""

SUFFIXES = {"linguistic_present_simple_past_simple": ("ed",), "linguistic_present_simple_gerund": ("ing",)}
"""Open-ended outputs recognised by their form, not only by our word list: any word in -ed is a past form."""

LANGUAGES = {"en": ("english",), "fr": ("french", "francais", "français"), "es": ("spanish", "espanol", "español")}
"""Names of the translation tasks' languages, for the paper's observation that a translation vector names them."""


def _target(name: str) -> str | None:
    """The output language of a translation task ('translation_en_fr' -> 'fr'), else None."""
    return name.rsplit("_", 1)[1] if name.startswith("translation_") else None


@lru_cache(maxsize=None)
def output_vocabulary(name: str) -> tuple[frozenset[str], bool]:
    """The words a task answers with, and whether case matters. Letter tasks keep case (to_upper answers 'E', not
    'e'); translations pool every task with the same output language, so a French word counts for en->fr even when
    it is not one of our 40-odd pairs' answers."""
    names = [n for n in task_names() if _target(n) == _target(name)] if _target(name) else [name]
    answers = {a for n in names for e in load_task(n).examples for a in e.answers}
    letters = all(len(a) == 1 and a.isalpha() for a in answers)
    words = answers if letters else {w.lower() for a in answers for w in a.split()}
    return frozenset(words), letters


def in_output_space(name: str, token: str) -> bool:
    """The rule: the token is an answer word of the task (any answer of its output language for translations), or a
    piece of at least MIN_PREFIX letters that starts one, or has the task's form (-ed, -ing) where the output is
    open-ended."""
    words, case_sensitive = output_vocabulary(name)
    word = token.strip() if case_sensitive else token.strip().lower()
    if not word:
        return False
    if word in words or word.endswith(SUFFIXES.get(name, ())) and len(word) > 3:
        return True
    return len(word) >= MIN_PREFIX and any(w.startswith(word) for w in words)


def names_language(name: str, tokens: list[str]) -> bool:
    """Whether a translation task's list names one of its two languages (False for other tasks)."""
    if not _target(name):
        return False
    wanted = {n for code in name.split("_")[1:] for n in LANGUAGES.get(code, ())}
    return any(t.strip().lower() in wanted for t in tokens)


def output_space_share(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per list (rows of one `source` and `task`): its length, how many tokens lie in the output space, their share,
    the first of them, and whether a translation list names its language."""
    rows = []
    for (source, task), frame in tokens.groupby(["source", "task"], sort=False):
        inside = [t for t in frame["token"] if in_output_space(task, t)]
        rows.append({"source": source, "task": task, "tokens": len(frame), "in output space": len(inside),
                     "share": len(inside) / len(frame), "examples": " ".join(inside[:6]),
                     "names language": names_language(task, list(frame["token"]))})
    return pd.DataFrame(rows)
