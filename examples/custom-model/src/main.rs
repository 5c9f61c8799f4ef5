//! Runs both flows of the example once and prints what they measured:
//! `cargo run -p lora-example-custom-model` (or, in the workspace's one feature set,
//! `cargo test --workspace --features flex,ndarray,wgpu --test peft_flow --test learner`).

use lora_example_custom_model::{Error, learner_flow, peft_flow};

fn main() -> Result<(), Error> {
    let dir =
        std::env::temp_dir().join(format!("lora-example-custom-model-{}", std::process::id()));
    let seed = 0;

    let peft = peft_flow::run(seed, &dir.join("adapter"))?;
    println!("PEFT flow (PeftModel + Adam, {} steps):", peft_flow::STEPS);
    println!(
        "  base (pre-trained on 2 of 3 species): test accuracy {:.3}",
        peft.base_accuracy
    );
    println!(
        "  trainable parameters: {} of {}",
        peft.trainable_params, peft.total_params
    );
    println!(
        "  training loss {:.4} -> {:.4}, test accuracy {:.3}",
        peft.loss_before, peft.loss_after, peft.accuracy
    );
    println!(
        "  max |Δlogits|: reloaded adapter {:e}, merged {:e}",
        peft.reload_max_diff, peft.merge_max_diff
    );
    peft.check();

    let learner = learner_flow::run(seed, &dir.join("learner"))?;
    println!(
        "burn-train Learner ({} epochs, batch {}):",
        learner_flow::EPOCHS,
        learner_flow::BATCH_SIZE
    );
    println!(
        "  held-out loss {:.4} -> {:.4}, accuracy {:.3} -> {:.3}",
        learner.loss_before, learner.loss_after, learner.accuracy_before, learner.accuracy_after
    );
    println!("  valid loss per epoch: {:.3?}", learner.valid_loss);
    println!(
        "  valid accuracy per epoch (%): {:.1?}",
        learner.valid_accuracy
    );
    println!("  changed: {:?}", learner.changed);
    println!("  unchanged: {:?}", learner.unchanged);
    println!("  last checkpoint: {}", learner.last_checkpoint.display());
    learner.check();

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
