"""A catalogue of bad or odd inputs, through the Python API, the command line and run-book's parameters: each gets
a TvlibError whose message names the problem and the fix (exit status 2 and no traceback on the command line), or,
where the input is legitimate, the right behaviour."""

import errno
import json
import os

import pandas as pd
import pytest
import torch

from tvlib import cli, runbook, store
from tvlib.errors import TooFewExamples, TvlibError
from tvlib.experiments import Protocol
from tvlib.models import load_model, resolve_dtype
from tvlib.prompts import sample_contexts
from tvlib.runs import Runner
from tvlib.tasks import for_tokenizer, load_task
from tvlib.tiny import char_tokenizer, save_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", layers=2)


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the command line; it must exit 2 with one `error:` message and no traceback (after the `tvlib:` lines
    that say what ran, such as the model load). Returns the message."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    said, message = err.split("error: ", 1) if "error: " in err else (err, "")
    assert message and all(line.startswith("tvlib: ") for line in said.splitlines()), err
    assert "Traceback" not in err and "error: " not in message, err
    return "error: " + message


def _task_file(tmp_path, content, name="mine.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- models


def test_unknown_model_names_the_aliases(capsys):
    assert "gemma-3-270m" in _cli_error(capsys, ["evaluate", "--model", "no-such/model", "--task", "algorithmic_to_upper"])


def test_a_misspelt_alias_is_an_unknown_model():
    with pytest.raises(TvlibError, match="was not found offline.*alias"):
        load_model("gemma-3-27m")


def test_a_model_folder_without_weights(tiny, tmp_path):
    (tmp_path / "config.json").write_text((tiny / "config.json").read_text())
    with pytest.raises(TvlibError, match="was not found offline|weights"):
        load_model(str(tmp_path), "cpu", "float32")


def test_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(TvlibError, match="holds no config.json or .gguf"):
        load_model(str(tmp_path), "cpu", "float32")


def test_an_encoder_decoder_model_is_refused(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(d_model=32, num_layers=1, num_heads=2, d_ff=64, d_kv=16,
                                        vocab_size=100)).save_pretrained(tmp_path)
    with pytest.raises(TvlibError, match="not a decoder-only causal LM"):
        load_model(str(tmp_path), "cpu", "float32")


def test_an_encoder_model_says_it_may_be_one(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100)).save_pretrained(tmp_path)
    with pytest.raises(TvlibError, match="encoder.*LAYOUTS"):
        load_model(str(tmp_path), "cpu", "float32")


def test_an_architecture_no_table_row_matches():
    from types import SimpleNamespace

    from tvlib.models import layout_of

    class Mystery(torch.nn.Module):  # no row in the table, and no stack of blocks to guess from
        config = SimpleNamespace(model_type="mystery")

        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(2, 2)

    with pytest.raises(TvlibError, match="cannot find decoder blocks in Mystery.*LAYOUTS"):
        layout_of(Mystery())


@pytest.mark.parametrize("layer", [-1, 2])
def test_a_layer_out_of_range_names_the_blocks(tiny, layer):
    lm = load_model(str(tiny), "cpu", "float32")
    with pytest.raises(TvlibError, match=r"out of range.*blocks 0\.\.1"):
        lm.check_layer(layer)


def test_float16_on_the_cpu_is_refused_with_the_fix():
    with pytest.raises(TvlibError, match="float16 on the CPU.*float32"):
        resolve_dtype("float16", "cpu")


