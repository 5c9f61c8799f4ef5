"""Loads what `lora merge` and `lora export` wrote with Hugging Face transformers and PEFT alone,
and compares their outputs with lora-burn's (`lora predict --json`).

Usage: check_transformers.py WORK_DIR MINILM_DIR. WORK_DIR holds `merged/` (a MiniLM sentiment
classifier), `exported/` (its LoRA adapter, PEFT format), `merged-lm/` (SmolLM2 with PEFT's
adapter merged), `ours_cls.json` / `ours_lm.json` (lora's predictions), and `corpus.txt` with
`ours_ppl.json` (lora eval's perplexity of the merged LM on it). Exits non-zero when a
difference exceeds its tolerance."""
import json
import math
import os
import sys

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

work, minilm = sys.argv[1], sys.argv[2]
os.chdir(work)
failures = []


def check(name, diff, tolerance):
    ok = diff <= tolerance
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |Δ| = {diff:.3g} (tolerance {tolerance:g})")
    if not ok:
        failures.append(name)


print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
cls = json.load(open("ours_cls.json"))
texts = [p["text"] for p in cls["predictions"]]
ours = torch.tensor([p["logits"] for p in cls["predictions"]])

# The merged classifier, through transformers' Auto classes alone.
tokenizer = AutoTokenizer.from_pretrained("merged")
model = AutoModelForSequenceClassification.from_pretrained("merged").eval()
with torch.no_grad():
    merged = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
if labels != cls["labels"]:
    failures.append(f"id2label {labels} != {cls['labels']}")
check("merged BertForSequenceClassification vs lora's adapter logits", (merged - ours).abs().max().item(), 1e-4)

# The exported adapter, through PEFT on the base encoder.
base = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels))
adapted = PeftModel.from_pretrained(base, "exported").eval()
base_tokenizer = AutoTokenizer.from_pretrained(minilm)
with torch.no_grad():
    logits = adapted(**base_tokenizer(texts, padding=True, return_tensors="pt")).logits
check("PeftModel with the exported adapter vs lora's adapter logits", (logits - ours).abs().max().item(), 1e-4)

# The merged Llama (from a GGUF file): its saved tokenizer and its logits.
lm = json.load(open("ours_lm.json"))["predictions"][0]
lm_tokenizer = AutoTokenizer.from_pretrained("merged-lm")
ids = lm_tokenizer(lm["text"], add_special_tokens=False, return_tensors="pt").input_ids
if ids[0].tolist() != lm["input_ids"]:
    failures.append(f"token ids {ids[0].tolist()} != {lm['input_ids']}")
lm_model = AutoModelForCausalLM.from_pretrained("merged-lm").eval()
with torch.no_grad():
    last = lm_model(ids).logits[0, -1]
check("merged LlamaForCausalLM vs lora's last-position logits", (last - torch.tensor(lm["last_logits"])).abs().max().item(), 1e-3)

# Perplexity: the same blocks as `lora eval` (documents joined by EOS, cut into 16-token
# blocks, each scored on its own), computed with transformers.
ppl = json.load(open("ours_ppl.json"))["metrics"]["perplexity"]
eos = lm_model.config.eos_token_id
eos = eos if isinstance(eos, int) else eos[0]
stream = []
for doc in open("corpus.txt").read().splitlines():
    stream += lm_tokenizer(doc, add_special_tokens=False).input_ids + [eos]
blocks = [stream[i : i + 16] for i in range(0, len(stream) - 15, 16)]
nll, count = 0.0, 0
for block in blocks:
    ids = torch.tensor([block])
    with torch.no_grad():
        logp = torch.log_softmax(lm_model(ids).logits[0, :-1].double(), -1)
    nll -= logp[torch.arange(len(block) - 1), ids[0, 1:]].sum().item()
    count += len(block) - 1
reference = math.exp(nll / count)
print(f"perplexity: lora {ppl:.6g}, transformers {reference:.6g} ({len(blocks)} blocks)")
check("lora eval perplexity vs transformers (relative)", abs(ppl - reference) / reference, 1e-4)

if failures:
    print("FAILED:", "; ".join(failures))
    sys.exit(1)
print("transformers and PEFT load lora-burn's outputs and agree with it")
