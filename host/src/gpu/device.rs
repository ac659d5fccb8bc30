//! How much memory the card has: from NVML when an NVIDIA driver is
//! present, else from configuration, so the lease table works (and is
//! tested) on machines without a GPU.
//!
//! NVML is loaded at run time (`libnvidia-ml.so`, through nvml-wrapper), so
//! the binary neither links against nor requires the NVIDIA driver.

use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// Where the card's size came from.
pub enum Source {
    /// A live NVIDIA device (the library handle holds its whole symbol table).
    Nvml { nvml: Box<Nvml>, index: u32 },
    /// `TOLLGATE_GPU_VRAM_MB`.
    Configured,
    /// Neither: leases are tracked, but nothing is refused for memory.
    Unknown,
}

pub struct Device {
    pub name: String,
    pub total_mb: Option<u64>,
    source: Source,
}

/// The device as `/admin/gpu` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceReport {
    pub name: String,
    /// `nvml`, `configured` or `unknown`.
    pub source: String,
    pub total_mb: Option<u64>,
    /// What the driver reports in use and free now (NVML only).
    pub used_mb: Option<u64>,
    pub free_mb: Option<u64>,
}

impl Device {
    /// `configured_mb` (`TOLLGATE_GPU_VRAM_MB`) wins over NVML, so a card
    /// shared with programs outside Tollgate can be given a smaller budget.
    pub fn detect(configured_mb: Option<u64>, index: u32) -> Self {
        if let Some(total_mb) = configured_mb {
            return Device {
                name: "configured".into(),
                total_mb: Some(total_mb),
                source: Source::Configured,
            };
        }
        match Self::nvml(index) {
            Ok(device) => device,
            Err(reason) => {
                tracing::debug!("no GPU through NVML: {reason}");
                Device::unknown()
            }
        }
    }

    /// No card known: leases are tracked, nothing is refused for memory.
    pub fn unknown() -> Self {
        Device {
            name: "unknown".into(),
            total_mb: None,
            source: Source::Unknown,
        }
    }

    fn nvml(index: u32) -> Result<Self, nvml_wrapper::error::NvmlError> {
        let nvml = Nvml::init()?;
        let (name, total_mb) = {
            let device = nvml.device_by_index(index)?;
            let memory = device.memory_info()?;
            (device.name()?, memory.total >> 20)
        };
        Ok(Device {
            name,
            total_mb: Some(total_mb),
            source: Source::Nvml {
                nvml: Box::new(nvml),
                index,
            },
        })
    }

    pub fn report(&self) -> DeviceReport {
        let (source, live) = match &self.source {
            Source::Nvml { nvml, index } => {
                let live = nvml
                    .device_by_index(*index)
                    .and_then(|d| d.memory_info())
                    .ok()
                    .map(|m| (m.used >> 20, m.free >> 20));
                ("nvml", live)
            }
            Source::Configured => ("configured", None),
            Source::Unknown => ("unknown", None),
        };
        DeviceReport {
            name: self.name.clone(),
            source: source.into(),
            total_mb: self.total_mb,
            used_mb: live.map(|(used, _)| used),
            free_mb: live.map(|(_, free)| free),
        }
    }
}
