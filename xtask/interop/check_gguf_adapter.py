"""Reads a GGUF LoRA adapter written by `lora export --format gguf` with llama.cpp's own
`gguf` reader (GGUFReader) and compares it with the adapter llama.cpp's `convert_lora_to_gguf.py`
wrote for the same PEFT adapter: metadata, tensor names, shapes and types, and values.

Where the converter is known to be wrong the comparison says so instead of failing: it drops
PEFT's `alpha_pattern` (tiny_qwen2; we fold each layer's own scaling into its `lora_b`, so only
a per-tensor factor differs) and transposes GPT-2's Conv1D delta as a whole, (B·A)ᵀ = Aᵀ·Bᵀ,
so its lora_a is our lora_b transposed and the other way round (llama.cpp then refuses its
c_attn factors; ours have the orientation llama.cpp multiplies with, lora_a = [r, in]).

usage: check_gguf_adapter.py OURS.gguf THEIRS.gguf FIXTURE_NAME
"""
import sys

import numpy as np
from gguf import GGUFReader


def fields(reader):
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        value = field.contents()
        out[name] = value
    return out


def main():
    ours_path, theirs_path, fixture = sys.argv[1:4]
    ours, theirs = GGUFReader(ours_path), GGUFReader(theirs_path)
    fo, ft = fields(ours), fields(theirs)
    for key in ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]:
        if fo.get(key) != ft.get(key):
            sys.exit(f"{fixture}: {key} is {fo.get(key)!r}, llama.cpp's converter wrote {ft.get(key)!r}")
    to = {t.name: t for t in ours.tensors}
    tt = {t.name: t for t in theirs.tensors}
    if sorted(to) != sorted(tt):
        sys.exit(f"{fixture}: tensor names differ: {sorted(set(to) ^ set(tt))[:6]}")
    for name, a in to.items():
        b = tt[name]
        if a.tensor_type != b.tensor_type:
            sys.exit(f"{fixture} {name}: type {a.tensor_type!r} vs {b.tensor_type!r}")
        x, y = np.array(a.data, dtype=np.float64), np.array(b.data, dtype=np.float64)
        if fixture == "tiny_gpt2":
            swapped = name.replace("lora_a", "lora_b") if name.endswith("lora_a") else name.replace("lora_b", "lora_a")
            y = np.array(tt[swapped].data, dtype=np.float64).T
            if x.shape != y.shape:
                sys.exit(f"{fixture} {name}: shape {x.shape} vs the converter's {swapped} transposed {y.shape}")
        elif list(a.shape) != list(b.shape):
            sys.exit(f"{fixture} {name}: shape {list(a.shape)} vs {list(b.shape)}")
        if fixture == "tiny_qwen2" and name.endswith("lora_b"):
            ratio = float((x * y).sum() / (y * y).sum())
            diff = float(np.abs(x - ratio * y).max())
        else:
            diff = float(np.abs(x - y).max())
        if diff > 1e-5:
            sys.exit(f"{fixture} {name}: max |diff| {diff}")
    print(f"{fixture}: GGUF adapter matches llama.cpp's converter ({len(to)} tensors)")


if __name__ == "__main__":
    main()
