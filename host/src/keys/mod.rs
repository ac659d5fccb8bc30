//! Gateway keys: one per person or agent sharing a gateway, each with the
//! models it may ask for, its own rate limits, a monthly budget, an expiry
//! and the tiers it may be served from.
//!
//! Keys come from `keys.yaml` in the config folder ([`file`], reloaded with
//! the fragments) and from `POST /admin/keys` ([`store`], kept in the data
//! folder). Only a secret's SHA-256 is ever kept; a presented key is hashed
//! and compared with every known hash in constant time. The master key
//! (`TOLLGATE_MASTER_KEY`) is not one of these: it is the operator's, with
//! full access, and the only key `/admin` and `/metrics` accept.
//!
//! A key's counters are ledger scopes ([`crate::ledger::keyed`]), so they
//! are saved and shared (Redis) as a provider's are. The front door finds
//! the key; the router enforces it (allowlist, rates, tiers, budget).

pub mod client;
pub mod file;
pub mod spec;
pub mod store;

use crate::config::Tier;
use crate::ledger::Ledger;
use crate::ledger::keyed::KeyPlans;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use spec::KeySpec;
use std::sync::{Arc, Mutex};
use store::KeyStore;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("keys.yaml: {0}")]
    File(String),
    #[error("key `{key}`: `{field}` {why}")]
    Invalid {
        key: String,
        field: String,
        why: String,
    },
    #[error("a key named `{0}` already exists")]
    Exists(String),
    #[error("no key is named `{0}`")]
    Unknown(String),
    #[error("the key `{0}` is in keys.yaml: remove it there")]
    InFile(String),
    #[error("the key store: {0}")]
    Store(String),
    #[error("keys made through the API need a data folder")]
    NoStore,
}

/// Where a key was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "keys.yaml",
            Source::Api => "api",
        }
    }
}

/// A key as defined: its spec and its secret's hash.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: KeySpec,
    pub hash: [u8; 32],
    pub expires_at: Option<u64>,
    pub source: Source,
}

/// A key in service, with its ledger scopes.
#[derive(Debug)]
pub struct GatewayKey {
    pub spec: KeySpec,
    hash: [u8; 32],
    pub expires_at: Option<u64>,
    pub source: Source,
    pub plans: KeyPlans,
}

impl GatewayKey {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// Every key in service, swapped whole when one is added, removed or
/// `keys.yaml` changes.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<Arc<GatewayKey>>,
}

impl Keyring {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[Arc<GatewayKey>] {
        &self.keys
    }

    /// The key whose secret is `presented`. Every hash is compared, each
    /// without an early exit, so the time taken says nothing of which key
    /// (if any) came close.
    pub fn find(&self, presented: &str) -> Option<&Arc<GatewayKey>> {
        let hash = hash_secret(presented);
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.hash, &hash) {
                found = Some(key);
            }
        }
        found
    }
}

/// Who is asking, as the router enforces it: the key (none for the master
/// key or an open gateway) and the tiers the request may be served from
/// (the key's, narrowed by `x-tollgate-tiers`).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub key: Option<Arc<GatewayKey>>,
    pub tiers: Option<Vec<Tier>>,
}

impl Caller {
    pub fn tier_allowed(&self, tier: Tier) -> bool {
        self.tiers
            .as_ref()
            .is_none_or(|tiers| tiers.contains(&tier))
    }
}

/// The keys of a running gateway.
pub struct Keys {
    ring: ArcSwap<Keyring>,
    entries: Mutex<Entries>,
    store: Option<KeyStore>,
    ledger: Arc<Ledger>,
}

#[derive(Default)]
struct Entries {
    file: Vec<Entry>,
    api: Vec<Entry>,
}

impl Keys {
    /// The keys of `file` and those `store` holds.
    pub fn new(
        ledger: Arc<Ledger>,
        store: Option<KeyStore>,
        file: Vec<Entry>,
    ) -> Result<Self, KeysError> {
        let api = match &store {
            Some(store) => store.load()?,
            None => Vec::new(),
        };
        let keys = Keys {
            ring: ArcSwap::default(),
            entries: Mutex::new(Entries::default()),
            store,
            ledger,
        };
        {
            let mut entries = keys.lock();
            entries.api = api;
            check_names(&file, &entries.api)?;
            entries.file = file;
            keys.publish(&entries);
        }
        Ok(keys)
    }

