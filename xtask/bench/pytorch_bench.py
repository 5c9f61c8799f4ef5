"""PyTorch + PEFT half of the side-by-side CPU benchmark (`cargo xtask bench --vs-pytorch`).

Runs one workload on one pre-tokenised, pre-padded batch and prints ONE JSON object on stdout
(everything else — transformers' warnings, progress — goes to stderr):

    {"workload": NAME, "engine": "pytorch", "threads": N, "unit": "ms/step"|"ms/batch"|"ms/token"|"ms",
     "value": median of the timed repeats (in unit), "tokens_per_second": float or null,
     "peak_rss_mib": ru_maxrss of this process in MiB, "cpu_seconds": user+sys CPU of the timed section,
     "wall_seconds": wall time of the timed section, "versions": {"torch", "transformers", "peft"}}

Usage:
    python pytorch_bench.py --workload NAME --model PATH --tokens FILE --threads N
                            [--steps S] [--warmup W] [--repeats R]

--tokens FILE: {"input_ids": [[..]..], "attention_mask": [[0/1..]..], "labels": [..] (classification)
or [[..]..] (causal LM, -100 ignored)}; one right-padded batch, replayed unchanged at every step.

Timing: W untimed runs (default 2), then R timed runs (default 5); `value` is the median of the timed
runs. One run is S iterations of the workload (default S=1: one optimiser step, one forward) and its
time is divided by S; for smollm2-decode one run is one decoding (S is not used; see below).
cpu_seconds / wall_seconds cover all R timed runs together (getrusage(RUSAGE_SELF) and
perf_counter deltas); peak_rss_mib is the process' ru_maxrss, model loading included.

Workloads (MiniLM: --model is a Hugging Face dir of sentence-transformers/all-MiniLM-L6-v2, loaded as
AutoModelForSequenceClassification(num_labels=2), head randomly initialised after torch.manual_seed(0)):
  minilm-lora-step         train mode (the config's dropout 0.1), PEFT LoRA r=8, lora_alpha=8,
                           lora_dropout=0.1 (PEFT/TRL's common default; --lora-dropout overrides),
                           target query,value, SEQ_CLS
                           (the classifier head is trainable, as PEFT's SEQ_CLS does via modules_to_save);
                           AdamW(lr 1e-3, weight_decay 0). One step = forward, cross-entropy,
                           backward, clip_grad_norm_(1.0), optimizer.step(), zero_grad(). ms/step.
  minilm-ft-step           the same without PEFT, every parameter trainable, AdamW lr 5e-5. ms/step.
  minilm-infer             eval + inference_mode forward of the batch, base model + head. ms/batch.
  minilm-latency-base      eval + inference_mode forward of the given (1 x 32) batch, no adapter. ms.
  minilm-latency-unmerged  the same with PEFT LoRA r=8 (alpha 8) on query,value,
                           init_lora_weights=False (random non-zero B), not merged. ms.
  minilm-latency-merged    the same adapter after merge_and_unload(). ms.
SmolLM2 (--model: a Hugging Face dir of HuggingFaceTB/SmolLM2-135M-Instruct, or its .gguf file; a GGUF
is dequantised to float32 by transformers + gguf and rebuilt as a plain LlamaForCausalLM, so PEFT treats
it like any checkpoint). Attention is transformers' default (sdpa); --attn eager switches.
  smollm2-lora-step        train mode, PEFT LoRA r=8, alpha 16, dropout 0.05 (--lora-dropout overrides),
                           target q_proj,v_proj, CAUSAL_LM; loss = model(..., labels=labels).loss (HF shifts, -100 ignored);
                           AdamW lr 1e-3, clip 1.0. ms/step.
  smollm2-prefill          eval + inference_mode forward of the batch with use_cache=True (filling the KV
                           cache) and logits at the last position only (logits_to_keep=1, as generate's
                           prefill does, and as `lora bench` does). ms.
  smollm2-decode           greedy decoding of --new-tokens (64) tokens after the prompt = the first row of
                           input_ids with its padding removed, batch 1. ms/token. --decode-method:
                           generate (default; the same method as `lora bench`): every run times
                           model.generate(max_new_tokens=min_new_tokens=1, do_sample=False) and then the
                           same with 64 (two separate calls); value = (median 64-token generate - median
                           1-token generate) / 63: the time per token that only decoding produced (prefill
                           and first token excluded), generate's per-token overhead included.
                           loop: an untimed prefill (logits_to_keep=1), then 64 single-token forwards
                           with the KV cache, feeding back the argmax; value = their mean.

tokens_per_second: training steps, minilm-infer and smollm2-prefill: real (attention_mask == 1) tokens of
the batch / (value in seconds); null for the latency workloads and smollm2-decode (as `lora bench`).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

WORKLOADS = {
    "minilm-lora-step": "ms/step",
    "minilm-ft-step": "ms/step",
    "minilm-infer": "ms/batch",
    "minilm-latency-base": "ms",
    "minilm-latency-merged": "ms",
    "minilm-latency-unmerged": "ms",
    "smollm2-lora-step": "ms/step",
    "smollm2-prefill": "ms",
    "smollm2-decode": "ms/token",
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    p.add_argument("--model", required=True, help="Hugging Face model dir, or a .gguf file (SmolLM2)")
    p.add_argument("--tokens", required=True, help="JSON file: input_ids, attention_mask, labels")
    p.add_argument("--threads", required=True, type=int)
    p.add_argument("--steps", type=int, default=1, help="iterations per timed run (default 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    p.add_argument("--new-tokens", type=int, default=64, help="smollm2-decode: tokens decoded (default 64)")
    p.add_argument("--decode-method", default="generate", choices=["generate", "loop"],
                   help="smollm2-decode: HF generate, timed as (64 tokens - 1 token) / 63 (default), "
                        "or a manual KV-cache loop")
    p.add_argument("--lora-dropout", type=float, default=None,
                   help="LoRA dropout of the training workloads (default 0.1 MiniLM, 0.05 SmolLM2)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                   help="attention implementation (default sdpa, transformers' default)")
    a = p.parse_args()
    if a.threads < 1 or a.steps < 1 or a.warmup < 0 or a.repeats < 1 or a.new_tokens < 1:
        p.error("--threads, --steps, --repeats, --new-tokens must be >= 1 and --warmup >= 0")
    return a


args = parse_args()
# Before torch is imported, so that OpenMP / MKL size their pools to N.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Only the final JSON goes to stdout: anything a library prints goes to stderr.
REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr

import torch  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM)


def log(msg):
    print(f"pytorch_bench: {msg}", file=sys.stderr, flush=True)


def load_batch(path, causal):
    with open(path) as f:
        d = json.load(f)
    ids = torch.tensor(d["input_ids"], dtype=torch.long)
    mask = torch.tensor(d["attention_mask"], dtype=torch.long)
    if ids.dim() != 2 or ids.shape != mask.shape:
        raise SystemExit(f"{path}: input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} "
                         "must be the same [batch, seq] shape")
    labels = d.get("labels") or None  # inference-only files carry an empty list
    if labels is not None:
        labels = torch.tensor(labels, dtype=torch.long)
        want = ids.shape if causal else ids.shape[:1]
        if labels.shape != want:
            raise SystemExit(f"{path}: labels shape {tuple(labels.shape)}, expected {tuple(want)}")
    return ids, mask, labels


# ---------------------------------------------------------------------------------------------- models

def load_minilm(path):
    torch.manual_seed(0)  # the randomly initialised classification head
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, dtype=torch.float32, attn_implementation=args.attn)


def load_smollm2(path):
    if os.path.isfile(path):  # GGUF: transformers + gguf dequantise (Q4_1 -> f32) and un-permute Q/K.
        q = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                                 gguf_file=os.path.basename(path), dtype=torch.float32)
        d = q.config.to_dict()
        d.pop("quantization_config", None)
        d.pop("_name_or_path", None)
        cfg = LlamaConfig.from_dict(d)
        # Built on the meta device and given q's tensors (assign=True, no copy), so that peak RSS is
        # the GGUF load's, not that plus a second f32 copy of the weights.
        with torch.device("meta"):
            m = LlamaForCausalLM._from_config(cfg, attn_implementation=args.attn, dtype=torch.float32)
        missing, unexpected = m.load_state_dict(q.state_dict(), strict=False, assign=True)
        if unexpected or not set(missing) <= {"lm_head.weight"}:
            raise SystemExit(f"GGUF -> Llama state dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, buf in q.named_buffers():  # non-persistent buffers (RoPE inv_freq) are not in the state dict
            owner, _, leaf = name.rpartition(".")
            m.get_submodule(owner)._buffers[leaf] = buf
        m.tie_weights()
        if m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr():
            raise SystemExit("GGUF -> Llama: lm_head is not tied to embed_tokens")
        on_meta = [n for n, t in list(m.named_parameters()) + list(m.named_buffers()) if t.is_meta]
        if on_meta:
            raise SystemExit(f"GGUF -> Llama: tensors left on the meta device: {on_meta}")
        del q
        return m
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=args.attn)


def minilm_lora(model, init_random):
    dropout = 0.1 if args.lora_dropout is None else args.lora_dropout
    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=8, lora_dropout=dropout,
                     target_modules=["query", "value"],
                     init_lora_weights=False if init_random else True)
    torch.manual_seed(0)
    return get_peft_model(model, cfg)


# ------------------------------------------------------------------------------------------- workloads
# Each builder returns (iteration: () -> None, unit_tokens), where unit_tokens is the number of real
# tokens one iteration processes (for tokens_per_second), or None.

def train_step_fn(model, params, lr, forward_loss):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()

    def step():
        loss = forward_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def build(workload, model_path, ids, mask, labels):
    real_tokens = int(mask.sum().item())
    if workload.startswith("minilm-"):
        model = load_minilm(model_path)
        if workload in ("minilm-lora-step", "minilm-ft-step"):
            if labels is None:
                raise SystemExit("--tokens needs \"labels\" for a training workload")
            if workload == "minilm-lora-step":
                model = minilm_lora(model, init_random=False)
                lr = 1e-3
            else:
                lr = 5e-5
            params = [p for p in model.parameters() if p.requires_grad]
            log(f"trainable parameters: {sum(p.numel() for p in params):,}")

            def forward_loss():
                logits = model(input_ids=ids, attention_mask=mask).logits
                return torch.nn.functional.cross_entropy(logits, labels)

            return train_step_fn(model, params, lr, forward_loss), real_tokens
        if workload == "minilm-latency-unmerged":
            model = minilm_lora(model, init_random=True)
        elif workload == "minilm-latency-merged":
            model = minilm_lora(model, init_random=True).merge_and_unload()
        model.eval()

        def forward():
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)

        return forward, (real_tokens if workload == "minilm-infer" else None)

    model = load_smollm2(model_path)
    if workload == "smollm2-lora-step":
        if labels is None:
            raise SystemExit("--tokens needs \"labels\" for a training workload")
        dropout = 0.05 if args.lora_dropout is None else args.lora_dropout
        cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=dropout,
                         target_modules=["q_proj", "v_proj"])
        torch.manual_seed(0)
        model = get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        log(f"trainable parameters: {sum(p.numel() for p in params):,}")

        def forward_loss():
            return model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss

        return train_step_fn(model, params, 1e-3, forward_loss), real_tokens
    model.eval()
    if workload == "smollm2-prefill":
        def forward():
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)

        return forward, real_tokens
    assert workload == "smollm2-decode"
    prompt = ids[0][mask[0].bool()].unsqueeze(0)
    log(f"decode ({args.decode_method}): prompt of {prompt.shape[1]} tokens, {args.new_tokens} new tokens")
    return prompt, model


def generate_seconds(model, prompt, n_new):
    """Wall seconds of one greedy model.generate of exactly n_new tokens."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n_new,
                             min_new_tokens=n_new, do_sample=False, pad_token_id=model.config.eos_token_id)
        dt = time.perf_counter() - t0
    assert out.shape[1] == prompt.shape[1] + n_new, out.shape
    return dt


