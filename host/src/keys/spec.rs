//! What a gateway key may do, as `keys.yaml` and `POST /admin/keys` state
//! it, and the checks that make a bad entry an error naming its field.

use super::KeysError;
use crate::clock;
use crate::config::Limits;
use crate::config::Tier;
use serde::{Deserialize, Serialize};

/// One key's rights and limits, without its secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    /// Aliases it may ask for; `*` matches any run of characters. Empty:
    /// every model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
    /// Dollars per calendar month (UTC) on paid candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// `YYYY-MM-DD` (the key stops working at its first instant, UTC) or an
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The tiers its requests may be served from; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
}

impl KeySpec {
    /// Every field checked; `Ok` carries the expiry in Unix ms.
    pub fn check(&self) -> Result<Option<u64>, KeysError> {
        let bad = |field: &str, why: String| KeysError::Invalid {
            key: self.name.clone(),
            field: field.to_owned(),
            why,
        };
        if !valid_name(&self.name) {
            return Err(bad(
                "name",
                "use 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        for (field, value) in [
            ("rpm", self.rpm),
            ("rpd", self.rpd),
            ("tpm", self.tpm),
            ("tpd", self.tpd),
        ] {
            if value == Some(0) {
                return Err(bad(
                    field,
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
        }
        if let Some(budget) = self.budget_usd
            && !(budget.is_finite() && (0.0..=1e9).contains(&budget))
        {
            return Err(bad(
                "budget_usd",
                format!("{budget} is not a dollar amount from 0 to 1e9"),
            ));
        }
        for pattern in &self.models {
            if pattern.is_empty() {
                return Err(bad("models", "an empty pattern matches nothing".into()));
            }
        }
        if self.tiers.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad(
                "tiers",
                "an empty list would refuse every request; leave it out for all tiers".into(),
            ));
        }
        self.expires
            .as_deref()
            .map(|text| {
                parse_expiry(text).ok_or_else(|| {
                    bad(
                        "expires",
                        format!("`{text}` is not YYYY-MM-DD or an RFC 3339 time (UTC)"),
                    )
                })
            })
            .transpose()
    }

    /// The key's request and token limits, in the ledger's terms.
    pub fn rates(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            rpd: self.rpd,
            tpm: self.tpm,
            tpd: self.tpd,
            ..Limits::default()
        }
    }

    /// Whether the key may ask for `alias`.
    pub fn allows(&self, alias: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob(p, alias))
    }
}

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_expiry(text: &str) -> Option<u64> {
    clock::parse_rfc3339(text).or_else(|| clock::parse_rfc3339(&format!("{text}T00:00:00Z")))
}

/// `*` matches any run of characters, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_a_shell_would() {
        assert!(glob("groq-*", "groq-llama-3.1-8b"));
        assert!(!glob("groq-*", "cerebras-llama"));
        assert!(glob("*", "anything"));
        assert!(glob("local-*-q4", "local-qwen-q4"));
        assert!(!glob("local-*-q4", "local-qwen-q8"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn bad_fields_are_named() {
        let spec = |f: &dyn Fn(&mut KeySpec)| {
            let mut spec = KeySpec {
                name: "alice".into(),
                ..KeySpec::default()
            };
            f(&mut spec);
            spec.check().map_err(|e| e.to_string())
        };
        assert_eq!(spec(&|_| {}), Ok(None));
        assert!(
            spec(&|s| s.name = "a b".into())
                .unwrap_err()
                .contains("`name`")
        );
        assert!(spec(&|s| s.rpm = Some(0)).unwrap_err().contains("`rpm`"));
        assert!(
            spec(&|s| s.budget_usd = Some(-1.0))
                .unwrap_err()
                .contains("`budget_usd`")
        );
        assert!(
            spec(&|s| s.expires = Some("soon".into()))
                .unwrap_err()
                .contains("`expires`")
        );
        assert!(
            spec(&|s| s.tiers = Some(vec![]))
                .unwrap_err()
                .contains("`tiers`")
        );
        let at = spec(&|s| s.expires = Some("2027-01-01".into()))
            .unwrap()
            .unwrap();
        assert_eq!(clock::rfc3339(at), "2027-01-01T00:00:00Z");
    }
}
