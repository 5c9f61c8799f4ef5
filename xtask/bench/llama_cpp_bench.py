"""llama.cpp half of the decoding comparison (`cargo xtask bench --vs-llama-cpp`).

Greedy decoding of a GGUF file with llama-cpp-python (llama.cpp's own kernels, the file's own
quantized blocks), timed exactly as `lora bench --workload decoder-decode` and
`pytorch_bench.py --workload smollm2-decode` time it, and ONE JSON object on stdout (everything
else goes to stderr):

    {"workload": "smollm2-decode", "engine": "llama.cpp", "threads": N, "unit": "ms/token",
     "value": ms per decoded token, "tokens_per_second": null, "peak_rss_mib": ru_maxrss in MiB,
     "cpu_seconds": user+sys CPU of the timed runs, "wall_seconds": their wall time,
     "versions": {"llama_cpp_python": ...}}

Usage:
    python llama_cpp_bench.py --model FILE.gguf --tokens FILE --threads N [--warmup W] [--repeats R]
                              [--new-tokens 64]

--tokens FILE: the `lora bench --write-tokens` JSON (`decoder-prompt.json`); the prompt is the first row
of input_ids with its padding removed, batch 1.

Timing: every run resets the context and generates greedily (argmax of the last logits) 1 token and
then, separately, --new-tokens tokens after evaluating the prompt; W untimed runs (default 2), R timed
runs (default 5); value = (median n-token run - median 1-token run) / (n - 1): the time of one
single-token forward through the KV cache and the argmax, prefill and first token excluded.
"""
import argparse
import json
import resource
import statistics
import sys
import time

REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr


def log(msg):
    print(f"llama_cpp_bench: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a .gguf file")
    p.add_argument("--tokens", required=True, help="JSON file: input_ids, attention_mask")
    p.add_argument("--threads", required=True, type=int)
    p.add_argument("--warmup", type=int, default=2, help="untimed runs (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens decoded (default 64)")
    a = p.parse_args()
    if a.threads < 1 or a.repeats < 1 or a.warmup < 0 or a.new_tokens < 2:
        p.error("--threads and --repeats must be >= 1, --warmup >= 0, --new-tokens >= 2")
    return a


def main():
    args = parse_args()
    import llama_cpp
    import numpy as np

    with open(args.tokens) as f:
        batch = json.load(f)
    prompt = [t for t, m in zip(batch["input_ids"][0], batch["attention_mask"][0]) if m]
    n = args.new_tokens
    llm = llama_cpp.Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                          n_ctx=len(prompt) + n + 8, n_batch=max(len(prompt), 8), verbose=False)
    log(f"llama-cpp-python {llama_cpp.__version__}, {args.threads} thread(s), prompt of {len(prompt)} "
        f"tokens, {n} new tokens")

    vocab = llm.n_vocab()

    def generate(new):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        for i in range(new):
            # The last position's logits, as llama.cpp hands them out (no copy).
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(vocab,))
            token = int(np.argmax(logits))
            if i + 1 < new:
                llm.eval([token])
        return (time.perf_counter() - t0) * 1e3

    def run():
        return generate(1), generate(n)

    for _ in range(args.warmup):
        run()
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    runs = [run() for _ in range(args.repeats)]
    r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    first = statistics.median(r[0] for r in runs)
    log(f"runs (ms, 1 token / {n} tokens): " + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in runs))
    samples = [max(b - first, 0.0) / (n - 1) for _, b in runs]
    result = {
        "workload": "smollm2-decode",
        "engine": "llama.cpp",
        "threads": args.threads,
        "unit": "ms/token",
        "value": statistics.median(samples),
        "tokens_per_second": None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "wall_seconds": w1 - w0,
        "versions": {"llama_cpp_python": llama_cpp.__version__},
    }
    REAL_STDOUT.write(json.dumps(result) + "\n")
    REAL_STDOUT.flush()


if __name__ == "__main__":
    main()
