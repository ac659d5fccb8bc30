//! `tollgate plugin new`: a plugin crate that builds on its own, outside any
//! workspace, against the SDK of a Tollgate checkout.
//!
//! The templates are files under `templates/`, compiled into the binary, so
//! what a new plugin starts from is readable (and tested) as it is written.

use super::AuthorError;
use std::path::{Path, PathBuf};

/// What `plugin new` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Adapter,
    Policy,
}

/// `(path in the crate, contents)` of one template; `{{name}}`, `{{Type}}`
/// and `{{sdk}}` are filled in.
type Template = (&'static str, &'static str);

const COMMON: &[Template] = &[
    ("Cargo.toml", include_str!("templates/Cargo.toml")),
    (
        "rust-toolchain.toml",
        include_str!("../../../rust-toolchain.toml"),
    ),
    (".gitignore", include_str!("templates/gitignore")),
];

const ADAPTER: &[Template] = &[
    ("src/lib.rs", include_str!("templates/adapter/lib.rs")),
    ("README.md", include_str!("templates/adapter/README.md")),
    (
        "tests/chat.json",
        include_str!("templates/adapter/tests/chat.json"),
    ),
    (
        "tests/stream.json",
        include_str!("templates/adapter/tests/stream.json"),
    ),
    (
        "tests/rate-limited.json",
        include_str!("templates/adapter/tests/rate-limited.json"),
    ),
];

const POLICY: &[Template] = &[
    ("src/lib.rs", include_str!("templates/policy/lib.rs")),
    ("README.md", include_str!("templates/policy/README.md")),
    (
        "tests/order.json",
        include_str!("templates/policy/tests/order.json"),
    ),
    (
        "tests/after-failure.json",
        include_str!("templates/policy/tests/after-failure.json"),
    ),
];

/// The adapter template's source, for the test that keeps it short.
pub const ADAPTER_LIB: &str = include_str!("templates/adapter/lib.rs");

/// What the user asked for.
pub struct NewPlugin {
    pub name: String,
    pub kind: Kind,
    /// The crate's folder; `./NAME` when not given.
    pub dir: Option<PathBuf>,
    /// The `sdk/` folder of a Tollgate checkout.
    pub sdk: Option<PathBuf>,
}

/// Writes the crate and returns its folder.
pub fn create(request: &NewPlugin) -> Result<PathBuf, AuthorError> {
    check_name(&request.name)?;
    let given = request
        .sdk
        .clone()
        .or_else(|| std::env::var_os("TOLLGATE_SDK").map(PathBuf::from));
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let sdk = sdk_path(given, &built_from)?;
    let dir = request
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&request.name));
    if dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(AuthorError::Exists(dir));
    }
    let templates = match request.kind {
        Kind::Adapter => ADAPTER,
        Kind::Policy => POLICY,
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &request.name)
            .replace("{{Type}}", &type_name(&request.name))
            .replace("{{sdk}}", &toml_string_body(&sdk))
    };
    for (path, text) in COMMON.iter().chain(templates) {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AuthorError::io(parent, e))?;
        }
        std::fs::write(&file, fill(text)).map_err(|e| AuthorError::io(&file, e))?;
    }
    Ok(dir)
}

/// A plugin's name is its file's (`plugins/NAME.wasm`), the `adapter:` of
/// its fragments and its crate's: lowercase words joined by `-`.
fn check_name(name: &str) -> Result<(), AuthorError> {
    let words_ok = name.split('-').all(|word| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    if words_ok && starts_with_letter && name.len() <= 64 {
        Ok(())
    } else {
        Err(AuthorError::BadName(name.to_owned()))
    }
}

/// `acme-ai` → `AcmeAi`, the adapter's Rust type.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The SDK to build against: the one `given` (`--sdk`, else TOLLGATE_SDK),
/// else the `sdk/` of the checkout this binary was `built_from`, while it
/// still exists.
fn sdk_path(given: Option<PathBuf>, built_from: &Path) -> Result<PathBuf, AuthorError> {
    let asked = given.is_some();
    let path = given.unwrap_or_else(|| built_from.to_owned());
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"tollgate-sdk\"") {
        return Err(if asked {
            AuthorError::NotAnSdk(path)
        } else {
            AuthorError::NoSdk(path)
        });
    }
    path.canonicalize().map_err(|e| AuthorError::io(&path, e))
}

/// `path` as the inside of a TOML basic string.
fn toml_string_body(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_words() {
        for good in ["acme", "acme-ai", "v2-proxy"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "Acme", "acme_ai", "-acme", "acme-", "2fast", "a--b", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("acme-ai"), "AcmeAi");
    }

    #[test]
    fn without_the_checkout_it_asks_for_sdk_in_words() {
        let gone = Path::new("/nowhere/tollgate/sdk");
        let error = sdk_path(None, gone).unwrap_err().to_string();
        assert!(
            error.contains("the Tollgate checkout this binary was built from is gone")
                && error.contains("pass --sdk PATH"),
            "{error}"
        );
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        assert!(sdk_path(None, &here).unwrap().join("Cargo.toml").is_file());
        let error = sdk_path(Some(gone.to_owned()), &here)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not the tollgate-sdk crate"), "{error}");
    }

    #[test]
    fn the_adapter_template_is_at_most_sixty_lines() {
        assert!(ADAPTER_LIB.lines().count() <= 60);
    }
}