def test_an_unknown_dtype(capsys, tiny):
    assert "float32, bfloat16" in _cli_error(capsys, ["evaluate", "--model", str(tiny), "--task",
                                                      "algorithmic_to_upper", "--dtype", "float8"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_a_gpu(capsys, tiny):
    assert "--device cpu" in _cli_error(capsys, ["evaluate", "--model", str(tiny), "--task", "algorithmic_to_upper",
                                                "--device", "cuda"])


def test_an_unknown_device(tiny):
    with pytest.raises(TvlibError, match="unknown device 'tpu'"):
        load_model(str(tiny), "tpu", "float32")


def test_a_truncated_model_cache_is_detected(tmp_path):
    from tvlib.models import _intact
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(weights))
    assert _intact(weights)
    weights.write_bytes(weights.read_bytes()[:-100])  # a copy cut short
    assert not _intact(weights) and not _intact(tmp_path / "missing.safetensors")


# --------------------------------------------------------------------------- tasks


def test_more_demonstrations_than_examples():
    with pytest.raises(TvlibError, match="41.*fewer demos"):
        sample_contexts(load_task("algorithmic_to_upper"), 3, 40, 1)


def test_an_empty_task_file(tmp_path):
    with pytest.raises(TvlibError, match="holds no examples"):
        load_task(_task_file(tmp_path, []))


def test_malformed_json(tmp_path):
    with pytest.raises(TvlibError, match="not valid UTF-8 JSON"):
        load_task(_task_file(tmp_path, "{not json"))


def test_json_in_neither_format(tmp_path):
    with pytest.raises(TvlibError, match="expected a list of"):
        load_task(_task_file(tmp_path, ["a", "b"]))


def test_duplicate_inputs_with_different_outputs(tmp_path):
    with pytest.raises(TvlibError, match="input 'a' has two outputs.*accept"):
        load_task(_task_file(tmp_path, [{"input": "a", "output": "b"}, {"input": "a", "output": "c"}]))


def test_a_duplicate_with_the_same_output_is_kept_once(tmp_path):
    task = load_task(_task_file(tmp_path, [{"input": "a", "output": "b"}, {"input": "a", "output": "b"}]))
    assert len(task.examples) == 1


@pytest.mark.parametrize("pair", [{"a->b": "c"}, {"a\nb": "c"}, {"a": "b\nc"}])
def test_the_separator_or_a_line_break_inside_an_example(tmp_path, pair):
    with pytest.raises(TvlibError, match="'->' or a line break"):
        load_task(_task_file(tmp_path, {**pair, "d": "e"}))


def test_a_task_whose_outputs_are_all_multi_token(tmp_path):
    task = load_task(_task_file(tmp_path, {f"x{i}": f"word{i}" for i in range(10)}))
    with pytest.raises(TooFewExamples, match="0 examples with single-token outputs.*add examples"):
        for_tokenizer(task, char_tokenizer(), min_examples=6)


def test_unicode_cjk_and_right_to_left_inputs_are_legitimate(tmp_path):
    task = load_task(_task_file(tmp_path, {"猫": "c", "שלום": "h", "é": "e", "Ünïcödé": "u", "数字": "n", "مرحبا": "m"}))
    assert len(task.examples) == 6
    contexts = sample_contexts(task, 2, 3, 41)
    assert {c.query.input for c in contexts} <= {e.input for e in task.examples}


def test_an_unknown_task_lists_the_known_ones(capsys, tiny):
    assert "algorithmic_to_upper" in _cli_error(capsys, ["evaluate", "--model", str(tiny), "--task", "no_such_task"])


# --------------------------------------------------------------------------- counts and seeds


def test_max_new_tokens_below_one_is_refused_before_the_model_loads(capsys):
    said = _cli_error(capsys, ["evaluate", "--task", "knowledge_country_capital", "--max-new-tokens", "0"])
    assert "--max-new-tokens must be at least 1" in said


@pytest.mark.parametrize("field,value", [("n_test", 0), ("n_dev", -1), ("n_baseline", 0), ("demos", 0),
                                         ("n_dummy", -2), ("n_test", 2.5)])
def test_counts_below_one_are_refused(field, value):
    with pytest.raises(TvlibError, match=f"{field} must be a whole number of at least 1"):
        Protocol(**{field: value})


def test_zero_test_contexts_on_the_command_line(capsys, tiny):
    assert "n_test" in _cli_error(capsys, ["evaluate", "--model", str(tiny), "--task", "algorithmic_to_upper",
                                           "--n-test", "0"])


def test_a_negative_seed_is_legitimate_and_samples_other_contexts():
    task = load_task("algorithmic_to_upper")
    assert sample_contexts(task, 5, 5, -1) == sample_contexts(task, 5, 5, -1) != sample_contexts(task, 5, 5, 41)


# --------------------------------------------------------------------------- output and stored results


def test_an_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(TvlibError, match="cannot write.*another folder"):
        store.write_csv(tmp_path / "file" / "out.csv", pd.DataFrame({"a": [1]}))


def test_a_full_disk_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    target = tmp_path / "t.csv"
    store.save(target, pd.DataFrame({"a": [1]}), {"k": 1})
    before = target.read_bytes()

    def no_space(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(TvlibError, match="No space left.*Free space"):
        store.save(target, pd.DataFrame({"a": [2]}), {"k": 1})
    assert target.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("change", [{"dtype": "bfloat16"}, {"tvlib": "9.9"}, {"model": "other"}])
def test_a_results_folder_of_other_settings_is_never_overwritten(tmp_path, change):
    config = {"model": "m", "dtype": "float32", "tvlib": "0.2.0"}
    store.save(tmp_path / "t.csv", pd.DataFrame({"a": [1]}), config)
    with pytest.raises(TvlibError, match=f"other settings \\({next(iter(change))}\\)"):
        store.cached(tmp_path / "t.csv", {**config, **change}, lambda: pd.DataFrame({"a": [2]}))


def test_an_interrupted_results_file_is_recomputed(tmp_path):
    path = tmp_path / "t.csv"
    store.save(path, pd.DataFrame({"a": [1, 2, 3]}), {"k": 1})
    path.write_bytes(path.read_bytes()[:5])  # killed mid-write (before the atomic rename existed)
    assert store.cached(path, {"k": 1}, lambda: pd.DataFrame({"a": [1, 2, 3]}))["a"].tolist() == [1, 2, 3]


def test_a_stored_only_runner_never_loads_a_model(tmp_path):
    with pytest.raises(TvlibError, match="not stored.*run-book"):
        Runner("gemma-3-270m", results_dir=tmp_path, stored_only=True).main("algorithmic_to_upper")


# --------------------------------------------------------------------------- run-book


def test_an_unknown_chapter(capsys):
    assert "01_framework" in _cli_error(capsys, ["run-book", "--chapter", "99_nothing", "--out", "unused"])


def test_a_bad_run_book_parameter(tmp_path, capsys):
    message = _cli_error(capsys, ["run-book", "--out", str(tmp_path / "run"), "-p", "n_tset", "5"])
    assert "n_tset" in message and "n_test" in message and not (tmp_path / "run").exists()


def test_an_unknown_profile():
    with pytest.raises(TvlibError, match="unknown profile"):
        runbook.configuration("m", "cpu", "float32", "slow", {})


def test_in_place_is_only_for_the_default_model(capsys, tiny):
    assert "--in-place" in _cli_error(capsys, ["run-book", "--in-place", "--model", str(tiny)])



# --------------------------------------------------------------------------- compute


@pytest.mark.parametrize("args,said", [(["--shard", "2/2"], "i between 0 and N-1"), (["--shard", "half"], "i/N"),
                                       (["-p", "n_tset", "5"], "n_tset"), (["--chapter", "99"], "no chapter matches"),
                                       (["--slurm", "gpu", "--workers", "0"], "--workers must be at least 1")])
def test_compute_refuses_bad_settings_before_anything_runs(capsys, tmp_path, args, said):
    assert said in _cli_error(capsys, ["compute", "--out", str(tmp_path / "run"), *args])
    assert not (tmp_path / "run").exists()
