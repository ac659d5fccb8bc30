//! `keys.yaml` in the config folder: the keys an operator writes down.
//!
//! ```yaml
//! keys:
//!   - name: alice
//!     key: ${ALICE_KEY}        # or key_sha256: <hex>
//!     models: ["groq-*", "local-*"]
//!     rpm: 30
//!     budget_usd: 5
//! ```
//!
//! The secret is hashed as soon as it is read; only the hash is kept.

use super::spec::KeySpec;
use super::{Entry, KeysError, Source, hash_secret};
use crate::config::env::Env;
use serde_yaml::{Mapping, Value};
use std::path::Path;

pub use crate::config::KEYS_FILE as FILE;

/// The keys in `dir/keys.yaml`; none when the file is absent.
pub fn load(dir: &Path, env: &Env) -> Result<Vec<Entry>, KeysError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeysError::File(format!("{}: {e}", path.display()))),
    };
    parse(&text, env).map_err(|e| match e {
        KeysError::File(why) => KeysError::File(format!("{}: {why}", path.display())),
        other => other,
    })
}

pub fn parse(text: &str, env: &Env) -> Result<Vec<Entry>, KeysError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        keys: Vec<Mapping>,
    }
    let file: File = serde_yaml::from_str(text).map_err(|e| KeysError::File(e.to_string()))?;
    let mut entries: Vec<Entry> = Vec::new();
    for (index, mut fields) in file.keys.into_iter().enumerate() {
        let secret = take(&mut fields, "key");
        let digest = take(&mut fields, "key_sha256");
        let spec: KeySpec = serde_yaml::from_value(Value::Mapping(fields))
            .map_err(|e| KeysError::File(format!("keys[{index}]: {e}")))?;
        let expires_at = spec.check()?;
        let hash = match (secret, digest) {
            (Some(secret), None) => {
                let secret = env
                    .expand(&secret)
                    .map_err(|why| invalid(&spec, "key", why))?;
                if secret.len() < 16 {
                    return Err(invalid(
                        &spec,
                        "key",
                        "is shorter than 16 characters".into(),
                    ));
                }
                hash_secret(&secret)
            }
            (None, Some(hex)) => parse_digest(&hex)
                .ok_or_else(|| invalid(&spec, "key_sha256", "is not 64 hex digits".into()))?,
            _ => {
                return Err(invalid(
                    &spec,
                    "key",
                    "give exactly one of `key` and `key_sha256`".into(),
                ));
            }
        };
        if entries.iter().any(|e| e.spec.name == spec.name) {
            return Err(invalid(&spec, "name", "is used by another key".into()));
        }
        if entries.iter().any(|e| e.hash == hash) {
            return Err(invalid(
                &spec,
                "key",
                "is the same secret as another key's".into(),
            ));
        }
        entries.push(Entry {
            spec,
            hash,
            expires_at,
            source: Source::File,
        });
    }
    Ok(entries)
}

fn invalid(spec: &KeySpec, field: &str, why: String) -> KeysError {
    KeysError::Invalid {
        key: spec.name.clone(),
        field: field.to_owned(),
        why,
    }
}

/// Removes `field` from `fields`; a value that is not text is kept, so the
/// spec's own parse names it.
fn take(fields: &mut Mapping, field: &str) -> Option<String> {
    match fields.get(field) {
        Some(Value::String(_)) => match fields.remove(field) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        },
        _ => None,
    }
}

pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_environment_or_as_digests() {
        let env = Env::from_pairs(&[("ALICE_KEY", "tg-alice-0123456789abcdef")]);
        let digest: String = hash_secret("tg-bob-0123456789abcdef")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            "keys:\n  - name: alice\n    key: ${{ALICE_KEY}}\n    models: [\"groq-*\"]\n    rpm: 30\n    budget_usd: 5\n    expires: 2027-01-01\n  - name: bob\n    key_sha256: {digest}\n    tiers: [free, local]\n"
        );
        let entries = parse(&text, &env).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].hash, hash_secret("tg-alice-0123456789abcdef"));
        assert_eq!(entries[0].spec.rpm, Some(30));
        assert!(entries[0].expires_at.is_some());
        assert_eq!(entries[1].hash, hash_secret("tg-bob-0123456789abcdef"));
    }

    #[test]
    fn mistakes_name_the_key_and_field() {
        let env = Env::default();
        let err = |text: &str| parse(text, &env).unwrap_err().to_string();
        assert!(err("keys:\n  - name: a\n    key: ${NOPE}\n").contains("NOPE"));
        assert!(err("keys:\n  - name: a\n    key: short\n").contains("16"));
        assert!(err("keys:\n  - name: a\n").contains("exactly one"));
        assert!(err("keys:\n  - name: a\n    key_sha256: xyz\n").contains("64 hex"));
        assert!(
            err("keys:\n  - name: a\n    key: 0123456789abcdefg\n    rpn: 3\n").contains("rpn")
        );
        let twice =
            "keys:\n  - {name: a, key: 0123456789abcdefg}\n  - {name: a, key: 0123456789abcdefh}\n";
        assert!(err(twice).contains("another key"));
        let secret = err("keys:\n  - name: a\n    key: 0123456789abcdefg\n    rpm: 0\n");
        assert!(!secret.contains("0123456789abcdefg"), "{secret}");
    }
}
