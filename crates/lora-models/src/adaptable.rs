//! Model surgery on the built-in families: each lists its linear layers (and biases) under
//! Hugging Face's module names, so PEFT's `target_modules` work as written.

use std::path::Path;

use lora_core::LoraLinear;
use lora_surgery::{Adaptable, AdapterFiles, BiasParam, LoadedAdapter, TaskType, join_path};

use crate::decoder::DecoderForCausalLM;
use crate::decoder::DecoderLayer;
use crate::decoder::model::{block_linears_mut, layer_linears};
use crate::encoder::{Encoder, EncoderForSequenceClassification};
use crate::error::Result;
use crate::layers::norm::Norm;

/// The bias of a norm (LayerNorm's `beta`), named `{name}.bias`.
fn norm_bias(name: String, norm: &Norm) -> Option<(String, &BiasParam)> {
    norm.bias.as_ref().map(|b| (join_path(&name, "bias"), b))
}

fn norm_bias_mut(name: String, norm: &mut Norm) -> Option<(String, &mut BiasParam)> {
    norm.bias.as_mut().map(|b| (join_path(&name, "bias"), b))
}

/// Prefixes every name of a list.
fn prefixed<T>(prefix: &str, items: Vec<(String, T)>) -> Vec<(String, T)> {
    items
        .into_iter()
        .map(|(name, item)| (join_path(prefix, &name), item))
        .collect()
}

impl Adaptable for Encoder {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        let names = self.names();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, linear) in names.layer_linears().into_iter().zip(layer.linears()) {
                out.push((format!("{}.{i}.{name}", names.layers), linear));
            }
        }
        if let (Some(pooler), Some(name)) = (&self.pooler, names.pooler) {
            out.push((name.to_string(), pooler));
        }
        out
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let names = self.names();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (name, linear) in names.layer_linears().into_iter().zip(layer.linears_mut()) {
                out.push((format!("{}.{i}.{name}", names.layers), linear));
            }
        }
        if let (Some(pooler), Some(name)) = (&mut self.pooler, names.pooler) {
            out.push((name.to_string(), pooler));
        }
        out
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        let names = self.names();
        let mut out: Vec<(String, &BiasParam)> = Vec::new();
        out.extend(norm_bias(
            names.embeddings_norm.to_string(),
            &self.embeddings.norm,
        ));
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("{}.{i}", names.layers);
            for (name, linear) in names.layer_linears().into_iter().zip(layer.linears()) {
                out.extend(
                    linear
                        .bias
                        .as_ref()
                        .map(|b| (format!("{p}.{name}.bias"), b)),
                );
            }
            out.extend(norm_bias(
                format!("{p}.{}", names.attention_norm),
                &layer.attention_norm,
            ));
            out.extend(norm_bias(
                format!("{p}.{}", names.output_norm),
                &layer.output_norm,
            ));
        }
        if let (Some(pooler), Some(name)) = (&self.pooler, names.pooler) {
            out.extend(pooler.bias.as_ref().map(|b| (format!("{name}.bias"), b)));
        }
        out
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        let names = self.names();
        let mut out: Vec<(String, &mut BiasParam)> = Vec::new();
        let Encoder {
            embeddings,
            layers,
            pooler,
            ..
        } = self;
        out.extend(norm_bias_mut(
            names.embeddings_norm.to_string(),
            &mut embeddings.norm,
        ));
        for (i, layer) in layers.iter_mut().enumerate() {
            let p = format!("{}.{i}", names.layers);
            let crate::encoder::EncoderLayer {
                query,
                key,
                value,
                attention_output,
                attention_norm,
                intermediate,
                output,
                output_norm,
                ..
            } = layer;
            let linears = [query, key, value, attention_output, intermediate, output];
            for (name, linear) in names.layer_linears().into_iter().zip(linears) {
                out.extend(
                    linear
                        .bias
                        .as_mut()
                        .map(|b| (format!("{p}.{name}.bias"), b)),
                );
            }
            out.extend(norm_bias_mut(
                format!("{p}.{}", names.attention_norm),
                attention_norm,
            ));
            out.extend(norm_bias_mut(
                format!("{p}.{}", names.output_norm),
                output_norm,
            ));
        }
        if let (Some(pooler), Some(name)) = (pooler, names.pooler) {
            out.extend(pooler.bias.as_mut().map(|b| (format!("{name}.bias"), b)));
        }
        out
    }
}

impl Adaptable for EncoderForSequenceClassification {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        let names = self.encoder.names();
        let mut out = prefixed(names.base, self.encoder.linears());
        if let (Some(dense), Some(name)) = (&self.head_dense, names.head_dense) {
            out.push((name.to_string(), dense));
        }
        out.push((names.head_out.to_string(), &self.classifier));
        out
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let names = self.encoder.names();
        let mut out = prefixed(names.base, self.encoder.linears_mut());
        if let (Some(dense), Some(name)) = (&mut self.head_dense, names.head_dense) {
            out.push((name.to_string(), dense));
        }
        out.push((names.head_out.to_string(), &mut self.classifier));
        out
    }

    fn output_heads(&self) -> Vec<String> {
        let names = self.encoder.names();
        names
            .head_dense
            .into_iter()
            .chain(std::iter::once(names.head_out))
            .map(str::to_string)
            .collect()
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        let names = self.encoder.names();
        let mut out = prefixed(names.base, self.encoder.biases());
        if let (Some(dense), Some(name)) = (&self.head_dense, names.head_dense) {
            out.extend(dense.bias.as_ref().map(|b| (format!("{name}.bias"), b)));
        }
        out.extend(
            self.classifier
                .bias
                .as_ref()
                .map(|b| (format!("{}.bias", names.head_out), b)),
        );
        out
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        let names = self.encoder.names();
        let mut out = prefixed(names.base, self.encoder.biases_mut());
        if let (Some(dense), Some(name)) = (&mut self.head_dense, names.head_dense) {
            out.extend(dense.bias.as_mut().map(|b| (format!("{name}.bias"), b)));
        }
        out.extend(
            self.classifier
                .bias
                .as_mut()
                .map(|b| (format!("{}.bias", names.head_out), b)),
        );
        out
    }
}

