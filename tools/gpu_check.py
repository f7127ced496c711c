"""One prepared GPU check: tvlib on a randomly initialised LLaMA-7B-shaped model in bfloat16 (no download).

Run on a CUDA machine from the repository root: `python tools/gpu_check.py [OUT_DIR]`. It checks the invariants of A
and f in bfloat16 on the GPU, times the paper's full protocol (50 dev / 50 test / 100 baseline, 5 demos, all 32
layers swept) on the letter and case tasks, estimates the achieved matrix rate from the tokens processed, and loads a
saved model through `device="auto"` (accelerate's device_map). Random weights: accuracies mean nothing here, speed
and correctness of the plumbing do.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvlib.experiments import Protocol, evaluate_task, summarize  # noqa: E402
from tvlib.models import load_model, wrap  # noqa: E402
from tvlib.prompts import encode  # noqa: E402
from tvlib.tasks import load_task  # noqa: E402
from tvlib.tiny import char_tokenizer, save_tiny  # noqa: E402
from tvlib.vectors import last_logits, last_token_states  # noqa: E402

DRY = "--dry" in sys.argv  # a tiny CPU stand-in, to test this script before spending device time
DEVICE = "cpu" if DRY else "cuda"
# The character tokenizer makes only one-letter outputs single tokens: the list tasks have none, so they are left out.
TASKS = [f"algorithmic_{k}" for k in ("next_letter", "prev_letter", "to_lower", "to_upper")]


def llama_7b(tokenizer):
    """LLaMA 7B's shape (32 blocks, width 4096, MLP 11008, 32 heads, vocab 32000), random, bf16, on the GPU."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4) if DRY else \
        dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    config = LlamaConfig(vocab_size=32000, num_key_value_heads=shape["num_attention_heads"],
                         max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0, **shape)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return wrap(model, tokenizer, "random-llama-7b-shape")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def count_tokens(lm, fn):
    """Run fn while counting the tokens that enter the model (for a FLOP estimate: 2 * params * tokens)."""
    seen = {"tokens": 0, "forwards": 0}

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        seen["tokens"] += int(mask.sum()) if mask is not None else ids.numel()
        seen["forwards"] += 1

    handle = lm.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        _sync()
        start = time.perf_counter()
        result = fn()
        _sync()
        seen["seconds"] = time.perf_counter() - start
    finally:
        handle.remove()
    return result, seen


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--dry"]
    out_dir = Path(args[0]) if args else Path(".")
    import transformers

    report: dict = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "gpu": torch.cuda.get_device_name(0) if not DRY else "none (dry run)"}
    tokenizer = char_tokenizer()
    start = time.perf_counter()
    lm = llama_7b(tokenizer)
    report["init_seconds"] = round(time.perf_counter() - start, 1)
    params = sum(p.numel() for p in lm.model.parameters())
    non_embedding = params - lm.model.get_input_embeddings().weight.numel()
    report["params"] = params

    prompts = ["example:a->A\nexample:b->B\nexample:c->", "example:tree->TREE\nexample:sun->", "example:x->"]
    states = last_token_states(lm, prompts)
    clean = last_logits(lm, prompts)
    n = lm.n_layers
    own = max(float((last_logits(lm, prompts, states[:, l], [l] * 3) - clean).abs().max()) for l in range(n))
    alone = torch.cat([last_logits(lm, [p]) for p in prompts])
    with torch.no_grad():
        hidden = lm.model(**encode(tokenizer, prompts).to(DEVICE).kwargs(), output_hidden_states=True).hidden_states
    theta_vs_hf = max(float((states[:, l] - hidden[l + 1][:, -1].float().cpu()).abs().max()) for l in range(n - 1))
    report["invariants_bf16"] = {
        "own_state_patch_max_abs_logit_change": own,
        "padded_batch_vs_alone_max_abs_logit_diff": float((clean - alone).abs().max()),
        "logit_scale_max_abs": float(clean.abs().max()),
        "theta_vs_hidden_states_max_abs_diff": theta_vs_hf,
    }

    timings = []
    for batch_size in (32,) if DRY else (32, 128):
        protocol = Protocol(batch_size=batch_size)
        frames, stats = [], {"tokens": 0, "forwards": 0, "seconds": 0.0}
        for name in TASKS:
            frame, seen = count_tokens(lm, lambda: evaluate_task(lm, load_task(name), protocol))
            frames.append(frame)
            for key in stats:
                stats[key] += seen[key]
        tflops = 2 * non_embedding * stats["tokens"] / stats["seconds"] / 1e12
        timings.append({"batch_size": batch_size, "tasks": len(TASKS), "seconds": round(stats["seconds"], 2),
                        "seconds_per_task": round(stats["seconds"] / len(TASKS), 2), "tokens": stats["tokens"],
                        "forwards": stats["forwards"], "achieved_TFLOPs": round(tflops, 1),
                        "of_790_TFLOPs_measured_peak": round(tflops / 790, 3)})
        report.setdefault("summary", summarize(__import__("pandas").concat(frames)).to_dict("records"))
    report["timings"] = timings
    if not DRY:
        report["max_memory_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del lm
    if not DRY:
        torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory() as folder:
        save_tiny("llama", folder)
        auto = load_model(folder, device="auto", dtype="bfloat16")
        frame = evaluate_task(auto, load_task("algorithmic_to_upper"), Protocol(n_dev=8, n_test=8, n_baseline=8))
        report["device_map_auto"] = {"hf_device_map": getattr(auto.model, "hf_device_map", None),
                                     "rows": len(frame), "device": str(auto.device)}

    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=1, default=str))


if __name__ == "__main__":
    main()
