//! Loading a catalogue from fragments on disk: what enables a provider,
//! and the problems each typo gives.

use super::*;
use crate::config::env::Env;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const GROQ: &str = "name: groq\nflag: GROQ\nadapter: openai\nbase_url: https://api.groq.com/openai/v1\napi_key: ${GROQ_API_KEY}\ntier: free\nlimits: { rpm: 30 }\nmodels:\n  - alias: groq-llama\n    model: llama\n    mode: chat\n    limits: { rpd: 1000 }\n";
const LOCAL: &str = "name: local\nflag: LOCAL\nadapter: openai\nbase_url: ${LOCAL_URL:-http://127.0.0.1:11434/v1}\ntier: local\nmodels:\n  - alias: local-llama\n    model: llama3\n    mode: chat\n  - alias: local-embed\n    model: bge\n    mode: embedding\n";

fn load(dir: &Path, env: &[(&str, &str)]) -> Result<Catalog, ConfigError> {
    let bundled = |a: &str| {
        crate::plugins::bundled::BUNDLED
            .iter()
            .any(|(n, _)| *n == a)
    };
    Catalog::load(dir, &Env::from_pairs(env), &bundled)
}

#[test]
fn flag_and_key_both_needed_to_enable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "groq.yaml", GROQ);
    write(dir.path(), "local.yaml", LOCAL);
    let catalog = load(dir.path(), &[("GROQ", "1"), ("LOCAL", "1")]).unwrap();
    let groq = catalog.model("groq-llama").unwrap();
    assert!(!groq.enabled(), "flag without key must stay disabled");
    assert!(catalog.model("local-llama").unwrap().enabled());
    assert_eq!(
        catalog.model("local-llama").unwrap().provider.base_url,
        "http://127.0.0.1:11434/v1"
    );

    let catalog = load(dir.path(), &[("GROQ", "true"), ("GROQ_API_KEY", "k")]).unwrap();
    assert!(!catalog.model("groq-llama").unwrap().enabled());
    let catalog = load(dir.path(), &[("GROQ", "1"), ("GROQ_API_KEY", "k")]).unwrap();
    let groq = catalog.model("groq-llama").unwrap();
    assert!(groq.enabled());
    assert_eq!(groq.limits.rpd, Some(1000));
    assert_eq!(groq.provider.limits.rpm, Some(30));
    assert_eq!(format!("{:?}", groq.provider.api_key), "Some(Secret(***))");
}

#[test]
fn candidates_follow_the_chain_and_skip_disabled() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "groq.yaml", GROQ);
    write(dir.path(), "local.yaml", LOCAL);
    write(
        dir.path(),
        FALLBACKS_FILE,
        "local-llama: [groq-llama]\ngroq-llama: [local-llama]\n",
    );
    let catalog = load(dir.path(), &[("LOCAL", "1")]).unwrap();
    let aliases = |a: &str| -> Vec<String> {
        catalog
            .candidates(a)
            .iter()
            .map(|m| m.alias.clone())
            .collect()
    };
    assert_eq!(aliases("local-llama"), vec!["local-llama"]);
    assert!(
        aliases("groq-llama").is_empty(),
        "a disabled alias is invisible"
    );
    assert!(aliases("nope").is_empty());
}

#[test]
fn problems_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "groq.yaml",
        &GROQ.replace("    mode: chat", "    mode: chat\n    modle: x"),
    );
    write(
        dir.path(),
        "bad.yaml",
        &LOCAL
            .replace("adapter: openai", "adapter: nope")
            .replace("local-embed", "local-llama"),
    );
    write(
        dir.path(),
        "leak.yaml",
        &GROQ
            .replace("${GROQ_API_KEY}", "gsk_live_literal")
            .replace("name: groq", "name: leak")
            .replace("groq-llama", "leak-llama"),
    );
    write(
        dir.path(),
        FALLBACKS_FILE,
        "leak-llama: [missing, local-llama]\n",
    );
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("groq.yaml: models[0]: unknown field `modle`"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: adapter: no plugin named `nope`"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: models[1].alias: `local-llama` is already defined"),
        "{err}"
    );
    assert!(
        err.contains("leak.yaml: api_key: must be an environment reference"),
        "{err}"
    );
    assert!(!err.contains("gsk_live_literal"), "{err}");
    assert!(
        err.contains("fallbacks.yaml: leak-llama[0]: `missing` is not defined"),
        "{err}"
    );
}

