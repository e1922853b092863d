//! Backend selection: `--backend` names a Burn backend, and this module turns it into a
//! device, or into an error that says what failed and which backends would work.

use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;

/// A Burn backend that haltlab can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// The ndarray CPU backend (deprecated by Burn 0.22, kept for comparison).
    Ndarray,
    /// GPU through wgpu: Vulkan, Metal, DirectX or WebGPU, whichever the machine offers.
    Wgpu,
    /// NVIDIA GPUs through CUDA (cargo feature `cuda`, off by default).
    Cuda,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::Flex,
        Backend::Ndarray,
        Backend::Wgpu,
        Backend::Cuda,
    ];

    /// Name as `--backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend's cargo feature.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// Names of the backends compiled into this binary.
pub fn compiled_backends() -> Vec<&'static str> {
    Backend::ALL
        .iter()
        .filter(|backend| backend.compiled())
        .map(|backend| backend.name())
        .collect()
}

fn alternatives(except: Backend) -> String {
    let others: Vec<&str> = compiled_backends()
        .into_iter()
        .filter(|name| *name != except.name())
        .collect();
    if others.is_empty() {
        "no other backend is compiled in".to_owned()
    } else {
        format!("use --backend {} instead", others.join(" or --backend "))
    }
}

/// Creates the device of `backend` and checks that it can run a small computation.
///
/// A backend that was not compiled in, or whose device cannot be created (for example wgpu
/// on a machine without a GPU adapter or Vulkan driver), is an error naming the backend and
/// the alternatives.
pub fn create_device(backend: Backend) -> Result<Device> {
    if !backend.compiled() {
        bail!(
            "backend `{}` is not compiled into this haltlab binary (compiled: {}); rebuild with \
             `cargo build --release --features {}` or {}",
            backend.name(),
            compiled_backends().join(", "),
            backend.name(),
            alternatives(backend)
        );
    }
    let device = construct(backend);
    probe(&device).map_err(|reason| {
        anyhow::anyhow!(
            "backend `{}` is compiled in but its device could not be used: {reason}; {}",
            backend.name(),
            alternatives(backend)
        )
    })?;
    Ok(device)
}

#[allow(deprecated, unreachable_code)]
fn construct(backend: Backend) -> Device {
    match backend {
        #[cfg(feature = "flex")]
        Backend::Flex => Device::flex(),
        #[cfg(feature = "ndarray")]
        Backend::Ndarray => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(0),
        #[allow(unreachable_patterns)]
        other => unreachable!("backend {} was checked to be compiled in", other.name()),
    }
}

/// Runs a one-element computation on `device`, turning a panic inside the backend (which is
/// how Burn 0.22 reports a missing GPU adapter) into an error message.
fn probe(device: &Device) -> std::result::Result<(), String> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let value = Tensor::<1>::ones([1], device).add_scalar(1.0);
        value.into_scalar::<f32>()
    }));
    std::panic::set_hook(previous_hook);
    match outcome {
        Ok(value) if (value - 2.0).abs() < 1e-6 => Ok(()),
        Ok(value) => Err(format!("a test computation returned {value} instead of 2")),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "the backend panicked without a message".to_owned()
    }
}