def run_decode(model, prompt, n_new):
    """Manual loop: one greedy decode; returns the seconds spent in the n_new single-token forwards."""
    with torch.inference_mode():
        # transformers 5.x names the KV cache `cache` (`past_key_values` is its deprecated alias).
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        cache = out.cache
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(n_new):
            out = model(input_ids=nxt, cache=cache, use_cache=True)
            cache = out.cache
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - t0


def main():
    workload = args.workload
    unit = WORKLOADS[workload]
    ids, mask, labels = load_batch(args.tokens, causal=workload.startswith("smollm2-"))
    log(f"{workload}: batch {tuple(ids.shape)}, {int(mask.sum())} real tokens, threads {args.threads}, "
        f"torch {torch.__version__} (intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()})")
    built = build(workload, args.model, ids, mask, labels)

    samples = []  # per-run value, in unit
    if workload == "smollm2-decode":
        prompt, model = built
        n = args.new_tokens
        if args.decode_method == "loop":
            def run():
                return run_decode(model, prompt, n) * 1e3 / n
        else:
            n = max(n, 2)

            def run():
                return generate_seconds(model, prompt, 1) * 1e3, generate_seconds(model, prompt, n) * 1e3
        for _ in range(args.warmup):
            run()
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        runs = [run() for _ in range(args.repeats)]
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if args.decode_method == "loop":
            samples = runs
        else:
            prefill = statistics.median(r[0] for r in runs)
            log("runs (ms, generate of 1 token / of %d tokens): " % n
                + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in runs))
            # per run, so that `value` = median of these = (median n-token run - median 1-token run) / (n - 1)
            samples = [max(b - prefill, 0.0) / (n - 1) for _, b in runs]
        unit_tokens = None
    else:
        fn, unit_tokens = built
        for _ in range(args.warmup):
            for _ in range(args.steps):
                fn()
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.repeats):
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            samples.append((time.perf_counter() - t) * 1e3 / args.steps)
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

    value = statistics.median(samples)
    if unit_tokens is not None:
        tps = unit_tokens / (value / 1e3)
    else:
        tps = None
    log("runs (" + unit + "): " + ", ".join(f"{s:.3f}" for s in samples))
    result = {
        "workload": workload,
        "engine": "pytorch",
        "threads": args.threads,
        "unit": unit,
        "value": value,
        "tokens_per_second": tps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "wall_seconds": w1 - w0,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }
    REAL_STDOUT.write(json.dumps(result) + "\n")
    REAL_STDOUT.flush()


if __name__ == "__main__":
    main()
