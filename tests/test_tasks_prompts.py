"""Task loading, scoring, the single-token filter, prompt format and reproducible sampling."""

import json
import string
from collections import Counter

import pytest

from tvlib.errors import TvlibError
from tvlib.prompts import PAPER_FORMAT, PromptFormat, encode, sample_contexts, sample_queries
from tvlib.tasks import Example, Task, for_tokenizer, load_task, task_names
from tvlib.tiny import char_tokenizer


def test_the_paper_format():
    demos = (Example("a", "b"), Example("c", "d"))
    assert PAPER_FORMAT.render(demos, "e") == "example:a->b\nexample:c->d\nexample:e->"
    assert PAPER_FORMAT.render(demos, "e", space=True) == "example: a-> b\nexample: c-> d\nexample: e->"
    assert PromptFormat(demo="Q: {x} A: {y}", query="Q: {x} A:", sep=" | ").render(demos[:1], "e") == "Q: a A: b | Q: e A:"
    # a spaced task in a template with its own space before the slots: one space, not two
    assert PromptFormat(demo="Q: {x} A: {y}", query="Q: {x} A:", sep=" | ").render(
        demos[:1], "e", space=True) == "Q: a A: b | Q: e A:"
    assert PromptFormat(demo="{x} ={y}", query="{x} =").render(demos[:1], "e", space=True) == " a = b\n e ="


@pytest.mark.parametrize("name, size, pair", [
    ("algorithmic_next_letter", 25, ("a", "b")), ("algorithmic_prev_letter", 25, ("b", "a")),
    ("algorithmic_to_upper", 26, ("e", "E")), ("algorithmic_to_lower", 26, ("E", "e")),
    ("algorithmic_list_first", 900, None), ("algorithmic_list_last", 900, None)])
def test_algorithmic_tasks_are_the_papers(name, size, pair):
    """Letters a-z (next/prev: lowercase only), and comma-joined lists of 2-4 lowercase letters, 300 of each length."""
    task = load_task(name)
    assert len(task) == size
    assert [e.input for e in task.examples] == sorted({e.input for e in task.examples})
    mapping = {e.input: e.output for e in task.examples}
    if pair:
        assert mapping[pair[0]] == pair[1] and all(len(e.input) == len(e.output) == 1 for e in task.examples)
    else:
        lengths = Counter(len(x.split(",")) for x in mapping)
        assert lengths == {2: 300, 3: 300, 4: 300}
        assert all(set(x.split(",")) <= set(string.ascii_lowercase) for x in mapping)
        assert all(y == x.split(",")[0 if name.endswith("first") else -1] for x, y in mapping.items())
        assert any(len(set(x.split(","))) < len(x.split(",")) for x in mapping)  # drawn with replacement


def test_every_listed_task_loads():
    for name in task_names():
        task = load_task(name)
        assert len(task) > 0 and task.category in name


def test_scoring_exact_prefix_and_accept():
    ling = Task("linguistic_x", "linguistic", (), )
    know = Task("knowledge_x", "knowledge", ())
    ex = Example("go", "went", ("gone",))
    assert ling.score(" went", ex) and ling.score("gone", ex) and not ling.score("wen", ex) and not ling.score(" ", ex)
    cap = Example("Argentina", "Buenos Aires")
    assert know.score(" Buenos", cap) and know.score("Buenos Aires City", cap) and not know.score("Lima", cap)


class _Tokenizer:
    """Every text in `single` is one token, anything else two: enough to test the filter's rule."""

    def __init__(self, single):
        self.single = set(single)

    def encode(self, text, add_special_tokens=False):
        return [0] if text in self.single else [0, 1]


def test_mapping_tasks_are_spaced_when_that_keeps_at_least_0_7x_the_pairs():
    examples = tuple(Example(f"x{i}", f"y{i}") for i in range(10))
    task = Task("linguistic_t", "linguistic", examples)
    plain = {f"y{i}" for i in range(10)}
    seven_spaced = _Tokenizer(plain | {f" y{i}" for i in range(7)})
    kept = for_tokenizer(task, seven_spaced)
    assert kept.space and [e.output for e in kept.examples] == [f"y{i}" for i in range(7)]
    six_spaced = _Tokenizer(plain | {f" y{i}" for i in range(6)})
    assert not for_tokenizer(task, six_spaced).space and len(for_tokenizer(task, six_spaced)) == 10


def test_algorithmic_tasks_are_never_spaced_and_knowledge_keeps_every_answer():
    letters = Task("algorithmic_t", "algorithmic", (Example("a", "A"), Example("b", "B")))
    assert not for_tokenizer(letters, _Tokenizer({"A", " A", " B"})).space
    capitals = Task("knowledge_t", "knowledge", (Example("Peru", "Lima"), Example("Argentina", "Buenos Aires")))
    kept = for_tokenizer(capitals, _Tokenizer({"Lima"}))
    assert kept.examples == capitals.examples and not kept.space


