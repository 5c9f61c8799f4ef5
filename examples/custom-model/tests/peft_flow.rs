//! The PEFT flow on a user-defined model, for several seeds (each seeds the split, the
//! pre-trained base and the adapter's initialisation).

use lora_example_custom_model::peft_flow;

#[test]
fn peft_flow_learns_the_unseen_species_and_round_trips() {
    for seed in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let report = peft_flow::run(seed, dir.path()).unwrap();
        println!("{report:?}");
        report.check();
        assert!(dir.path().join("adapter_config.json").is_file());
        assert!(dir.path().join("adapter_model.safetensors").is_file());
        // The base alone never predicts the species it was not pre-trained on.
        assert!(report.base_accuracy < 0.7, "{report:?}");
    }
}
