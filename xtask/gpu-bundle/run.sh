#!/usr/bin/env bash
# The GPU bundle's check, built by `cargo xtask gpu-bundle` (see docs/performance.md, "GPU").
#
# usage: OUT=DIR ./run.sh [--small] [--device wgpu|cuda|flex]
#
# Writes into $OUT (default: ./out beside this script) one JSON report, gpu-report.json, and
# a log, gpu-run.log:
#   1. the device: what wgpu/Vulkan opened (name, compile target, memory), and nvidia-smi's
#      view where there is one;
#   2. parity: every tiny fixture (each supported family, a PEFT adapter, transformers' and
#      PEFT's outputs) with the adapter active, disabled and merged, within 1e-3, on the device;
#   3. benchmarks on real-size models built from their config.json with seeded random weights:
#      MiniLM (LoRA and FT step, batch 32 x 64; inference; batch-1 latency of the base, LoRA
#      merged and unmerged, AdapterH and AdapterL), SmolLM2-135M and Llama-3.2-1B (LoRA and FT
#      step, batch 8 x 512; prefill; decoding at batch 1 and 8), each with its device memory.
# --small runs the same steps on the tiny fixtures' configurations (CI runs it on lavapipe).
# The benchmarks stop starting after LORA_BUNDLE_BUDGET_S seconds (default 420), so that the
# whole run stays within about 8 minutes; what was skipped says so in the report.
# Exit status: 0 when parity passed and every benchmark that ran succeeded, else 1.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mode=full
device=wgpu
while [ $# -gt 0 ]; do
  case "$1" in
    --small) mode=small ;;
    --device)
      [ $# -ge 2 ] || { echo "run.sh: --device needs a value (wgpu, cuda, flex)" >&2; exit 2; }
      device="$2"
      shift
      ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument '$1' (valid: --small, --device D, --help)" >&2
      exit 2
      ;;
  esac
  shift
done

out="${OUT:-$here/out}"
mkdir -p "$out" || exit 1
log="$out/gpu-run.log"
report="$out/gpu-report.json"
budget="${LORA_BUNDLE_BUDGET_S:-420}"
start=$(date +%s)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
: >"$log"

say() { echo "run.sh: $*" | tee -a "$log" >&2; }

# A string as a JSON string.
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}

# Vulkan's loader, carried in gl/ for a machine that has the driver but not the loader.
if [ -d "$here/gl" ] && ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  say "unpacking the carried Vulkan loaders"
  for deb in "$here"/gl/*.deb; do dpkg -x "$deb" / >>"$log" 2>&1 || say "could not unpack $deb"; done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$nvidia_icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES="$nvidia_icd"
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi

# The binary travels gzipped; it is unpacked outside the bundle, which stays as it came.
unpacked=$(mktemp -d "${TMPDIR:-/tmp}/lora-bundle.XXXXXX") || exit 1
trap 'rm -rf "$unpacked"' EXIT
lora="$unpacked/lora"
gzip -dc "$here/lora.gz" >"$lora" && chmod +x "$lora" || {
  say "could not unpack lora.gz"
  exit 1
}

say "mode $mode, device $device, report $report"

# 1. The device.
nvidia=null
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia=$(json_str "$(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used \
    --format=csv,noheader 2>&1 | head -8)")
fi
device_json=$(timeout 180 "$lora" device --device "$device" 2>>"$log")
device_rc=$?
if [ $device_rc -ne 0 ] || [ -z "$device_json" ]; then
  say "the device did not open (exit status $device_rc)"
  device_json=null
fi

# 2. Parity on every fixture.
parity_lines="$out/parity.jsonl"
parity_rc=1
if [ "$device_json" != null ]; then
  say "parity on every fixture"
  timeout "${LORA_BUNDLE_PARITY_TIMEOUT_S:-300}" "$lora" conformance "$here/fixtures" \
    --device "$device" >"$parity_lines" 2>>"$log"
  parity_rc=$?
  say "parity: $(grep -c '"passed":true' "$parity_lines" || true) of $(ls -d "$here"/fixtures/*/ | wc -l) fixtures passed (exit status $parity_rc)"
else
  : >"$parity_lines"
fi

