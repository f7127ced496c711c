"""The benchmark on tiny random models: its report, its MAC count, and the paper shapes it can build without weights."""

import re

import pytest
import torch

from tvlib import bench, cli
from tvlib.errors import TvlibError
from tvlib.models import paper_shape_lm
from tvlib.tiny import save_tiny, tiny_lm

SUMMARY = re.compile(r"^speedup=\d+(\.\d+)? full_protocol_s_per_task=\d+(\.\d+)? warm_load_s=\d+(\.\d+)? "
                     r"efficiency=\d+(\.\d+)?$")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama with the character tokenizer, saved so `--model PATH` and the warm-load process find it."""
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"), layers=4)


def test_bench_command_reports_agreeing_sweeps_and_a_parsable_last_line(tiny_folder, capsys):
    """`python -m tvlib bench` end to end, on a shrunken protocol (the hidden --quick)."""
    code = cli.main(["bench", "--model", str(tiny_folder), "--tasks", "algorithmic_to_upper", "--quick",
                     "--dtype", "float32"])  # explicit: 'auto' means bfloat16 on a CPU with native bfloat16
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert SUMMARY.match(out[-1]), out[-1]
    report = dict(line.split(": ", 1) for line in out[:-1])
    assert report["sweep_agree"] == "True"
    assert int(report["sweep_rows"]) == 4 * 4  # 4 dev contexts x 4 layers, both ways
    assert report["dtype"] == "float32" and "float32_differing" not in report
    assert int(report["batch_prompts"]) == 8 and 0 <= int(report["batch_flips"]) <= 8  # alone against batched
    assert "dev sweep" in report["profile algorithmic_to_upper (s)"]
    efficiency = float(re.search(r"efficiency=(\S+)", out[-1]).group(1))
    assert 0 < efficiency < 10 and float(report["warm_load_s"]) > 0


def test_a_reduced_dtype_is_checked_against_float32(tiny_folder, monkeypatch):
    """bfloat16 reruns the first task in float32 and counts the predictions that moved."""
    monkeypatch.setattr(bench, "warm_load_seconds", lambda *args: 1.0)  # the warm load is tested above
    report = bench.run(str(tiny_folder), ["algorithmic_to_upper"], dtype="bfloat16", n_dev=2, n_test=2, n_baseline=2)
    assert report["dtype"] == "bfloat16"
    assert report["float32_rows"] == 2 + 2 + 2 * 4 + 2 * 4  # baseline, ICL, dev and test sweeps over 4 layers
    assert 0 <= report["float32_differing"] <= report["float32_rows"]


def test_macs_are_counted_from_the_shapes_that_run():
    """Block weights x tokens, 2 x tokens x keys x width for attention, one unembedded row per prompt."""
    lm = tiny_lm("llama")
    ids = torch.randint(4, 50, (3, 7))
    with bench.count_macs(lm) as counter, torch.no_grad():
        lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)
    block_params = sum(p.numel() for p in lm.blocks.parameters())
    assert counter.blocks == 21 * block_params
    assert counter.attention == lm.n_layers * 2 * 21 * 7 * 4 * 16  # 4 heads of 16
    assert counter.unembed == 3 * lm.unembed.weight.numel()
    assert counter.forwards == 1


def test_paper_shapes_build_scaled_down_without_weights():
    lm = paper_shape_lm("llama-7b", "cpu", "float32", scale=64)
    config = lm.model.config
    assert config.model_type == "llama"
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (64, 172, 1)
    assert config.num_attention_heads == 1 and config.vocab_size == 32000  # one head left: 32 // 64 rounds up to 1
    assert lm.n_layers == 1 and lm.unembed.weight.shape == (32000, 64)
    assert lm.model.dtype == torch.float32
    with pytest.raises(TvlibError, match="llama-7b, gpt-j-6b, pythia-6.9b"):
        paper_shape_lm("llama-70b")


def test_summary_numbers_never_use_exponents():
    assert [bench.fmt(x) for x in (4.517, 1234.6, 0.0000123, 0.0, float("nan"))] == \
        ["4.52", "1235", "0.0000123", "0", "nan"]