    /// No keys: the gateway is open (or behind its master key).
    pub fn none(ledger: Arc<Ledger>) -> Self {
        Keys {
            ring: ArcSwap::default(),
            entries: Mutex::new(Entries::default()),
            store: None,
            ledger,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys in service, to hold across an await.
    pub fn ring(&self) -> Arc<Keyring> {
        self.ring.load_full()
    }

    /// The keys in service, for a look on the request path that takes no
    /// reference count (not to be held across an await).
    pub fn peek(&self) -> arc_swap::Guard<Arc<Keyring>> {
        self.ring.load()
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Puts a reloaded `keys.yaml` in service.
    pub fn replace_file(&self, file: Vec<Entry>) -> Result<(), KeysError> {
        let mut entries = self.lock();
        check_names(&file, &entries.api)?;
        entries.file = file;
        self.publish(&entries);
        Ok(())
    }

    /// Makes a key; the secret is returned once and kept only as a hash.
    pub fn add(&self, spec: KeySpec) -> Result<(String, Arc<GatewayKey>), KeysError> {
        let expires_at = spec.check()?;
        let store = self.store.as_ref().ok_or(KeysError::NoStore)?;
        let mut entries = self.lock();
        if entries
            .file
            .iter()
            .chain(&entries.api)
            .any(|e| e.spec.name == spec.name)
        {
            return Err(KeysError::Exists(spec.name));
        }
        let secret = new_secret()?;
        let entry = Entry {
            spec,
            hash: hash_secret(&secret),
            expires_at,
            source: Source::Api,
        };
        store.put(&entry)?;
        let name = entry.spec.name.clone();
        entries.api.push(entry);
        self.publish(&entries);
        let key = self
            .ring()
            .keys
            .iter()
            .find(|k| k.name() == name)
            .cloned()
            .expect("the key just added is in the ring");
        Ok((secret, key))
    }

    /// Revokes a key made through the API.
    pub fn remove(&self, name: &str) -> Result<(), KeysError> {
        let mut entries = self.lock();
        if entries.file.iter().any(|e| e.spec.name == name) {
            return Err(KeysError::InFile(name.to_owned()));
        }
        let Some(at) = entries.api.iter().position(|e| e.spec.name == name) else {
            return Err(KeysError::Unknown(name.to_owned()));
        };
        if let Some(store) = &self.store {
            store.remove(name)?;
        }
        entries.api.remove(at);
        self.publish(&entries);
        Ok(())
    }

    fn publish(&self, entries: &Entries) {
        let keys = entries
            .file
            .iter()
            .chain(&entries.api)
            .map(|entry| {
                Arc::new(GatewayKey {
                    plans: self.ledger.key_plans(
                        &entry.spec.name,
                        &entry.spec.rates(),
                        entry.spec.budget_usd,
                    ),
                    spec: entry.spec.clone(),
                    hash: entry.hash,
                    expires_at: entry.expires_at,
                    source: entry.source,
                })
            })
            .collect();
        self.ring.store(Arc::new(Keyring { keys }));
    }
}

/// A name or secret used twice between the file and the API.
fn check_names(file: &[Entry], api: &[Entry]) -> Result<(), KeysError> {
    for entry in file {
        if let Some(other) = api
            .iter()
            .find(|a| a.spec.name == entry.spec.name || a.hash == entry.hash)
        {
            return Err(KeysError::Invalid {
                key: entry.spec.name.clone(),
                field: if other.spec.name == entry.spec.name {
                    "name".into()
                } else {
                    "key".into()
                },
                why: format!(
                    "clashes with the key `{}` made through the API; revoke that one first",
                    other.spec.name
                ),
            });
        }
    }
    Ok(())
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `tg-` and 48 hex digits from the operating system's random source.
fn new_secret() -> Result<String, KeysError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| KeysError::Store(format!("no randomness: {e}")))?;
    Ok(format!(
        "tg-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Dollars as people read them: cents for a dollar or more, and for less
/// the digits that matter down to a millionth ($0.000027, not $0.0000: a
/// key's spend on cheap models is often that small).
pub fn usd(amount: f64) -> String {
    if amount.abs() >= 1.0 || amount == 0.0 {
        return format!("${amount:.2}");
    }
    let text = format!("{amount:.6}");
    let text = text.trim_end_matches('0');
    let decimals = text.len() - text.find('.').map_or(text.len(), |dot| dot + 1);
    if decimals < 2 {
        format!("${amount:.2}")
    } else {
        format!("${text}")
    }
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ledger::Backend;

    fn keys(dir: &std::path::Path) -> Keys {
        let ledger = Ledger::new(Backend::Memory, Arc::new(ManualClock::at(0))).unwrap();
        Keys::new(ledger, Some(KeyStore::open(dir).unwrap()), Vec::new()).unwrap()
    }

    #[test]
    fn a_made_key_is_found_by_its_secret_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spec = KeySpec {
            name: "agent".into(),
            rpm: Some(5),
            ..KeySpec::default()
        };
        let secret = {
            let keys = keys(dir.path());
            let (secret, key) = keys.add(spec.clone()).unwrap();
            assert!(secret.starts_with("tg-") && secret.len() == 51);
            assert_eq!(key.spec, spec);
            assert!(matches!(keys.add(spec.clone()), Err(KeysError::Exists(_))));
            secret
        };
        let keys = keys(dir.path());
        let ring = keys.ring();
        assert_eq!(ring.find(&secret).unwrap().name(), "agent");
        assert!(ring.find("tg-wrong").is_none());
        let bytes = std::fs::read(dir.path().join(store::FILE)).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret itself is stored"
        );
        keys.remove("agent").unwrap();
        assert!(keys.ring().find(&secret).is_none());
        assert!(matches!(keys.remove("agent"), Err(KeysError::Unknown(_))));
    }

    #[test]
    fn dollars_keep_the_digits_that_matter() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(5.0), "$5.00");
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(0.000027), "$0.000027");
        assert_eq!(usd(0.00002), "$0.00002");
        assert_eq!(usd(0.001973), "$0.001973");
        assert_eq!(usd(12.345), "$12.35");
    }

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-kez", b"secret-key"));
        assert!(!constant_time_eq(b"secret", b"secret-key"));
        assert!(!constant_time_eq(b"", b"secret-key"));
    }
}
