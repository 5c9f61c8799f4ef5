//! Injecting adapters into a model, and the dry-run report of what would be injected.

use lora_core::LoraConfig;

use crate::adaptable::{Adaptable, set_biases_trainable};
use crate::error::{Result, SurgeryError};
use crate::target::{TargetMatcher, TargetSpec};

/// One module an adapter goes (or would go) on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedModule {
    /// The module name.
    pub name: String,
    /// Its rank.
    pub r: usize,
    /// Its alpha.
    pub alpha: f64,
    /// The resulting scaling factor.
    pub scaling: f64,
    /// Parameters the adapter adds: `r · (in + out)`.
    pub added_params: usize,
}

/// What an injection does (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InjectionReport {
    /// The modules that get an adapter.
    pub targeted: Vec<PlannedModule>,
    /// The adaptable modules left alone.
    pub left_out: Vec<String>,
    /// Total parameters added.
    pub added_params: usize,
}

impl std::fmt::Display for InjectionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<60} {:>4} {:>8} {:>8} {:>10}",
            "module", "r", "alpha", "scaling", "params"
        )?;
        for m in &self.targeted {
            writeln!(
                f,
                "{:<60} {:>4} {:>8} {:>8.4} {:>10}",
                m.name, m.r, m.alpha, m.scaling, m.added_params
            )?;
        }
        writeln!(
            f,
            "{} modules targeted, {} parameters added; {} linear modules left out",
            self.targeted.len(),
            self.added_params,
            self.left_out.len()
        )?;
        for name in &self.left_out {
            writeln!(f, "  left out: {name}")?;
        }
        Ok(())
    }
}

/// Resolves which modules of `model` get an adapter with `base` (r, alpha, dropout, …) and the
/// targeting rules in `spec`. Nothing is changed. When nothing matches, the error lists the
/// module names that exist.
pub fn plan<M: Adaptable + ?Sized>(
    model: &M,
    spec: &TargetSpec,
    base: &LoraConfig,
) -> Result<InjectionReport> {
    let heads = model.output_heads();
    let linears = model.linears();
    let all_linear: Vec<String> = linears
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !heads.contains(n))
        .collect();
    let matcher = TargetMatcher::new(spec, &all_linear)?;
    let mut report = InjectionReport {
        targeted: Vec::new(),
        left_out: Vec::new(),
        added_params: 0,
    };
    for (name, linear) in &linears {
        if !matcher.is_target(name) {
            report.left_out.push(name.clone());
            continue;
        }
        let (r, alpha) = matcher.rank_and_alpha(name, base.r, base.alpha);
        let config = LoraConfig { r, alpha, ..*base };
        config.validate_for_layer(linear.in_features(), linear.out_features())?;
        let added = r * (linear.in_features() + linear.out_features());
        report.added_params += added;
        report.targeted.push(PlannedModule {
            name: name.clone(),
            r,
            alpha,
            scaling: config.scaling(),
            added_params: added,
        });
    }
    if report.targeted.is_empty() {
        return Err(SurgeryError::NothingMatched {
            targets: matcher.describe(),
            available: linears.into_iter().map(|(n, _)| n).collect(),
        });
    }
    Ok(report)
}

/// Adds a fresh adapter called `adapter` to every module `spec` selects, and returns the report.
///
/// ```no_run
/// use lora_core::LoraConfig;
/// use lora_surgery::{ModulePattern, TargetSpec, inject};
///
/// # fn run<M: lora_surgery::Adaptable>(model: &mut M) -> lora_surgery::Result<()> {
/// let spec = TargetSpec {
///     target_modules: Some(ModulePattern::list(&["query", "value"])),
///     ..Default::default()
/// };
/// let report = inject(model, "default", &spec, &LoraConfig::new(8))?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub fn inject<M: Adaptable + ?Sized>(
    model: &mut M,
    adapter: &str,
    spec: &TargetSpec,
    base: &LoraConfig,
) -> Result<InjectionReport> {
    let report = plan(model, spec, base)?;
    for (name, linear) in model.linears_mut() {
        if let Some(planned) = report.targeted.iter().find(|p| p.name == name) {
            let config = LoraConfig {
                r: planned.r,
                alpha: planned.alpha,
                ..*base
            };
            linear.add_adapter(adapter, config)?;
        }
    }
    let targeted: Vec<String> = report.targeted.iter().map(|p| p.name.clone()).collect();
    set_biases_trainable(model, spec.bias, &targeted);
    tracing::info!(
        adapter,
        modules = report.targeted.len(),
        params = report.added_params,
        "injected"
    );
    Ok(report)
}