def test_too_few_single_token_examples_is_a_clear_error():
    tok = char_tokenizer()  # one character = one token; " x" is two
    task = Task("t", "linguistic", (Example("a", "b"), Example("c", "dd"), Example("e", "f")))
    kept = for_tokenizer(task, tok)
    assert [e.output for e in kept.examples] == ["b", "f"] and kept.space is False
    with pytest.raises(TvlibError, match="has 2 examples .* at least 6"):
        for_tokenizer(task, tok, min_examples=6)


def test_sampling_is_reproducible_and_never_shows_the_query_among_its_demos():
    task = load_task("algorithmic_next_letter")
    a = sample_contexts(task, 30, 5, seed=41, split="dev")
    assert a == sample_contexts(task, 30, 5, seed=41, split="dev")
    assert a != sample_contexts(task, 30, 5, seed=42, split="dev")
    assert a != sample_contexts(task, 30, 5, seed=41, split="test")
    for c in a:
        assert c.query.input not in {d.input for d in c.demos}
        assert c.query.input not in {d.input for d in c.dummies} and len(c.dummies) == 2
    assert sample_queries(task, 10, 41) == sample_queries(task, 10, 41)


def test_sampling_does_not_depend_on_the_order_of_the_examples():
    task = load_task("algorithmic_to_upper")
    shuffled = Task(task.name, task.category, tuple(reversed(task.examples)))
    assert sample_contexts(task, 5, 3, 1) == sample_contexts(shuffled, 5, 3, 1)


def test_too_few_examples_for_the_demos_is_a_clear_error():
    task = Task("tiny", "linguistic", tuple(Example(str(i), str(i)) for i in range(3)))
    with pytest.raises(TvlibError, match="has 3 usable examples; 5 demos"):
        sample_contexts(task, 1, 5, 0)


def test_left_padding_and_positions():
    tok = char_tokenizer()
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    batch = encode(tok, ["ab", "abcd"])
    assert batch.input_ids[0, :2].tolist() == [tok.eos_token_id] * 2
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_a_json_task_in_our_format_and_in_the_papers(tmp_path):
    ours = tmp_path / "mine.json"
    ours.write_text(json.dumps([{"input": "b", "output": "2"}, {"input": "a", "output": "1", "accept": ["one"]}]))
    task = load_task(str(ours))
    assert [e.input for e in task.examples] == ["a", "b"] and task.examples[0].accept == ("one",)
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"x": "1", "y": "2", "": "empty"}))
    assert [(e.input, e.output) for e in load_task(str(paper)).examples] == [("x", "1"), ("y", "2")]
    with pytest.raises(TvlibError, match="does not exist"):
        load_task(str(tmp_path / "missing.json"))


def test_a_file_in_the_papers_format_loads(tmp_path):
    """The official repository's format: one object mapping input to output, with its faults (padding spaces, an
    empty entry, duplicate keys that json keeps the last of), written here so no test reads outside the checkout."""
    path = tmp_path / "antonyms.json"
    path.write_text('{"hot": "cold", " big ": " small ", "": "x", "up": "down", "up": "below"}', encoding="utf-8")
    task = load_task(str(path))
    assert [(e.input, e.output) for e in task.examples] == [("big", "small"), ("hot", "cold"), ("up", "below")]
    assert task.name == "antonyms"

def test_first_token_tells_a_bos_from_the_prompts_own_first_piece():
    from tokenizers.processors import TemplateProcessing

    from tvlib.prompts import first_token
    from tvlib.tiny import char_tokenizer

    plain = char_tokenizer()
    assert first_token(plain) == {"token": "e", "special": False}  # `example:x->` as it is
    with_bos = char_tokenizer()
    with_bos.backend_tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    assert first_token(with_bos) == {"token": "<bos>", "special": True}


def test_a_paper_format_task_file_takes_its_category_from_its_folder_or_the_option(tmp_path):
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "country_capital.json").write_text(json.dumps({"France": "Paris", "Peru": "Lima"}), encoding="utf-8")
    (tmp_path / "capitals.json").write_text(json.dumps({"France": "Paris", "Peru": "Lima"}), encoding="utf-8")
    paper_layout = load_task(str(folder / "country_capital.json"))
    assert paper_layout.category == "knowledge"  # scored by prefix, answers of several tokens kept
    assert paper_layout.score("Par", paper_layout.examples[0])
    assert load_task(str(tmp_path / "capitals.json")).category == "custom"
    assert load_task(str(tmp_path / "capitals.json"), "knowledge").category == "knowledge"
    assert load_task(str(folder / "country_capital.json"), "custom").category == "custom"
    with pytest.raises(TvlibError, match="unknown category"):
        load_task(str(tmp_path / "capitals.json"), "geography")
    with pytest.raises(TvlibError, match="only with a task file"):
        load_task("algorithmic_to_upper", "knowledge")


def test_a_misspelt_algorithmic_task_names_itself_and_lists_the_known_ones():
    with pytest.raises(TvlibError, match=r"'algorithmic_to_uper'.*algorithmic_to_upper"):
        load_task("algorithmic_to_uper")
