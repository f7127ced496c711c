"""Tasks: (input, output) pairs, how an answer is scored, and the per-tokenizer single-token filter."""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import dataclass, replace
from pathlib import Path

from tvlib import paths
from tvlib.errors import TooFewExamples, TvlibError

CATEGORIES = ("algorithmic", "translation", "linguistic", "knowledge")
ALGORITHMIC = ("next_letter", "prev_letter", "list_first", "list_last", "to_upper", "to_lower")


@dataclass(frozen=True)
class Example:
    """One demonstration or query: input x, expected output y, and other answers that also count."""

    input: str
    output: str
    accept: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.output, *self.accept)


@dataclass(frozen=True)
class Task:
    """A named set of examples; `space` says whether prompts put a space before x and y (tokenizer-dependent)."""

    name: str
    category: str
    examples: tuple[Example, ...]
    space: bool = False
    source: str = ""

    def __len__(self) -> int:
        return len(self.examples)

    def score(self, prediction: str, example: Example) -> bool:
        """The paper's scoring: the stripped first token equals the answer; prefix either way for knowledge tasks.
    (Translation: the paper accepts WordNet synonyms; here a pair's curated `accept` list, see data/README.md.)"""
        pred = prediction.strip()
        if not pred:
            return False
        if self.category == "knowledge":
            return any(a.startswith(pred) or pred.startswith(a) for a in example.answers)
        return pred in example.answers

    def score_whole(self, generated: str, example: Example) -> bool:
        """Whole-answer scoring for answers of several tokens: the generated answer, stripped, is the answer or one
        of its accepted alternatives exactly (every category alike: a prefix is not the answer)."""
        return generated.strip() in example.answers

    def fingerprint(self) -> str:
        """A short hash of the examples actually used, for results manifests."""
        blob = json.dumps([[e.input, e.output, list(e.accept)] for e in self.examples], ensure_ascii=False)
        return hashlib.sha256(f"{self.space}|{blob}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- algorithmic tasks, generated in code


def _algorithmic(kind: str) -> list[Example]:
    """The six algorithmic tasks as the paper's code defines them, generated deterministically."""
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    if kind == "next_letter":
        return [Example(a, b) for a, b in zip(lower[:-1], lower[1:])]
    if kind == "prev_letter":
        return [Example(b, a) for a, b in zip(lower[:-1], lower[1:])]
    if kind == "to_upper":
        return [Example(c, c.upper()) for c in lower]
    if kind == "to_lower":
        return [Example(c, c.lower()) for c in upper]
    if kind in ("list_first", "list_last"):
        return [Example(",".join(items), items[0] if kind == "list_first" else items[-1]) for items in _letter_lists()]
    raise TvlibError(f"unknown task 'algorithmic_{kind}'. Known tasks: {', '.join(task_names())}; "
                     "or pass a path to a JSON file")


def _letter_lists(per_length: int = 300) -> list[tuple[str, ...]]:
    """Lists of 2-4 lowercase letters drawn with replacement, as the paper's code draws them, equally many of each
    length (its sampler picks the length uniformly); a fixed draw, so the pool is the same everywhere."""
    rng = random.Random("tvlib:letter-lists")
    lists: list[tuple[str, ...]] = []
    for length in (2, 3, 4):
        seen: set[tuple[str, ...]] = set()
        while len(seen) < per_length:
            seen.add(tuple(rng.choice(string.ascii_lowercase) for _ in range(length)))
        lists.extend(sorted(seen))
    return lists


# --------------------------------------------------------------------------- loading


def task_list(tasks: str | list[str]) -> list[str]:
    """'all', a category name ('knowledge'), a comma-separated string, or a list: the chapters' `tasks` parameter."""
    if isinstance(tasks, str):
        if tasks == "all":
            return task_names()
        if tasks in CATEGORIES:
            return [t for t in task_names() if t.startswith(tasks + "_")]
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    return list(tasks)


def task_names() -> list[str]:
    """Every task the project ships, algorithmic ones first, each category sorted."""
    files = sorted(p.stem for p in paths.tasks_dir().glob("*.json"))
    return [f"algorithmic_{k}" for k in sorted(ALGORITHMIC)] + [n for c in CATEGORIES[1:] for n in files if n.startswith(c + "_")]


def short_name(name: str) -> str:
    """'translation_fr_en' -> 'fr_en': the task without its category, for narrow tables and plot labels."""
    head, _, rest = name.partition("_")
    return rest if head in CATEGORIES and rest else name


def _category(name: str) -> str:
    head = name.split("_", 1)[0]
    return head if head in CATEGORIES else "custom"


def _examples_from_json(data: object, path: Path) -> list[Example]:
    """Our format (a list of {input, output, accept?}) or the paper's (one object mapping input to output)."""
    if isinstance(data, dict):
        return [Example(str(k).strip(), str(v).strip()) for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(d, dict) and "input" in d and "output" in d for d in data):
        return [Example(d["input"].strip(), d["output"].strip(), tuple(d.get("accept", ()))) for d in data]
    raise TvlibError(f"{path}: expected a list of {{'input', 'output'}} objects or one object mapping input to output")


def _check_user_examples(examples: list[Example], path: Path) -> None:
    """A task file of one's own: no empty file, no input given two answers, nothing that breaks the prompt format
    (`->` or a line break inside an input or output)."""
    if not examples:
        raise TvlibError(f"task file {path} holds no examples: add {{'input': ..., 'output': ...}} objects")
    answers: dict[str, str] = {}
    for ex in examples:
        if answers.setdefault(ex.input, ex.output) != ex.output:
            raise TvlibError(f"task file {path}: input {ex.input!r} has two outputs ({answers[ex.input]!r} and "
                             f"{ex.output!r}); keep one, and list other right answers under 'accept'")
        for text in (ex.input, ex.output):
            if "->" in text or "\n" in text:
                raise TvlibError(f"task file {path}: {text!r} contains '->' or a line break, which the prompt "
                                 "format `example:{x}->{y}` uses between and around examples; remove it")


def _clean(examples: list[Example]) -> tuple[Example, ...]:
    """Sorted, first occurrence of each input kept, empty strings dropped: the faults of the upstream files."""
    seen: dict[str, Example] = {}
    for ex in examples:
        if ex.input and ex.output and ex.input not in seen:
            seen[ex.input] = ex
    return tuple(seen[k] for k in sorted(seen))


def file_category(path: Path, category: str | None = None) -> str:
    """A task file's category, which decides its scoring and filter (`Task.score`, `for_tokenizer`): the one given,
    else the parent folder's name as the paper's layout has it (`knowledge/country_capital.json`), else the file
    name's prefix (`knowledge_capitals.json`), else 'custom' (exact match, single-token answers)."""
    if category is not None:
        if category not in (*CATEGORIES, "custom"):
            raise TvlibError(f"unknown category {category!r}: use one of {', '.join((*CATEGORIES, 'custom'))}")
        return category
    parent = path.resolve().parent.name
    return parent if parent in CATEGORIES else _category(path.stem)


def load_task(name_or_path: str, category: str | None = None) -> Task:
    """A task by name (`algorithmic_to_upper`, `translation_fr_en`, ...) or a path to a JSON file (its category from
    `category` or its place, `file_category`)."""
    path = Path(name_or_path)
    if category is not None and not (name_or_path.endswith(".json") or path.exists()):
        raise TvlibError(f"a category is given only with a task file; {name_or_path!r} is a named task of its own "
                         "category")
    if name_or_path.endswith(".json") or path.exists():
        if not path.exists():
            raise TvlibError(f"task file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TvlibError(f"task file {path} is not valid UTF-8 JSON ({err}): fix the file") from None
        examples = _examples_from_json(data, path)
        _check_user_examples(examples, path)
        return Task(path.stem, file_category(path, category), _clean(examples), source=str(path))
    if name_or_path.startswith("algorithmic_"):
        return Task(name_or_path, "algorithmic", _clean(_algorithmic(name_or_path[len("algorithmic_"):])), source="code")
    file = paths.tasks_dir() / f"{name_or_path}.json"
    if not file.exists():
        raise TvlibError(f"unknown task {name_or_path!r}. Known tasks: {', '.join(task_names())}; "
                         "or pass a path to a JSON file")
    examples = _examples_from_json(json.loads(file.read_text(encoding="utf-8")), file)
    return Task(name_or_path, _category(name_or_path), _clean(examples), source=f"data/tasks/{file.name}")


# --------------------------------------------------------------------------- single-token filter


SPACE_RATIO = 0.7
"""The paper's code spaces a mapping task's prompts when that keeps at least 0.7x as many single-token pairs."""


def _single(tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def for_tokenizer(task: Task, tokenizer, min_examples: int = 0) -> Task:
    """The paper's per-tokenizer rule: knowledge keeps every pair (answers of several tokens are scored by prefix);
    algorithmic tasks keep single-token outputs, never spaced; linguistic, translation and custom tasks keep
    single-token outputs, with a leading space before x and y when that keeps at least 0.7x as many pairs
    (and any at all: a task with no single-token output either way stays unspaced)."""
    if task.category == "knowledge":
        kept, space = task.examples, False
    else:
        plain = tuple(e for e in task.examples if _single(tokenizer, e.output))
        spaced = tuple(e for e in task.examples if _single(tokenizer, " " + e.output))
        space = task.category != "algorithmic" and len(spaced) >= SPACE_RATIO * len(plain) and len(spaced) > 0
        kept = spaced if space else plain
    if len(kept) < min_examples:
        raise TooFewExamples(
            f"task {task.name} has {len(kept)} examples with single-token outputs for this tokenizer "
            f"({len(task.examples)} before filtering); it needs at least {min_examples} (demos + 1). "
            "Use fewer demos or add examples.")
    return replace(task, examples=kept, space=space)


def answer_length(tokenizer, task: Task, example: Example) -> int:
    """How many tokens the answer takes as the prompt writes it (after `->`, spaced where the task is)."""
    return len(tokenizer.encode((" " if task.space else "") + example.output, add_special_tokens=False))


def whole_answers(task: Task, tokenizer, min_examples: int = 0) -> Task:
    """The task's version for answers of several tokens: every pair kept (no single-token filter), prompts spaced
    as `for_tokenizer` spaces them, so its prompts read exactly as the one-token version's do."""
    space = for_tokenizer(task, tokenizer).space
    if len(task.examples) < min_examples:
        raise TooFewExamples(f"task {task.name} has {len(task.examples)} examples; it needs at least {min_examples} "
                             "(demos + 1). Use fewer demos or add examples.")
    return replace(task, space=space)
