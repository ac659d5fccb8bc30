//! What an import did, in words: the files written, what was carried over
//! with a change worth knowing, and everything it could not map. Nothing a
//! LiteLLM config holds is dropped without a line here.

use std::fmt;
use std::path::PathBuf;

/// One line of the report: where in the LiteLLM config, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub at: String,
    pub message: String,
}

/// A fragment written, with what a user sets to enable it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub models: usize,
    pub flag: String,
    /// The key variable it reads, if any.
    pub key: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Deployments in the LiteLLM config, and how many became aliases.
    pub seen: usize,
    pub imported: usize,
    pub chains: usize,
    pub written: Vec<Written>,
    /// Other files written (fallbacks.yaml, policies.yaml).
    pub also_written: Vec<PathBuf>,
    changed: Vec<Item>,
    unmapped: Vec<Item>,
}

impl Report {
    /// Something the import could not carry over.
    pub fn unmapped(&mut self, at: &str, message: impl Into<String>) {
        self.unmapped.push(Item {
            at: at.to_owned(),
            message: message.into(),
        });
    }

    /// Something carried over differently from how LiteLLM would treat it.
    pub fn changed(&mut self, at: &str, message: impl Into<String>) {
        self.changed.push(Item {
            at: at.to_owned(),
            message: message.into(),
        });
    }

    pub fn unmapped_items(&self) -> &[Item] {
        &self.unmapped
    }

    pub fn changed_items(&self) -> &[Item] {
        &self.changed
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} of {} deployments as aliases, {} fallback chains",
            self.imported, self.seen, self.chains
        )?;
        for w in &self.written {
            writeln!(
                f,
                "  wrote {} ({} {})",
                w.path.display(),
                w.models,
                if w.models == 1 { "model" } else { "models" }
            )?;
        }
        for path in &self.also_written {
            writeln!(f, "  wrote {}", path.display())?;
        }
        section(f, "carried over with a change", &self.changed)?;
        section(f, "not carried over", &self.unmapped)?;
        if !self.written.is_empty() {
            writeln!(f, "\nto enable them, set in .env (or the environment):")?;
            for w in &self.written {
                match &w.key {
                    Some(key) => writeln!(f, "  {}=1   and {key}", w.flag)?,
                    None => writeln!(f, "  {}=1", w.flag)?,
                }
            }
        }
        Ok(())
    }
}

fn section(f: &mut fmt::Formatter<'_>, title: &str, items: &[Item]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    writeln!(f, "\n{title}:")?;
    let mut items: Vec<&Item> = items.iter().collect();
    items.sort_by_key(|item| position(&item.at));
    for item in items {
        writeln!(f, "  {}: {}", item.at, item.message)?;
    }
    Ok(())
}

/// Deployments first, in the order of `model_list`, then the rest in the
/// order they were found (the sort is stable).
fn position(at: &str) -> (u8, usize) {
    at.strip_prefix("model_list[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok())
        .map_or((1, 0), |n| (0, n))
}
