//! The loaded catalogue: every fragment, `fallbacks.yaml` and
//! `policies.yaml`, checked together (duplicate names and aliases, chains
//! that name missing aliases or mix modes, policies that are not loaded).
//! Disabled providers stay in it (for `check`) but are invisible to clients.

use super::env::Env;
use super::fragment::{ProviderFile, fragment_files};
use super::problems::{ConfigError, Problem, check_provider};
use super::resolve::{Model, Provider, resolve_provider};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The loaded catalogue.
#[derive(Debug, Default)]
pub struct Catalog {
    pub providers: Vec<Arc<Provider>>,
    /// Every alias, in file order, enabled or not.
    pub models: Vec<Arc<Model>>,
    by_alias: HashMap<String, Arc<Model>>,
    pub fallbacks: BTreeMap<String, Vec<String>>,
    pub policies: Policies,
    /// Where the policies came from, for messages.
    policies_source: Option<PathBuf>,
}

pub const FALLBACKS_FILE: &str = "fallbacks.yaml";
pub const POLICIES_FILE: &str = "policies.yaml";
/// The gateway keys (`crate::keys`); not a fragment.
pub const KEYS_FILE: &str = "keys.yaml";
/// The routing policy used where `policies.yaml` names none.
pub const DEFAULT_POLICY: &str = "free-first";

/// `policies.yaml`: which routing policy orders each alias's candidates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// For every alias not listed; `free-first` when absent.
    #[serde(default)]
    pub default: Option<String>,
    /// Alias → policy plugin name.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

impl Policies {
    pub fn for_alias(&self, alias: &str) -> &str {
        self.aliases
            .get(alias)
            .or(self.default.as_ref())
            .map_or(DEFAULT_POLICY, String::as_str)
    }
}

