//! The environment Tollgate reads flags and keys from: the process
//! environment, over a `.env` file in the working directory.

use std::collections::HashMap;
use std::path::Path;

/// A snapshot of the variables, so a config load sees one consistent view.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Reads `.env` from `dir` (if present) and lets the process override it.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut vars = HashMap::new();
        let dotenv = dir.join(".env");
        if dotenv.exists() {
            let entries = dotenvy::from_path_iter(&dotenv)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dotenv.display()))?;
            for entry in entries {
                let (key, value) =
                    entry.map_err(|e| anyhow::anyhow!("{}: {e}", dotenv.display()))?;
                vars.insert(key, value);
            }
        }
        vars.extend(std::env::vars());
        Ok(Env { vars })
    }

    /// An environment of just these pairs (tests, simulations).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Env {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A variable's value; an empty value counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Expands `${VAR}` and `${VAR:-default}` in `text`. An unset variable
    /// without a default is an error naming it.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let reference = &after[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            match (self.get(name), default) {
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether `name` can be a `${NAME}` reference: letters, digits and `_`.
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_and_defaults() {
        let env = Env::from_pairs(&[("HOST", "box"), ("EMPTY", "")]);
        assert_eq!(
            env.expand("http://${HOST}:1/v1").unwrap(),
            "http://box:1/v1"
        );
        assert_eq!(env.expand("${EMPTY:-x}").unwrap(), "x");
        assert_eq!(env.expand("${NOPE:-http://l}").unwrap(), "http://l");
        assert!(env.expand("${NOPE}").unwrap_err().contains("NOPE"));
        assert!(env.expand("${OPEN").is_err());
    }
}
