//! The training runs an experiment makes, in order: each table's methods (or ranks) on its
//! task, once per seed.

use lora_assets::BuiltinTask;
use lora_core::LoraConfig;
use lora_surgery::{ModulePattern, TargetSpec};
use lora_train::Method;

use super::config::{ExperimentConfig, TableKind, TaskBudget};

/// One training run of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// The task.
    pub task: BuiltinTask,
    /// The row label (`LoRA r=8 (q,v)`, `ablation r=4 alpha=4`).
    pub label: String,
    /// The method.
    pub method: Method,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Data and epochs.
    pub budget: TaskBudget,
}

/// Every run of `config`'s tables, in report order, without duplicates.
pub fn plan(config: &ExperimentConfig) -> Vec<PlannedRun> {
    let wants = |t: TableKind| config.tables.contains(&t);
    let mut plan: Vec<PlannedRun> = Vec::new();
    let comparison = |plan: &mut Vec<PlannedRun>, task: BuiltinTask, budget: &TaskBudget| {
        for &seed in &config.seeds {
            for m in &config.methods {
                plan.push(PlannedRun {
                    task,
                    label: m.label.clone(),
                    method: m.method.clone(),
                    lr: m.lr,
                    seed,
                    budget: budget.clone(),
                });
            }
        }
    };
    if wants(TableKind::Comparison) {
        comparison(&mut plan, BuiltinTask::MovieSentiment, &config.movie);
    }
    if wants(TableKind::Ablation) {
        let a = &config.ablation;
        for &seed in &config.seeds {
            for &r in &a.ranks {
                let alphas = std::iter::once(r as f64).chain(a.fixed_alphas.iter().copied());
                for alpha in alphas {
                    let label = format!("ablation r={r} alpha={alpha}");
                    if plan.iter().any(|p| p.label == label && p.seed == seed) {
                        continue;
                    }
                    plan.push(PlannedRun {
                        task: BuiltinTask::MovieSentiment,
                        label,
                        method: Method::Lora {
                            lora: LoraConfig::new(r).with_alpha(alpha),
                            targets: TargetSpec {
                                target_modules: Some(ModulePattern::list(&a.targets)),
                                ..Default::default()
                            },
                        },
                        lr: a.lr,
                        seed,
                        budget: a.budget.clone(),
                    });
                }
            }
        }
    }
    if wants(TableKind::Bbc) {
        comparison(&mut plan, BuiltinTask::BbcNews, &config.bbc);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::config::Preset;

    #[test]
    fn the_quick_plan_has_every_table_s_runs_once() {
        let config = ExperimentConfig::preset(Preset::Quick);
        let runs = plan(&config);
        let methods = config.methods.len();
        let ranks = config.ablation.ranks.len() * (1 + config.ablation.fixed_alphas.len());
        assert_eq!(runs.len(), config.seeds.len() * (2 * methods + ranks));
        let mut keys: Vec<(String, String, u64)> = runs
            .iter()
            .map(|r| (r.task.name().to_string(), r.label.clone(), r.seed))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), runs.len(), "no run twice");
    }
}