impl Catalog {
    /// Loads every fragment in `dir`. `adapter_known` says whether an adapter
    /// name refers to a loaded plugin.
    pub fn load(
        dir: &Path,
        env: &Env,
        adapter_known: &dyn Fn(&str) -> bool,
    ) -> Result<Catalog, ConfigError> {
        let mut problems = Vec::new();
        let mut catalog = Catalog::default();
        let files = match fragment_files(dir) {
            Ok(files) => files,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![Problem::file(dir, e)],
                });
            }
        };
        for path in &files {
            if let Err(mut found) = catalog.add_fragment(path, env, adapter_known) {
                problems.append(&mut found);
            }
        }
        let fallbacks = dir.join(FALLBACKS_FILE);
        if fallbacks.exists()
            && let Err(mut found) = catalog.add_fallbacks(&fallbacks)
        {
            problems.append(&mut found);
        }
        let policies = dir.join(POLICIES_FILE);
        if policies.exists()
            && let Err(mut found) = catalog.add_policies(&policies)
        {
            problems.append(&mut found);
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Checks one fragment's text as a load does (every adapter taken as
    /// known), for the fuzz targets and `tollgate check`'s kind of answer.
    pub fn check_fragment(text: &str, env: &Env) -> Result<Catalog, ConfigError> {
        let mut catalog = Catalog::default();
        catalog
            .add_fragment_text(Path::new("fragment.yaml"), text, env, &|_| true)
            .map_err(|problems| ConfigError { problems })?;
        Ok(catalog)
    }

    fn add_fragment(
        &mut self,
        path: &Path,
        env: &Env,
        adapter_known: &dyn Fn(&str) -> bool,
    ) -> Result<(), Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![Problem::file(path, e)])?;
        self.add_fragment_text(path, &text, env, adapter_known)
    }

    fn add_fragment_text(
        &mut self,
        path: &Path,
        text: &str,
        env: &Env,
        adapter_known: &dyn Fn(&str) -> bool,
    ) -> Result<(), Vec<Problem>> {
        let file: ProviderFile =
            serde_yaml::from_str(text).map_err(|e| vec![Problem::file(path, e)])?;
        let mut problems = Vec::new();
        check_provider(&file, adapter_known, &mut |field, msg| {
            problems.push(Problem::at(path, field, msg))
        });
        if let Some(other) = self.providers.iter().find(|p| p.name == file.name) {
            let message = format!(
                "provider `{}` is already defined in {}",
                file.name,
                other.source.display()
            );
            problems.push(Problem::at(path, "name", message));
        }
        let provider = Arc::new(resolve_provider(&file, path, env));
        for (i, model) in file.models.iter().enumerate() {
            if let Some(existing) = self.by_alias.get(&model.alias) {
                let message = format!(
                    "`{}` is already defined in {}",
                    model.alias,
                    existing.provider.source.display()
                );
                problems.push(Problem::at(path, format!("models[{i}].alias"), message));
                continue;
            }
            let model = Arc::new(Model {
                alias: model.alias.clone(),
                model: model.model.clone(),
                mode: model.mode,
                tier: model.tier.unwrap_or(file.tier),
                limits: model.limits.clone(),
                price: model.price.clone().or_else(|| file.price.clone()),
                gpu: model.gpu.clone(),
                unsupported: file
                    .unsupported
                    .iter()
                    .chain(&model.unsupported)
                    .copied()
                    .collect(),
                notes: model.notes.clone(),
                provider: provider.clone(),
            });
            self.by_alias.insert(model.alias.clone(), model.clone());
            self.models.push(model);
        }
        self.providers.push(provider);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn add_fallbacks(&mut self, path: &Path) -> Result<(), Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![Problem::file(path, e)])?;
        let chains: BTreeMap<String, Vec<String>> =
            serde_yaml::from_str(&text).map_err(|e| vec![Problem::file(path, e)])?;
        let mut problems = Vec::new();
        for (alias, chain) in &chains {
            let Some(head) = self.by_alias.get(alias) else {
                problems.push(Problem::at(path, alias, "no provider defines this alias"));
                continue;
            };
            let mut seen = HashSet::from([alias.as_str()]);
            for (i, next) in chain.iter().enumerate() {
                let message = match self.by_alias.get(next) {
                    None => format!("`{next}` is not defined by any provider"),
                    Some(model) if model.mode != head.mode => format!(
                        "`{next}` serves {}, but `{alias}` serves {}",
                        model.mode.as_str(),
                        head.mode.as_str()
                    ),
                    Some(_) if !seen.insert(next) => {
                        format!("`{next}` appears twice in the chain")
                    }
                    Some(_) => continue,
                };
                problems.push(Problem::at(path, format!("{alias}[{i}]"), message));
            }
        }
        self.fallbacks = chains;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn add_policies(&mut self, path: &Path) -> Result<(), Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![Problem::file(path, e)])?;
        let policies: Policies = if text.trim().is_empty() {
            Policies::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| vec![Problem::file(path, e)])?
        };
        let problems: Vec<Problem> = policies
            .aliases
            .keys()
            .filter(|alias| !self.by_alias.contains_key(*alias))
            .map(|alias| {
                Problem::at(
                    path,
                    format!("aliases.{alias}"),
                    "no provider defines this alias",
                )
            })
            .collect();
        self.policies = policies;
        self.policies_source = Some(path.to_path_buf());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks that every policy `policies.yaml` names is a loaded policy plugin.
    pub fn check_policies(&self, known: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        let at = self
            .policies_source
            .clone()
            .unwrap_or_else(|| PathBuf::from(POLICIES_FILE));
        let named = self
            .policies
            .default
            .iter()
            .map(|p| ("default".to_owned(), p))
            .chain(
                self.policies
                    .aliases
                    .iter()
                    .map(|(alias, p)| (format!("aliases.{alias}"), p)),
            );
        let problems: Vec<Problem> = named
            .filter(|(_, policy)| !known(policy))
            .map(|(field, policy)| {
                let message = format!(
                    "no policy plugin named `{policy}` is bundled or in the plugins folder"
                );
                Problem::at(&at, field, message)
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// An alias's model, enabled or not.
    pub fn model(&self, alias: &str) -> Option<&Arc<Model>> {
        self.by_alias.get(alias)
    }

    /// The models to try for `alias`, in order: itself, then its chain,
    /// enabled ones only. Empty when the alias itself is unknown or disabled.
    pub fn candidates(&self, alias: &str) -> Vec<Arc<Model>> {
        let Some(head) = self.by_alias.get(alias).filter(|m| m.enabled()) else {
            return Vec::new();
        };
        let chain = self.fallbacks.get(alias).into_iter().flatten();
        std::iter::once(head)
            .chain(chain.filter_map(|next| self.by_alias.get(next)))
            .filter(|m| m.enabled())
            .cloned()
            .collect()
    }

    /// Every key in use, to scrub from anything shown to clients or logs.
    pub fn secrets(&self) -> Vec<String> {
        self.providers
            .iter()
            .filter_map(|p| p.api_key.as_ref())
            .map(|s| s.expose().to_owned())
            .collect()
    }
}
