"""How much rounding SmolLM2-135M's frozen linear weights moves its logits, measured in PyTorch.

The reference for `tests/tests/base_dtype.rs`'s "q8 logits" number: transformers + PEFT load the SmolLM2 GGUF
(dequantised to float32) with the fixture's PEFT adapter, every frozen linear weight of the decoder layers is
rounded in place (the embeddings / tied head, norms and the adapter stay float32, as with `--base-dtype`), and
the logits are compared with the unrounded model's: relative L2 over all positions and at the last position, for
the fixture prompt (5 tokens) and three longer ones.

Roundings: bf16; q8 = blocks of 32 inputs sharing one scale max|w|/127, round to nearest (GGUF Q8_0, what
`--base-dtype q8` stores; the fixture prompt's last position must give the 4.0e-2 that lora measures); the
same with blocks of 16 and 8; and q8 with the scale searched per block for the least squared error.
With --by-group, Q8_0 rounding is applied to one projection type (q_proj, …, down_proj) or one layer at a
time instead: where the error comes from.

Usage (pinned environment of xtask/interop/requirements.txt):
    python xtask/bench/q8_rounding.py --model SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures", "smollm2")
TEXTS = [
    "The quick brown fox jumps over the lazy dog because it wanted to see what was on the other side of the fence.",
    "Government announces new plans to cut taxes for small businesses in the north of England",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
]


def blocks(w, block, scale_search=False):
    """Symmetric 8-bit rounding of `w` ([out, in]) in blocks of `block` inputs."""
    out, inp = w.shape
    b = w.reshape(out, inp // block, block)
    s0 = b.abs().amax(-1, keepdim=True) / 127
    s0[s0 == 0] = 1
    best, best_err = None, None
    for f in (torch.linspace(0.85, 1.0, 16) if scale_search else [1.0]):
        r = (b / (s0 * f)).round().clamp(-127, 127) * (s0 * f)
        e = ((r - b) ** 2).sum(-1, keepdim=True)
        if best is None:
            best, best_err = r, e
        else:
            best, best_err = torch.where(e < best_err, r, best), torch.minimum(e, best_err)
    return best.reshape(out, inp)


ROUNDINGS = {
    "bf16": lambda w: w.to(torch.bfloat16).float(),
    "q8 (blocks of 32, Q8_0)": lambda w: blocks(w, 32),
    "q8, blocks of 16": lambda w: blocks(w, 16),
    "q8, blocks of 8": lambda w: blocks(w, 8),
    "q8, blocks of 32, least-squares scale": lambda w: blocks(w, 32, scale_search=True),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the SmolLM2-135M-Instruct GGUF file")
    p.add_argument("--by-group", action="store_true",
                   help="Q8_0 on one projection type or one layer at a time")
    args = p.parse_args()
    torch.set_num_threads(2)
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = PeftModel.from_pretrained(model, os.path.join(FIXTURES, "adapter")).eval()
    fixture = load_file(os.path.join(FIXTURES, "smollm2.safetensors"))
    prompts = [fixture["prompt0.input_ids"].long().reshape(1, -1)]
    prompts += [torch.tensor([tok(t)["input_ids"]]) for t in TEXTS]
    frozen = {n: p for n, p in model.named_parameters()
              if p.ndim == 2 and "lora_" not in n and "embed" not in n and "lm_head" not in n}
    original = {n: p.data.clone() for n, p in frozen.items()}

    def logits():
        with torch.no_grad():
            return [model(x).logits[0].float() for x in prompts]

    exact = logits()
    print(f"{len(frozen)} frozen linear weights rounded; prompts of {[x.shape[1] for x in prompts]} tokens")
    print("rounding | relative L2, all positions (per prompt) | relative L2, last position (per prompt)")
    if args.by_group:
        q8 = ROUNDINGS["q8 (blocks of 32, Q8_0)"]
        kinds = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        layers = sorted({int(n.split("layers.")[1].split(".")[0]) for n in frozen})
        groups = {k: [n for n in frozen if f".{k}." in n] for k in kinds}
        groups.update({f"layer {i}": [n for n in frozen if f"layers.{i}." in n]
                       for i in layers[:4] + layers[len(layers) // 2:][:1] + layers[-2:]})
        runs = {name: (members, q8) for name, members in groups.items()}
    else:
        runs = {name: (list(frozen), fn) for name, fn in ROUNDINGS.items()}
    for name, (members, fn) in runs.items():
        for n in members:
            frozen[n].data = fn(original[n])
        got = logits()
        for n, p in frozen.items():
            p.data = original[n].clone()
        rel = lambda a, b: ((a - b).norm() / b.norm()).item()
        whole = ", ".join(f"{rel(a, b):.1e}" for a, b in zip(got, exact))
        last = ", ".join(f"{rel(a[-1], b[-1]):.1e}" for a, b in zip(got, exact))
        print(f"{name} | {whole} | {last}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
