//! The same model trained by burn-train's `Learner`.

use lora_example_custom_model::learner_flow;

#[test]
fn learner_trains_only_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let report = learner_flow::run(0, dir.path()).unwrap();
    println!("{report:?}");
    report.check();
    assert!(
        dir.path()
            .join("adapter")
            .join("adapter_config.json")
            .is_file()
    );
}
