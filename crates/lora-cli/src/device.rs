//! `lora device`: open a backend's device, run one small product on it, and print what it says
//! about itself (name, compile target, memory held) as JSON.

use anyhow::{Context, Result};
use burn::tensor::Tensor;
use clap::Args;

#[derive(Args)]
pub struct DeviceArgs {
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N (default: BURN_DEVICE, else the first
    /// compiled in).
    #[arg(long)]
    device: Option<String>,
}

pub fn device(args: DeviceArgs) -> Result<()> {
    let device = lora_core::select_device(args.device.as_deref())?;
    // A device that opens but cannot compute is found here, not in the first real workload.
    let a = Tensor::<2>::ones([64, 64], &device);
    let sum: f32 = a.clone().matmul(a).sum().into_scalar();
    anyhow::ensure!(
        sum == 64.0 * 64.0 * 64.0,
        "the device computed a wrong product (sum {sum}, expected 262144)"
    );
    let info = lora_core::device_info::device_info(&device);
    let json = serde_json::json!({
        "info": info,
        "compiled_backends": lora_core::compiled_backends()
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>(),
        "check": "a 64×64 product computed correctly",
    });
    println!(
        "{}",
        serde_json::to_string(&json).context("printing the device report")?
    );
    Ok(())
}
