"""tvlib.heads against an independent oracle (nnsight) on every tiny architecture and on the default model.

Every read and write through `tvlib.heads` (and `vectors.last_logits`) is repeated through nnsight's own tracing
of the same model, fed the same ids, mask and position ids, with the module paths written out here rather than
taken from tvlib's layout table: a wrong table entry, a wrong head slice or a hook on the wrong module shows up
as a mismatch. The rest checks the head sites' behaviour with no oracle: errors, the no-op guard, the prefix cache.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

from tvlib import heads, reuse, tiny, vectors
from tvlib.errors import TvlibError
from tvlib.heads import Edit, Site
from tvlib.prompts import encode

nnsight = pytest.importorskip("nnsight")

TEXTS = ["ab->c", "hello world->x", "q->"]  # unequal lengths: left padding in every batch
OTHER = ["xyz->z", "mean of these->m", "k->"]  # where mean-ablation takes its means
ATOL = 1e-5

# The oracle's own module paths (not tvlib.models.LAYOUTS): blocks, and the attention output projection in a block.
PATHS = {
    "llama": ("model.layers", "self_attn.o_proj"),
    "gemma3_text": ("model.layers", "self_attn.o_proj"),
    "qwen2": ("model.layers", "self_attn.o_proj"),
    "gpt_neox": ("gpt_neox.layers", "attention.dense"),
    "gptj": ("transformer.h", "attn.out_proj"),
    "gpt2": ("transformer.h", "attn.c_proj"),
}


# --------------------------------------------------------------------------- the oracle


@dataclasses.dataclass
class Traced:
    """A tvlib LM and the same model wrapped by nnsight, with the oracle's paths."""

    lm: object
    nn: object
    blocks: str
    proj: str

    def block(self, layer: int):
        return self.nn.get(f"{self.blocks}.{layer}")

    def out_proj(self, layer: int):
        return self.nn.get(f"{self.blocks}.{layer}.{self.proj}")


def traced(lm, arch: str) -> Traced:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LanguageModel's deprecation notice
        model = nnsight.LanguageModel(lm.model, tokenizer=lm.tokenizer)
    return Traced(lm, model, *PATHS[arch])


def _hidden(output):
    """A block's hidden states, whether the block returns a tensor or a tuple."""
    return output[0] if isinstance(output, tuple) else output


def _write(x: torch.Tensor, row: int, position, cols: slice, value: torch.Tensor, mode: str) -> None:
    pos = slice(None) if position is None else position
    value = value.to(x.dtype)
    x[row, pos, cols] = x[row, pos, cols] + value if mode == "add" else value


@torch.no_grad()
def oracle_logits(t: Traced, texts, edits, mode: str = "replace", position=-1) -> torch.Tensor:
    """Last-position logits with row i's edits applied, written through nnsight (layers in execution order)."""
    batch = encode(t.lm.tokenizer, list(texts))
    _, head_dim = heads.shape(t.lm)
    flat = [(row, e) for row, row_edits in enumerate(edits) for e in row_edits]
    with t.nn.trace(batch.kwargs(), use_cache=False):
        for layer in sorted({e.site.layer for _, e in flat}):
            on_heads = [(row, e) for row, e in flat if e.site.layer == layer and e.site.head is not None]
            on_block = [(row, e) for row, e in flat if e.site.layer == layer and e.site.head is None]
            if on_heads:
                proj = t.out_proj(layer)
                x = proj.input.clone()
                for row, e in on_heads:
                    _write(x, row, position, slice(e.site.head * head_dim, (e.site.head + 1) * head_dim), e.value,
                           mode)
                proj.input = x
            if on_block:
                hidden = _hidden(t.block(layer).output)
                for row, e in on_block:
                    _write(hidden, row, position, slice(None), e.value, mode)
        logits = t.nn.output.logits[:, -1].float().save()
    return logits