#[test]
fn quota_settings_and_limits_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "groq.yaml",
        &GROQ.replace(
            "limits: { rpm: 30 }",
            "limits: { rpm: 0, credit_usd: 0.5 }\nquota: { daily_reset: \"7am\", monthly_reset_day: 31 }",
        ),
    );
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    for expected in [
        "groq.yaml: quota.daily_reset: `7am` is not a UTC time such as 00:00",
        "groq.yaml: quota.monthly_reset_day: must be a day from 1 to 28",
        "groq.yaml: limits: a limit of 0 would never allow a request",
        "groq.yaml: price: a credit_usd limit needs a price for every model",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
}

#[test]
fn absurd_waits_are_refused_at_load_instead_of_panicking_later() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "groq.yaml",
        &format!(
            "{GROQ}timeouts: {{ connect: 1e20, response: 0, idle: 30, total: -1, max_mib: 1e9 }}\n"
        ),
    );
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    for expected in [
        "groq.yaml: timeouts.connect: 100000000000000000000 s is more than a week (604800 s)",
        "groq.yaml: timeouts.response: must be a positive number of seconds",
        "groq.yaml: timeouts.total: must be a positive number of seconds",
        "groq.yaml: timeouts.max_mib: must be a number of MiB above 0 and at most 65536",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
    assert!(!err.contains("timeouts.idle"), "{err}");
}

/// The catalogue shipped in `providers/` loads, covers the seed's
/// providers, gives every chat alias a chain, and orders chains free first.
#[test]
fn shipped_catalogue_is_valid_and_free_first() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../providers");
    let catalog = load(&dir, &[]).unwrap();
    assert_eq!(catalog.providers.len(), 16);
    assert_eq!(catalog.models.len(), 120);
    let rank = |t: Tier| match t {
        Tier::Free => 0,
        Tier::Subscription => 1,
        Tier::Paid => 2,
        Tier::Local => 3,
    };
    for model in catalog.models.iter().filter(|m| m.mode == Mode::Chat) {
        let chain = catalog
            .fallbacks
            .get(&model.alias)
            .unwrap_or_else(|| panic!("{} has no fallback chain", model.alias));
        let tiers: Vec<u8> = chain
            .iter()
            .map(|a| rank(catalog.model(a).unwrap().tier))
            .collect();
        assert!(
            tiers.is_sorted(),
            "{}: chain is not free-first: {chain:?}",
            model.alias
        );
    }
    let groq = catalog.model("groq-llama-3.3-70b").unwrap();
    assert_eq!(
        (groq.limits.rpd, groq.limits.tpd),
        (Some(1000), Some(100_000))
    );
    assert_eq!(
        catalog.model("cerebras-llama-3.1-8b").unwrap().limits.rpm,
        Some(5)
    );
}

#[test]
fn chains_may_not_mix_modes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "local.yaml", LOCAL);
    write(dir.path(), FALLBACKS_FILE, "local-llama: [local-embed]\n");
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("`local-embed` serves embedding, but `local-llama` serves chat"),
        "{err}"
    );
}

#[test]
fn each_problem_names_its_file_and_field_as_data() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "local.yaml", LOCAL);
    write(
        dir.path(),
        "fallbacks.yaml",
        "local-llama: [local-embed, nope]\n",
    );
    let err = load(dir.path(), &[]).unwrap_err();
    let fields: Vec<(String, Option<&str>)> = err
        .problems
        .iter()
        .map(|p| {
            let file = p.file.file_name().unwrap().to_string_lossy().into_owned();
            (file, p.field.as_deref())
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("fallbacks.yaml".to_owned(), Some("local-llama[0]")),
            ("fallbacks.yaml".to_owned(), Some("local-llama[1]")),
        ]
    );
    assert_eq!(
        err.problems[1].message,
        "`nope` is not defined by any provider"
    );
    // A file that does not parse is a problem of the file as a whole.
    write(dir.path(), "broken.yaml", "name: [");
    let err = load(dir.path(), &[]).unwrap_err();
    let broken = err
        .problems
        .iter()
        .find(|p| p.file.ends_with("broken.yaml"))
        .unwrap();
    assert_eq!(broken.field, None);
}