# 3. Benchmarks.
if [ "$mode" = small ]; then
  encoder_config="$here/fixtures/tiny_bert/model/config.json"
  decoder_configs=("$here/fixtures/tiny_llama/model/config.json")
  decoder_names=(tiny-llama)
  decoder_tokens=decoder-b4.json
  warmup=1 repeats=1 new_tokens=4 per_bench=300
else
  encoder_config="$here/configs/minilm.config.json"
  decoder_configs=("$here/configs/smollm2.config.json" "$here/configs/llama-3.2-1b.config.json")
  decoder_names=(smollm2-135m llama-3.2-1b)
  decoder_tokens=decoder-b8x512.json
  warmup=1 repeats=3 new_tokens=32 per_bench=150
fi

results=()
failures=0
skipped=0
bench() { # label model-name config workload tokens
  local label=$1 model=$2 config=$3 workload=$4 tokens=$5
  local head
  head="\"label\":$(json_str "$label"),\"model\":$(json_str "$model"),\"workload\":\"$workload\",\"tokens\":\"$tokens\""
  if [ "$device_json" = null ]; then
    results+=("{$head,\"skipped\":\"the device did not open\"}")
    skipped=$((skipped + 1))
    return
  fi
  if (($(date +%s) - start > budget)); then
    results+=("{$head,\"skipped\":\"the time budget of $budget s was spent\"}")
    skipped=$((skipped + 1))
    say "$label: skipped (time budget)"
    return
  fi
  local line rc
  line=$(timeout "$per_bench" "$lora" bench --workload "$workload" --config "$config" --random-init \
    --tokens "$here/tokens/$tokens" --device "$device" --warmup "$warmup" --repeats "$repeats" \
    --new-tokens "$new_tokens" 2>>"$log")
  rc=$?
  if [ $rc -eq 0 ] && [ "${line:0:1}" = "{" ]; then
    results+=("{$head,\"result\":$line}")
    say "$label: $line"
  else
    failures=$((failures + 1))
    results+=("{$head,\"error\":\"exit status $rc (124: over $per_bench s); see gpu-run.log\"}")
    say "$label: FAILED (exit status $rc)"
  fi
}

enc=minilm
[ "$mode" = small ] && enc=tiny-bert
bench "$enc LoRA step, batch 32" "$enc" "$encoder_config" encoder-lora-step encoder-b32.json
bench "$enc FT step, batch 32" "$enc" "$encoder_config" encoder-ft-step encoder-b32.json
bench "$enc inference, batch 32" "$enc" "$encoder_config" encoder-infer encoder-b32.json
for variant in base merged unmerged adapter-h adapter-l; do
  bench "$enc latency batch 1, $variant" "$enc" "$encoder_config" "encoder-latency-$variant" encoder-b1.json
done
for i in "${!decoder_configs[@]}"; do
  name=${decoder_names[$i]}
  config=${decoder_configs[$i]}
  bench "$name LoRA step" "$name" "$config" decoder-lora-step "$decoder_tokens"
  bench "$name FT step" "$name" "$config" decoder-ft-step "$decoder_tokens"
  bench "$name prefill" "$name" "$config" decoder-prefill "$decoder_tokens"
  bench "$name decode, batch 1" "$name" "$config" decoder-decode decoder-prompt.json
  bench "$name decode, batch 8" "$name" "$config" decoder-decode decoder-prompts-b8.json
done

# The report.
parity_passed=false
[ $parity_rc -eq 0 ] && parity_passed=true
bundle=null
[ -f "$here/BUNDLE.json" ] && bundle=$(cat "$here/BUNDLE.json")
joined_results=$(IFS=,; echo "${results[*]}")
{
  printf '{"bundle":%s,"mode":"%s","device_flag":%s,"started":"%s","seconds":%d,' \
    "$bundle" "$mode" "$(json_str "$device")" "$started_at" "$(($(date +%s) - start))"
  printf '"nvidia_smi":%s,"device":%s,' "$nvidia" "$device_json"
  printf '"parity":{"passed":%s,"fixtures":[%s]},' "$parity_passed" "$(paste -sd, "$parity_lines")"
  printf '"benchmarks":[%s],"failures":%d,"skipped":%d}\n' "$joined_results" "$failures" "$skipped"
} >"$report.tmp" && mv "$report.tmp" "$report"
say "done in $(($(date +%s) - start)) s: parity $parity_passed, $failures benchmark failures, $skipped skipped"

[ "$parity_passed" = true ] && [ $failures -eq 0 ]