@torch.no_grad()
def oracle_proj_io(t: Traced, texts, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of block `layer`'s attention output projection, [batch, positions, width] each."""
    batch = encode(t.lm.tokenizer, list(texts))
    with t.nn.trace(batch.kwargs(), use_cache=False):
        proj = t.out_proj(layer)
        x = proj.input.float().save()
        y = proj.output.float().save()
    return x, y


@torch.no_grad()
def oracle_mean(t: Traced, texts, layer: int) -> torch.Tensor:
    """Every head's output averaged over each prompt's real tokens, [n, n_heads, head_dim]."""
    mask = encode(t.lm.tokenizer, list(texts)).attention_mask[..., None].float()
    x, _ = oracle_proj_io(t, texts, layer)
    return ((x * mask).sum(1) / mask.sum(1)).reshape(len(texts), *heads.shape(t.lm))


def random_thetas(lm, n: int, seed: int = 1) -> torch.Tensor:
    width = lm.model.get_input_embeddings().weight.shape[1]
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def random_head(lm, seed: int) -> torch.Tensor:
    return torch.randn(heads.shape(lm)[1], generator=torch.Generator().manual_seed(seed))


def head_mix(lm) -> list[list[Edit]]:
    """Row 0: one head edit; row 1: nothing; row 2: two heads in two layers (the last one included)."""
    last = lm.n_layers - 1
    return [[Edit(Site(1, 2), random_head(lm, 1))], [],
            [Edit(Site(0, 0), random_head(lm, 2)), Edit(Site(last, 3), random_head(lm, 3))]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: the models are tiny, and on a busy 2-core machine two threads made the
    file 20x slower (112 s against 6 s); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=tiny.ARCHITECTURES)
def tiny_traced(request) -> Traced:
    return traced(tiny.tiny_lm(request.param), request.param)


@pytest.fixture(scope="module")
def llama():
    return tiny.tiny_lm("llama")


@pytest.fixture(scope="module")
def gemma_traced() -> Traced:
    """The default offline model in float32, so the oracle can compare closely (bfloat16 would round differently)."""
    from tvlib.models import load_model

    try:
        lm = load_model("gemma-3-270m", "cpu", "float32")
    except (TvlibError, ImportError, OSError) as err:
        pytest.skip(f"gemma-3-270m cannot load here: {err}")
    return traced(lm, "gemma3_text")


# --------------------------------------------------------------------------- 1. the oracle, every tiny architecture


def test_block_writes_match_nnsight(tiny_traced):
    """theta written into block L's output (a different L per row) is the paper's f: both tvlib paths must agree
    with nnsight's write, replace and add alike."""
    lm = tiny_traced.lm
    layers = [0, lm.n_layers - 1, 2]
    thetas = random_thetas(lm, len(TEXTS))
    edits = [[Edit(Site(layer), theta)] for layer, theta in zip(layers, thetas)]
    want = oracle_logits(tiny_traced, TEXTS, edits)
    assert not torch.allclose(want, vectors.last_logits(lm, TEXTS), atol=1e-3)  # the write matters
    torch.testing.assert_close(vectors.last_logits(lm, TEXTS, thetas, layers), want, atol=ATOL, rtol=0)
    torch.testing.assert_close(heads.patched_logits(lm, TEXTS, edits), want, atol=ATOL, rtol=0)
    added = oracle_logits(tiny_traced, TEXTS, edits, mode="add")
    torch.testing.assert_close(vectors.last_logits(lm, TEXTS, thetas, layers, alpha=1.0), added, atol=ATOL, rtol=0)
    torch.testing.assert_close(heads.patched_logits(lm, TEXTS, edits, mode="add"), added, atol=ATOL, rtol=0)


def test_head_reads_match_nnsight(tiny_traced):
    """heads.read must return each head's slice of the output projection's input: at the last token, and averaged
    over real tokens only (padding left out), which is what mean-ablation writes."""
    lm = tiny_traced.lm
    n_heads, head_dim = heads.shape(lm)
    last, mean = heads.read(lm, TEXTS), heads.read(lm, TEXTS, where="mean")
    assert last.shape == (len(TEXTS), lm.n_layers, n_heads, head_dim) and last.dtype == torch.float32
    for layer in range(lm.n_layers):
        x, _ = oracle_proj_io(tiny_traced, TEXTS, layer)
        torch.testing.assert_close(last[:, layer], x[:, -1].reshape(len(TEXTS), n_heads, head_dim), atol=ATOL, rtol=0)
        torch.testing.assert_close(mean[:, layer], oracle_mean(tiny_traced, TEXTS, layer), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_head_writes_match_nnsight(tiny_traced, mode):
    """A head edit must land in exactly that head's columns of the projection's input, per row, at any layer."""
    lm = tiny_traced.lm
    edits = head_mix(lm)
    want = oracle_logits(tiny_traced, TEXTS, edits, mode)
    got = heads.patched_logits(lm, TEXTS, edits, mode)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    plain = vectors.last_logits(lm, TEXTS)
    assert not torch.allclose(got[[0, 2]], plain[[0, 2]], atol=1e-4)


def test_mean_ablation_at_every_position_matches_nnsight(tiny_traced):
    """Mean-ablating a head at every position (the means read elsewhere by heads.read) is the usual knock-out."""
    lm = tiny_traced.lm
    layer, head = 1, 2
    means = heads.read(lm, OTHER, where="mean").mean(0)  # [n_layers, n_heads, head_dim]
    edits = [[Edit(Site(layer, head), means[layer, head])] for _ in TEXTS]
    want = oracle_logits(tiny_traced, TEXTS, edits, "replace", position=None)
    got = heads.patched_logits(lm, TEXTS, edits, "mean-ablate", position=None)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    last_only = heads.patched_logits(lm, TEXTS, edits, "mean-ablate")
    assert not torch.allclose(got, last_only, atol=1e-5)  # position=None reaches the earlier tokens too


def test_projected_heads_sum_to_the_projection_output(tiny_traced):
    """heads.project is what one head adds to the residual stream: over all heads, plus the layer's bias, it must
    rebuild the projection's output (the function-vector sum relies on it)."""
    lm = tiny_traced.lm
    n_heads, head_dim = heads.shape(lm)
    module = tiny_traced.out_proj(1)._module
    assert heads.out_proj(lm, 1) is module
    for layer in (1, lm.n_layers - 1):
        x, y = oracle_proj_io(tiny_traced, TEXTS, layer)
        slices = x[:, -1].reshape(len(TEXTS), n_heads, head_dim)
        total = sum(heads.project(lm, layer, h, slices[:, h]) for h in range(n_heads))
        bias = heads.out_proj(lm, layer).bias
        total = total + (bias.detach().float() if bias is not None else 0)
        assert total.shape == y[:, -1].shape
        torch.testing.assert_close(total, y[:, -1], atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- 2. the oracle on the default model


GEMMA_TEXTS = ["example:cat->CAT\nexample:dog->", "example:a->"]
GEMMA_ATOL = 1e-4  # unpatched, the two already differ by ~3e-5 (logits 20): tvlib unembeds the last position only


def test_default_model_blocks_match_nnsight(gemma_traced):
    """The real model: Gemma returns its block output as it does, and tvlib must write it as nnsight does."""
    lm = gemma_traced.lm
    layers = [3, 9]
    thetas = random_thetas(lm, 2)
    edits = [[Edit(Site(layer), theta)] for layer, theta in zip(layers, thetas)]
    want = oracle_logits(gemma_traced, GEMMA_TEXTS, edits)
    assert not torch.allclose(want, vectors.last_logits(lm, GEMMA_TEXTS), atol=0.1)
    torch.testing.assert_close(vectors.last_logits(lm, GEMMA_TEXTS, thetas, layers), want, atol=GEMMA_ATOL, rtol=0)
    torch.testing.assert_close(heads.patched_logits(lm, GEMMA_TEXTS, edits), want, atol=GEMMA_ATOL, rtol=0)


def test_default_model_heads_match_nnsight(gemma_traced):
    """Gemma's head_dim (256) is not hidden_size / heads (640 / 4): a slice computed from d_model would be wrong."""
    lm = gemma_traced.lm
    assert heads.shape(lm) == (4, 256)
    n_heads, head_dim = heads.shape(lm)
    x, _ = oracle_proj_io(gemma_traced, GEMMA_TEXTS, 5)
    torch.testing.assert_close(heads.read(lm, GEMMA_TEXTS)[:, 5], x[:, -1].reshape(2, n_heads, head_dim),
                               atol=GEMMA_ATOL, rtol=0)
    edits = [[Edit(Site(5, 3), random_head(lm, 1))], [Edit(Site(2, 1), random_head(lm, 2))]]
    for mode in ("replace", "add"):
        torch.testing.assert_close(heads.patched_logits(lm, GEMMA_TEXTS, edits, mode),
                                   oracle_logits(gemma_traced, GEMMA_TEXTS, edits, mode), atol=GEMMA_ATOL, rtol=0)
    mean = oracle_mean(gemma_traced, GEMMA_TEXTS[:1], 5)[0, 3]
    ablate = [[Edit(Site(5, 3), mean)] for _ in GEMMA_TEXTS]
    torch.testing.assert_close(heads.patched_logits(lm, GEMMA_TEXTS, ablate, "mean-ablate", position=None),
                               oracle_logits(gemma_traced, GEMMA_TEXTS, ablate, position=None), atol=GEMMA_ATOL, rtol=0)


# --------------------------------------------------------------------------- 3. head sites without an oracle


def test_no_edits_is_the_plain_pass(llama):
    """An empty patch must be exactly the unpatched model, so a baseline row costs nothing and changes nothing."""
    assert torch.equal(heads.patched_logits(llama, TEXTS, [[], [], []]), vectors.last_logits(llama, TEXTS))


def test_a_row_mix_changes_exactly_the_edited_rows(llama):
    """Rows of one batch are independent experiments: an edit of one row must never leak into another."""
    got = heads.patched_logits(llama, TEXTS, head_mix(llama))
    plain = vectors.last_logits(llama, TEXTS)
    assert torch.equal(got[1], plain[1])
    for row in (0, 2):
        assert not torch.allclose(got[row], plain[row], atol=1e-4)
    only_first_of_row_2 = heads.patched_logits(llama, TEXTS, [[], [], head_mix(llama)[2][:1]])
    assert not torch.allclose(got[2], only_first_of_row_2[2], atol=1e-4)  # both of row 2's edits applied


@pytest.mark.parametrize("edit, mode, match", [
    (Edit(Site(4, 0), torch.zeros(16)), "replace", r"layer 4 is out of range.*blocks 0\.\.3"),
    (Edit(Site(-1), torch.zeros(64)), "replace", r"layer -1 is out of range.*blocks 0\.\.3"),
    (Edit(Site(1, 4), torch.zeros(16)), "replace", r"head 4 is out of range.*heads 0\.\.3"),
    (Edit(Site(1, -1), torch.zeros(16)), "replace", r"head -1 is out of range.*heads 0\.\.3"),
    (Edit(Site(1, 0), torch.zeros(64)), "replace", r"L1H0 needs a vector of 16, not 64"),
    (Edit(Site(1), torch.zeros(16)), "replace", r"L1 needs a vector of 64, not 16"),
    (Edit(Site(1, 0), torch.zeros(16)), "swap", r"mode must be one of replace, add, mean-ablate, not 'swap'"),
])
def test_bad_edits_say_how_to_fix_them(llama, edit, mode, match):
    """A bad site, width or mode fails before any forward pass, with the valid range in the message."""
    with pytest.raises(TvlibError, match=match):
        heads.patched_logits(llama, TEXTS, [[edit], [], []], mode)
    with pytest.raises(TvlibError, match=match):
        with heads.hooks(llama, [[edit]], mode):
            pass


def test_rows_of_edits_must_match_the_prompts(llama):
    """One list of edits per prompt: a missing row would shift every later row's edits onto the wrong prompt."""
    with pytest.raises(TvlibError, match=r"3 prompts but 2 rows of edits: give one list \(maybe empty\) per prompt"):
        heads.patched_logits(llama, TEXTS, [[], []])
    with pytest.raises(TvlibError, match="where must be 'last' or 'mean'"):
        heads.read(llama, TEXTS, where="first")


def _discarding(probe: nn.Module):
    def hook(_module, args):
        probe(args[0])  # runs, and its output goes nowhere
    return hook


def _with_probe(lm, run_it: bool):
    """A copy of `lm` whose attn_out names a Linear of the right width that is off the forward path: never called,
    or (run_it) called from a hook on the real projection that throws its result away."""
    model = tiny.tiny_lm("llama").model  # its own copy: the module fixture stays untouched
    for block in model.model.layers:
        probe = block.self_attn.probe = nn.Linear(64, 64)
        if run_it:
            block.self_attn.o_proj.register_forward_pre_hook(_discarding(probe))
    return dataclasses.replace(lm, model=model, layout=dataclasses.replace(lm.layout, attn_out="self_attn.probe"))


def test_an_edit_off_the_forward_path_is_refused(llama):
    """The silent no-op is the worst failure of a patching library: a hook on a module that never runs must raise."""
    lm = _with_probe(llama, run_it=False)
    edits = [[Edit(Site(1, 2), random_head(lm, 1))], [], []]
    with pytest.raises(TvlibError, match=r"L1H2 never ran.*LAYOUTS"):
        heads.patched_logits(lm, TEXTS, edits)


def test_an_edit_that_runs_but_changes_nothing_is_refused(llama):
    """A hooked module that runs but feeds nothing forward leaves every logit exactly as it was: also refused."""
    lm = _with_probe(llama, run_it=True)
    edits = [[Edit(Site(1, 2), random_head(lm, i))] for i in range(len(TEXTS))]
    with pytest.raises(TvlibError, match="unchanged"):
        heads.patched_logits(lm, TEXTS, edits)
    assert heads.patched_logits(lm, TEXTS, edits, verify=False).shape[0] == len(TEXTS)


def test_a_no_op_on_some_rows_is_refused(llama):
    """The same no-op on one row of three must be refused too (most real patches leave baseline rows unedited)."""
    lm = _with_probe(llama, run_it=True)
    with pytest.raises(TvlibError, match="unchanged"):
        heads.patched_logits(lm, TEXTS, [[Edit(Site(1, 2), random_head(lm, 1))], [], []])


def test_two_adds_at_one_site_both_count(llama):
    """Adding u and then v at one site must equal adding u + v (a function vector is built from such sums)."""
    u, v = random_head(llama, 1), random_head(llama, 2)
    twice = heads.patched_logits(llama, TEXTS, [[Edit(Site(1, 2), u), Edit(Site(1, 2), v)], [], []], "add")
    summed = heads.patched_logits(llama, TEXTS, [[Edit(Site(1, 2), u + v)], [], []], "add")
    torch.testing.assert_close(twice, summed, atol=ATOL, rtol=0)


def test_patch_on_block_sites_is_predict(llama):
    """heads.patch with block sites, replace, last position is the paper's f: the same answers as vectors.predict,
    also across batches."""
    texts = TEXTS + OTHER
    layers = [0, 1, 2, 3, 1, 2]
    thetas = random_thetas(llama, len(texts), seed=5)
    edits = [[Edit(Site(layer), theta)] for layer, theta in zip(layers, thetas)]
    got = heads.patch(llama, texts, edits, batch_size=4)
    want = vectors.predict(llama, texts, thetas, layers)
    assert got.ids == want.ids
    assert got.margins == pytest.approx(want.margins, abs=1e-4)
    assert got.ids != vectors.predict(llama, texts).ids  # the thetas move some answer


# --------------------------------------------------------------------------- 4. through the prefix cache


def cached_logits(lm, texts, edits, mode: str) -> torch.Tensor:
    """Each prompt's last token run as a continuation of its cached prefix, with heads.hooks around each pass."""
    ids = reuse.token_ids(lm, texts)
    prefixes = [x[:-1] for x in ids]
    rows = [reuse.Row(i, (x[-1],)) for i, x in enumerate(ids)]
    out: dict[int, torch.Tensor] = {}

    def on_batch(numbers, _rows):
        def receive(numbers_, logits):
            out.update(zip(numbers_, logits))
        return heads.hooks(lm, [edits[i] for i in numbers], mode), receive

    reuse.run(lm, prefixes, rows, on_batch, prefix_batch=2, row_batch=2)
    return torch.stack([out[i] for i in range(len(texts))])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("mode", ["replace", "add"])
def test_patching_through_the_prefix_cache(arch, mode):
    """The fast path (prefix run once, last token per row) must patch exactly as the plain pass on whole prompts."""
    lm = tiny.tiny_lm(arch)
    texts = TEXTS + OTHER
    mix = head_mix(lm)
    edits = mix + [[Edit(Site(2), random_thetas(lm, 1, seed=9)[0])], mix[0] + mix[2], []]
    got = cached_logits(lm, texts, edits, mode)
    want = heads.patched_logits(lm, texts, edits, mode)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not torch.allclose(got[0], vectors.last_logits(lm, texts[:1])[0], atol=1e-4)