impl Adaptable for DecoderForCausalLM {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        let names = self.names();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, linear) in layer_linears(names, layer) {
                out.push((format!("{}.{i}.{name}", names.layers), linear));
            }
        }
        if let Some(head) = &self.lm_head {
            out.push((names.lm_head.to_string(), head));
        }
        out
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let names = self.names();
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let DecoderLayer { self_attn, mlp, .. } = layer;
            for (name, linear) in block_linears_mut(names, self_attn, mlp) {
                out.push((format!("{}.{i}.{name}", names.layers), linear));
            }
        }
        if let Some(head) = &mut self.lm_head {
            out.push((names.lm_head.to_string(), head));
        }
        out
    }

    fn output_heads(&self) -> Vec<String> {
        vec![self.names().lm_head.to_string()]
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        let names = self.names();
        let mut out: Vec<(String, &BiasParam)> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("{}.{i}", names.layers);
            for (name, linear) in layer_linears(names, layer) {
                out.extend(
                    linear
                        .bias
                        .as_ref()
                        .map(|b| (format!("{p}.{name}.bias"), b)),
                );
            }
            out.extend(norm_bias(
                format!("{p}.{}", names.input_norm),
                &layer.input_norm,
            ));
            out.extend(norm_bias(
                format!("{p}.{}", names.pre_mlp_norm),
                &layer.pre_mlp_norm,
            ));
        }
        out.extend(norm_bias(names.final_norm.to_string(), &self.norm));
        out
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        let names = self.names();
        let mut out: Vec<(String, &mut BiasParam)> = Vec::new();
        let DecoderForCausalLM { layers, norm, .. } = self;
        for (i, layer) in layers.iter_mut().enumerate() {
            let p = format!("{}.{i}", names.layers);
            let DecoderLayer {
                self_attn,
                mlp,
                input_norm,
                pre_mlp_norm,
                ..
            } = layer;
            for (name, linear) in block_linears_mut(names, self_attn, mlp) {
                out.extend(
                    linear
                        .bias
                        .as_mut()
                        .map(|b| (format!("{p}.{name}.bias"), b)),
                );
            }
            out.extend(norm_bias_mut(
                format!("{p}.{}", names.input_norm),
                input_norm,
            ));
            out.extend(norm_bias_mut(
                format!("{p}.{}", names.pre_mlp_norm),
                pre_mlp_norm,
            ));
        }
        out.extend(norm_bias_mut(names.final_norm.to_string(), norm));
        out
    }

    fn fan_in_fan_out(&self) -> bool {
        self.config().family.conv1d()
    }
}

/// Applies a `SEQ_CLS` adapter to a bare encoder (such as MiniLM's `BertModel`): the adapter's
/// saved head (`modules_to_save`: the family's `classifier`, and RoBERTa's `classifier.dense` /
/// DistilBERT's `pre_classifier` where present) supplies the classification head and the number
/// of labels. A bare encoder has no head of its own, so the adapter's head is also the base head
/// (what the model uses with adapters disabled).
pub fn load_seq_cls_adapter(
    encoder: Encoder,
    dir: &Path,
    name: &str,
) -> Result<(EncoderForSequenceClassification, LoadedAdapter)> {
    let files = AdapterFiles::read(dir)?;
    if let Some(task) = files.config.task_type.filter(|t| *t != TaskType::SeqCls) {
        return Err(files
            .mismatch(format!(
                "it is a {task} adapter; a bare encoder takes a SEQ_CLS adapter{}",
                files.base_model_hint()
            ))
            .into());
    }
    let names = encoder.names();
    let device = encoder.embeddings.word_embeddings.weight.device();
    let mut head = Vec::new();
    for module in names
        .head_dense
        .into_iter()
        .chain(std::iter::once(names.head_out))
    {
        let (Some(weight), Some(bias)) = (
            files.tensors.get(&format!("{module}.weight")),
            files.tensors.get(&format!("{module}.bias")),
        ) else {
            return Err(files
                .mismatch(format!(
                    "a SEQ_CLS adapter for a bare encoder must save the classification head \
                     ('{module}.weight' and '.bias'; modules_to_save: [\"classifier\"])"
                ))
                .into());
        };
        let [out, inp] = weight.shape[..] else {
            return Err(files
                .mismatch(format!(
                    "{module}.weight has shape {:?}, expected [out, in]",
                    weight.shape
                ))
                .into());
        };
        head.push((
            weight
                .clone()
                .into_tensor::<2>(&format!("{module}.weight"), [out, inp], &device)?,
            bias.clone()
                .into_tensor::<1>(&format!("{module}.bias"), [out], &device)?,
        ));
    }
    let labels = head.last().map(|(w, _)| w.dims()[0]).unwrap_or(0);
    let mut model = EncoderForSequenceClassification::new(encoder, labels, Some(head), &device)
        .map_err(|e| files.mismatch(e.to_string()))?;
    let loaded = lora_surgery::apply_adapter(&mut model, files, name)?;
    Ok((model, loaded))
}
