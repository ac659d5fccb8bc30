//! `tollgate import litellm`: moving in from a LiteLLM proxy. [`litellm`]
//! reads its config (and a separate fallbacks JSON), [`providers`] picks the
//! Tollgate provider each deployment becomes, [`fragments`] writes the
//! files, and [`report`] says in words what was carried over, what changed
//! and what could not be. The files are checked as `tollgate check` would
//! before any is written, and written whole or not at all.

pub mod fragments;
pub mod litellm;
pub mod providers;
pub mod report;

use crate::config::{Catalog, ConfigError, env::Env};
use fragments::{Header, Plan};
use report::{Report, Written};
use std::path::{Path, PathBuf};

/// What to import, and where to.
#[derive(Debug, Clone)]
pub struct Options {
    /// The LiteLLM proxy config (`config.yaml`).
    pub config: PathBuf,
    /// A separate fallbacks JSON (`{model: [fallbacks]}` or LiteLLM's list form).
    pub fallbacks: Option<PathBuf>,
    /// The Tollgate config folder to write into.
    pub out: PathBuf,
    /// Replace files that already exist there.
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a LiteLLM config Tollgate can read: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "these files exist already and were left as they are: {}\nrun again with --force to replace them, or choose another folder with --out",
        list(.0)
    )]
    Exists(Vec<PathBuf>),
    #[error("no deployment could be imported, so nothing was written\n\n{0}")]
    Nothing(Box<Report>),
    #[error("the imported configuration would not load, so nothing was written:\n{0}")]
    Invalid(ConfigError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImportError {
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        ImportError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    fn write(path: &Path, source: std::io::Error) -> Self {
        ImportError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads, converts, checks and writes; the report says what happened.
pub fn run(options: &Options, date: &str) -> Result<Report, ImportError> {
    let mut report = Report::default();
    let source = litellm::read(&options.config, options.fallbacks.as_deref(), &mut report)?;
    report.seen = source.deployments.len() + source.unreadable;
    let header = Header {
        source: options.config.display().to_string(),
        date: date.to_owned(),
    };
    let plan = fragments::build(&source, &mut report, &header);
    if report.imported == 0 {
        return Err(ImportError::Nothing(Box::new(report)));
    }
    let existing: Vec<PathBuf> = plan
        .files
        .iter()
        .map(|f| options.out.join(&f.file_name))
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !options.force {
        return Err(ImportError::Exists(existing));
    }
    check(&plan, &options.out)?;
    write(&plan, &options.out, &mut report)?;
    Ok(report)
}

/// Loads the folder as it will be (its other fragments beside the new
/// ones) from a copy, so a problem is found before anything is written.
fn check(plan: &Plan, out: &Path) -> Result<(), ImportError> {
    let stage = tempfile::tempdir().map_err(|e| ImportError::write(out, e))?;
    if out.is_dir() {
        let entries = std::fs::read_dir(out).map_err(|e| ImportError::read(out, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            let replaced = plan.files.iter().any(|f| f.file_name == name);
            if yaml && !replaced && path.is_file() {
                std::fs::copy(&path, stage.path().join(&name))
                    .map_err(|e| ImportError::read(&path, e))?;
            }
        }
    }
    for file in &plan.files {
        let path = stage.path().join(&file.file_name);
        std::fs::write(&path, &file.text).map_err(|e| ImportError::write(&path, e))?;
    }
    // Adapters are the shipped fragments' own, so any name is known here;
    // `tollgate check` confirms the plugins themselves.
    match Catalog::load(stage.path(), &Env::default(), &|_| true) {
        Ok(_) => Ok(()),
        Err(mut e) => {
            for problem in &mut e.problems {
                if let Ok(rest) = problem.file.strip_prefix(stage.path()) {
                    problem.file = out.join(rest);
                }
            }
            Err(ImportError::Invalid(e))
        }
    }
}

/// Each file through a temporary name and a rename, so a reload watching
/// the folder never reads half a file.
fn write(plan: &Plan, out: &Path, report: &mut Report) -> Result<(), ImportError> {
    std::fs::create_dir_all(out).map_err(|e| ImportError::write(out, e))?;
    for file in &plan.files {
        let path = out.join(&file.file_name);
        let temporary = out.join(format!(".{}.tmp", file.file_name));
        std::fs::write(&temporary, &file.text).map_err(|e| ImportError::write(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| ImportError::write(&path, e))?;
        match &file.fragment {
            Some(summary) => report.written.push(Written {
                path,
                models: summary.models,
                flag: summary.flag.clone(),
                key: summary.key.clone(),
            }),
            None => report.also_written.push(path),
        }
    }
    Ok(())
}
