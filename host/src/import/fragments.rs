//! Turning what was read into Tollgate's files: one fragment per provider
//! account (provider, address and key together), `fallbacks.yaml` for the
//! chains, and `policies.yaml` when LiteLLM's routing asks for one. Every
//! choice that differs from how LiteLLM would behave is written in the
//! report.

use super::litellm::{Deployment, Fallback, Setting, Source};
use super::providers::{self, Profile, Shipped, flag_of, text};
use super::report::Report;
use crate::config::env::is_variable_name;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A file to write, by name, in the output folder.
#[derive(Debug, Clone)]
pub struct Planned {
    pub file_name: String,
    pub text: String,
    /// For fragments: how many models, the flag, and the key variable.
    pub fragment: Option<FragmentSummary>,
}

#[derive(Debug, Clone)]
pub struct FragmentSummary {
    pub models: usize,
    pub flag: String,
    pub key: Option<String>,
}

/// What the import would write.
#[derive(Debug, Default)]
pub struct Plan {
    pub files: Vec<Planned>,
}

/// Said at the top of every written file.
pub struct Header {
    /// The LiteLLM config, as the user named it.
    pub source: String,
    /// `2026-12-06`.
    pub date: String,
}

/// The key a group of deployments authenticates with. A literal is kept
/// only to tell two accounts apart; it is never written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// No `api_key`: the shipped fragment's variable, if it has one.
    Shipped,
    Env(String),
    Literal(String),
}

/// One provider account: the fragment it becomes.
struct Group {
    profile: Profile,
    base_url: Option<String>,
    key: Key,
    members: Vec<Member>,
    /// LiteLLM's `timeout` seconds, the largest of the group's.
    timeout: Option<f64>,
}

/// A deployment that maps, with the alias and mode it gets.
struct Member {
    /// Its place in `model_list`: the first of a `model_name` heads its chain.
    order: usize,
    deployment: Deployment,
    alias: String,
    mode: &'static str,
    /// `free`, `subscription`, `paid` or `local`: what orders its chains.
    tier: String,
    /// The shipped model it matches, for limits, price and GPU needs.
    known: Option<Mapping>,
}

/// The deployments of each `model_name`, in the order of `model_list`.
type ByName<'a> = Vec<(&'a str, Vec<&'a Member>)>;

/// Builds the files for `source`, reporting every deployment it skips and
/// every change in behaviour. `report.imported` and `report.chains` are set.
pub fn build(source: &Source, report: &mut Report, header: &Header) -> Plan {
    let shipped = Shipped::load();
    let mut groups: Vec<Group> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    for (order, d) in source.deployments.iter().enumerate() {
        if let Err(why) = add(order, d, &shipped, &mut groups, &mut taken, report) {
            report.unmapped(&d.at, format!("`{}`: {why}; not imported", d.model_name));
        }
    }
    report.imported = groups.iter().map(|g| g.members.len()).sum();
    let mut plan = Plan::default();
    if groups.is_empty() {
        return plan;
    }
    let names = fragment_names(&groups);
    for (group, name) in groups.iter().zip(&names) {
        plan.files
            .push(fragment(group, name, source, header, report));
    }
    let by_name = by_name(&groups);
    let chains = chains(source, &by_name, report);
    report.chains = chains.len();
    if !chains.is_empty() {
        plan.files.push(Planned {
            file_name: crate::config::FALLBACKS_FILE.into(),
            text: chains_text(&chains, header),
            fragment: None,
        });
    }
    if let Some(text) = policies(source, &by_name, report, header) {
        plan.files.push(Planned {
            file_name: crate::config::POLICIES_FILE.into(),
            text,
            fragment: None,
        });
    }
    plan
}

/// Places one deployment in its group, or says why it cannot be imported.
fn add(
    order: usize,
    d: &Deployment,
    shipped: &Shipped,
    groups: &mut Vec<Group>,
    taken: &mut HashSet<String>,
    report: &mut Report,
) -> Result<(), String> {
    if d.model_name.contains('*') || d.model.contains('*') {
        return Err("wildcard routing is not carried over: list each model you use".into());
    }
    let profile = providers::profile(d, shipped)?;
    let known = known_model(&profile, d);
    let mode = mode_of(d, known.as_ref(), report)?;
    let key = key_of(d, report);
    let base_url = text(&profile.fields, "base_url").map(str::to_owned);
    if !d.unused_params.is_empty() {
        report.unmapped(
            &format!("{}.litellm_params", d.at),
            format!(
                "`{}`: {} not carried over (Tollgate sends the client's own request fields)",
                d.model_name,
                d.unused_params.join(", ")
            ),
        );
    }
    let alias = alias_for(d, &profile.name, taken);
    if alias != d.model_name {
        report.changed(
            &d.at,
            format!(
                "`{}` is also the name of an earlier deployment: this one is `{alias}`, a candidate in `{}`'s chain",
                d.model_name, d.model_name
            ),
        );
    }
    let tier = tier_of(&profile, known.as_ref(), d);
    let member = Member {
        order,
        deployment: d.clone(),
        alias,
        mode,
        tier,
        known,
    };
    let timeout = d.timeout.filter(|t| *t > 0.0);
    match groups
        .iter_mut()
        .find(|g| g.profile.name == profile.name && g.base_url == base_url && g.key == key)
    {
        Some(group) => {
            group.timeout = max_timeout(group.timeout, timeout);
            group.members.push(member);
        }
        None => groups.push(Group {
            profile,
            base_url,
            key,
            members: vec![member],
            timeout,
        }),
    }
    Ok(())
}

fn max_timeout(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The first deployment of a `model_name` takes the name as its alias; the
/// others of a load-balanced group are named for their provider.
fn alias_for(d: &Deployment, provider: &str, taken: &mut HashSet<String>) -> String {
    let mut alias = d.model_name.clone();
    if taken.contains(&alias) {
        alias = format!("{}-{provider}", d.model_name);
        let base = alias.clone();
        let mut n = 2;
        while taken.contains(&alias) {
            alias = format!("{base}-{n}");
            n += 1;
        }
    }
    taken.insert(alias.clone());
    alias
}

/// The shipped entry for this model, for its limits, price and GPU needs:
/// same alias, else same model id (OpenRouter's `:free` suffix aside).
fn known_model(profile: &Profile, d: &Deployment) -> Option<Mapping> {
    let bare = d.model.trim_end_matches(":free");
    profile
        .known_models
        .iter()
        .find(|m| text(m, "alias") == Some(d.model_name.as_str()))
        .or_else(|| {
            profile
                .known_models
                .iter()
                .find(|m| text(m, "model").is_some_and(|id| id.trim_end_matches(":free") == bare))
        })
        .cloned()
}

/// LiteLLM's `mode`, the shipped model's, or the model id's kind.
fn mode_of(
    d: &Deployment,
    known: Option<&Mapping>,
    report: &mut Report,
) -> Result<&'static str, String> {
    if let Some(mode) = d.mode.as_deref() {
        return match mode {
            "chat" | "responses" => Ok("chat"),
            "completion" => {
                report.changed(
                    &d.at,
                    format!(
                        "`{}`: completion mode is served as chat on /v1/chat/completions",
                        d.model_name
                    ),
                );
                Ok("chat")
            }
            "embedding" => Ok("embedding"),
            "rerank" => Ok("rerank"),
            "image_generation" => Ok("image"),
            "audio_transcription" => Ok("transcription"),
            "audio_speech" => Ok("speech"),
            other => Err(format!("mode `{other}` is not one Tollgate serves")),
        };
    }
    if let Some(mode) = known.and_then(|m| text(m, "mode")) {
        return Ok(match mode {
            "embedding" => "embedding",
            "rerank" => "rerank",
            "image" => "image",
            "transcription" => "transcription",
            "speech" => "speech",
            _ => "chat",
        });
    }
    Ok(guess_mode(&d.model))
}

/// What LiteLLM itself infers from well-known model ids.
fn guess_mode(model: &str) -> &'static str {
    let m = model.to_ascii_lowercase();
    if m.contains("rerank") {
        "rerank"
    } else if m.contains("embed") || m.starts_with("bge-") || m.contains("/bge-") {
        "embedding"
    } else if m.contains("whisper") || m.contains("transcribe") {
        "transcription"
    } else if m.starts_with("tts-") || m.contains("-tts") {
        "speech"
    } else if m.starts_with("dall-e")
        || m.starts_with("gpt-image")
        || m.contains("stable-diffusion")
    {
        "image"
    } else {
        "chat"
    }
}

/// Where the key comes from. A literal key is not copied into a file.
fn key_of(d: &Deployment, report: &mut Report) -> Key {
    match &d.api_key {
        None => Key::Shipped,
        Some(Setting::Env(name)) if is_variable_name(name) => Key::Env(name.clone()),
        Some(Setting::Env(name)) => {
            report.changed(
                &d.at,
                format!("`{}`: os.environ/{name} is not a variable name Tollgate can read; it reads the one the report names instead", d.model_name),
            );
            Key::Literal(format!("env:{name}"))
        }
        Some(Setting::Literal(value)) if placeholder(value) => {
            report.changed(
                &d.at,
                format!("`{}`: its api_key is a placeholder (LiteLLM needs one for a server that takes none); not carried over", d.model_name),
            );
            Key::Shipped
        }
        Some(Setting::Literal(value)) => Key::Literal(value.clone()),
    }
}

/// The stand-ins people write where LiteLLM wants a key and the server
/// takes none.
fn placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    matches!(
        v.as_str(),
        "" | "none"
            | "null"
            | "empty"
            | "dummy"
            | "fake"
            | "x"
            | "-"
            | "sk-dummy"
            | "sk-fake"
            | "not-needed"
            | "no-key"
            | "nokey"
            | "sk-no-key-required"
            | "sk-none"
            | "ollama"
    )
}

/// `groq` for the first account of a provider, `groq-2` for the next.
fn fragment_names(groups: &[Group]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    groups
        .iter()
        .map(|g| {
            let n = seen.entry(g.profile.name.as_str()).or_insert(0);
            *n += 1;
            if *n == 1 {
                g.profile.name.clone()
            } else {
                format!("{}-{n}", g.profile.name)
            }
        })
        .collect()
}

fn fragment(
    group: &Group,
    name: &str,
    source: &Source,
    header: &Header,
    report: &mut Report,
) -> Planned {
    let mut fields = group.profile.fields.clone();
    let shipped_name = group.profile.name.as_str();
    let flag = if name == shipped_name {
        text(&fields, "flag").map_or_else(|| flag_of(name), str::to_owned)
    } else {
        flag_of(name)
    };
    fields.insert("name".into(), name.into());
    fields.insert("flag".into(), flag.clone().into());
    let key = key_variable(group, &flag, report);
    match &key {
        Some(var) => {
            fields.insert("api_key".into(), format!("${{{var}}}").into());
        }
        None => {
            fields.remove("api_key");
        }
    }
    if let Some(seconds) = group
        .timeout
        .or(source.request_timeout)
        .filter(|t| *t > 0.0)
    {
        set_response_timeout(&mut fields, seconds.min(86_400.0));
    }
    let credit = fields
        .get("limits")
        .and_then(Value::as_mapping)
        .is_some_and(|l| l.contains_key("credit_usd"))
        && !fields.contains_key("price");
    let models: Vec<Value> = group
        .members
        .iter()
        .map(|m| Value::Mapping(model_entry(m, &group.profile, credit, report)))
        .collect();
    let count = models.len();
    fields.insert("models".into(), Value::Sequence(models));
    let mut text = format!(
        "# Imported from {} by `tollgate import litellm` on {}.\n# Enable it with {flag}=1",
        header.source, header.date
    );
    if let Some(var) = &key {
        text.push_str(&format!(" and {var} in .env"));
    }
    text.push_str(".\n");
    if let Some(assumption) = &group.profile.assumption {
        text.push_str(&format!("# {assumption}\n"));
    }
    if !group.profile.known_models.is_empty() {
        text.push_str(&format!(
            "# Limits and adapter settings come from Tollgate's shipped providers/{shipped_name}.yaml.\n"
        ));
    }
    text.push_str(&serde_yaml::to_string(&Value::Mapping(fields)).expect("a mapping serialises"));
    if let Some(assumption) = &group.profile.assumption {
        report.changed(&format!("{name}.yaml"), assumption.clone());
    }
    Planned {
        file_name: format!("{name}.yaml"),
        text,
        fragment: Some(FragmentSummary {
            models: count,
            flag,
            key,
        }),
    }
}

/// The variable the fragment reads its key from.
fn key_variable(group: &Group, flag: &str, report: &mut Report) -> Option<String> {
    match &group.key {
        Key::Shipped => text(&group.profile.fields, "api_key")
            .and_then(|k| k.strip_prefix("${"))
            .and_then(|k| k.strip_suffix('}'))
            .map(str::to_owned),
        Key::Env(name) => Some(name.clone()),
        Key::Literal(_) => {
            let var = format!("{flag}_API_KEY");
            let models: Vec<&str> = group
                .members
                .iter()
                .map(|m| m.deployment.model_name.as_str())
                .collect();
            report.changed(
                &group.members[0].deployment.at,
                format!(
                    "{}: the api_key written in the config was not copied; put it in .env as {var}",
                    models.join(", ")
                ),
            );
            Some(var)
        }
    }
}

fn set_response_timeout(fields: &mut Mapping, seconds: f64) {
    let entry = fields
        .entry("timeouts".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if let Value::Mapping(timeouts) = entry {
        timeouts.insert("response".into(), seconds.into());
    }
}

/// The model as Tollgate lists it: the shipped entry's limits, price and GPU
/// needs where there is one, LiteLLM's rpm, tpm and prices on top.
fn model_entry(m: &Member, profile: &Profile, credit: bool, report: &mut Report) -> Mapping {
    let d = &m.deployment;
    let known = m.known.as_ref();
    let mut entry = Mapping::new();
    entry.insert("alias".into(), m.alias.clone().into());
    entry.insert("model".into(), d.model.clone().into());
    entry.insert("mode".into(), m.mode.into());
    if let Some(known) = known {
        for key in ["tier", "limits", "price", "gpu", "unsupported", "notes"] {
            if let Some(value) = known.get(key) {
                entry.insert(key.into(), value.clone());
            }
        }
    }
    if known.is_none() && paid_on_a_free_tier(profile, d) {
        entry.insert("tier".into(), "paid".into());
        report.changed(
            &d.at,
            format!(
                "`{}`: {} is not one of {}'s free models: marked `tier: paid`",
                m.alias, d.model, profile.name
            ),
        );
    }
    set_limits(&mut entry, d);
    set_price(&mut entry, d);
    if credit && !entry.contains_key("price") {
        let price = highest_price(profile);
        report.changed(
            &d.at,
            format!(
                "`{}`: {} spends a dollar credit and LiteLLM gave no price: the highest of its shipped models' prices is assumed",
                m.alias, profile.name
            ),
        );
        entry.insert("price".into(), price);
    }
    entry
}

/// The tier the model will have: the shipped model's, else the provider's.
fn tier_of(profile: &Profile, known: Option<&Mapping>, d: &Deployment) -> String {
    let provider = text(&profile.fields, "tier").unwrap_or("paid");
    match known.and_then(|m| text(m, "tier")) {
        Some(tier) => tier.to_owned(),
        None if known.is_none() && paid_on_a_free_tier(profile, d) => "paid".into(),
        None => provider.to_owned(),
    }
}

/// An OpenRouter model that is not a `:free` one is paid for, though the
/// provider's tier is free.
fn paid_on_a_free_tier(profile: &Profile, d: &Deployment) -> bool {
    text(&profile.fields, "tier") == Some("free")
        && profile.name == "openrouter"
        && !d.model.ends_with(":free")
}

fn set_limits(entry: &mut Mapping, d: &Deployment) {
    if d.rpm.is_none() && d.tpm.is_none() {
        return;
    }
    let limits = entry
        .entry("limits".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if let Value::Mapping(limits) = limits {
        for (key, value) in [("rpm", d.rpm), ("tpm", d.tpm)] {
            if let Some(n) = value.filter(|n| *n > 0) {
                limits.insert(key.into(), n.into());
            }
        }
    }
}

fn set_price(entry: &mut Mapping, d: &Deployment) {
    let per_mtok = |cost: Option<f64>| cost.map(|c| round6(c * 1e6));
    let input = per_mtok(d.input_cost_per_token);
    let output = per_mtok(d.output_cost_per_token);
    if input.is_none() && output.is_none() && d.cost_per_image.is_none() {
        return;
    }
    let mut price = Mapping::new();
    if let Some(v) = input {
        price.insert("input_per_mtok".into(), v.into());
    }
    if let Some(v) = output {
        price.insert("output_per_mtok".into(), v.into());
    }
    if let Some(v) = d.cost_per_image {
        price.insert("per_request".into(), round6(v).into());
    }
    entry.insert("price".into(), Value::Mapping(price));
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn highest_price(profile: &Profile) -> Value {
    let price = |m: &Mapping, key: &str| {
        m.get("price")
            .and_then(Value::as_mapping)
            .and_then(|p| p.get(key))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let (mut input, mut output) = (0.0f64, 0.0f64);
    for m in &profile.known_models {
        input = input.max(price(m, "input_per_mtok"));
        output = output.max(price(m, "output_per_mtok"));
    }
    if input == 0.0 && output == 0.0 {
        (input, output) = (1.0, 1.0);
    }
    let mut map = Mapping::new();
    map.insert("input_per_mtok".into(), input.into());
    map.insert("output_per_mtok".into(), output.into());
    Value::Mapping(map)
}

fn by_name(groups: &[Group]) -> ByName<'_> {
    let mut members: Vec<&Member> = groups.iter().flat_map(|g| &g.members).collect();
    members.sort_by_key(|m| m.order);
    let mut by_name: ByName = Vec::new();
    for m in members {
        let name = m.deployment.model_name.as_str();
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(m),
            None => by_name.push((name, vec![m])),
        }
    }
    by_name
}

/// Each `model_name`'s chain: its other deployments first (LiteLLM's load
/// balancing), then its fallbacks (or the default ones), each fallback name
/// expanded to all of that name's deployments.
fn chains(source: &Source, by_name: &ByName, report: &mut Report) -> BTreeMap<String, Vec<String>> {
    let deployments_of = |name: &str| by_name.iter().find(|(n, _)| *n == name).map(|(_, l)| l);
    let fallbacks = fallbacks_by_head(source, report);
    report_unknown_heads(&fallbacks, by_name, source, report);
    let mut out = BTreeMap::new();
    for (name, group) in by_name {
        let head = group[0];
        let mut chain: Vec<&Member> = group[1..].to_vec();
        let own = fallbacks.get(*name);
        let targets: Vec<(String, String)> = match own {
            Some(list) => list.clone(),
            None => source
                .default_fallbacks
                .iter()
                .map(|t| (t.clone(), "default_fallbacks".to_owned()))
                .collect(),
        };
        for (target, at) in targets {
            if target == *name {
                continue;
            }
            let Some(list) = deployments_of(&target) else {
                if own.is_some() || !source.default_fallbacks.is_empty() {
                    report.unmapped(
                        &at,
                        format!("`{name}` → `{target}`: `{target}` is not an imported model_name; left out of the chain"),
                    );
                }
                continue;
            };
            for m in list {
                if m.mode != head.mode {
                    report.unmapped(
                        &at,
                        format!("`{name}` → `{}`: it serves {}, `{name}` serves {}; left out of the chain", m.alias, m.mode, head.mode),
                    );
                } else if !chain.iter().any(|c| c.alias == m.alias) && m.alias != head.alias {
                    chain.push(m);
                }
            }
        }
        if group.len() > 1 {
            report.changed(
                name,
                format!(
                    "{} deployments: LiteLLM spreads requests over them; Tollgate orders them by quota left (policy most-headroom) and moves on when one has none or fails",
                    group.len()
                ),
            );
        }
        report_tier_order(head, &chain, report);
        if !chain.is_empty() {
            out.insert(
                head.alias.clone(),
                chain.iter().map(|m| m.alias.clone()).collect(),
            );
        }
    }
    out
}

/// Tollgate spends free tiers first, so a chain that falls back from a
/// paid or local model to a free one tries the free one first: unlike
/// LiteLLM, where a fallback waits for a failure.
fn report_tier_order(head: &Member, chain: &[&Member], report: &mut Report) {
    let rank = |tier: &str| match tier {
        "free" => 0,
        "subscription" => 1,
        "paid" => 2,
        _ => 3,
    };
    let before: Vec<String> = chain
        .iter()
        .filter(|m| rank(&m.tier) < rank(&head.tier))
        .map(|m| format!("{} ({})", m.alias, m.tier))
        .collect();
    if !before.is_empty() {
        report.changed(
            &head.alias,
            format!(
                "free tiers go first, so {} will be tried before `{}` ({}); to keep LiteLLM's order, give them the same tier",
                before.join(", "),
                head.alias,
                head.tier
            ),
        );
    }
}

/// Fallback targets by the name they start from, each with where it was
/// written; LiteLLM's narrower kinds become ordinary chains, said once.
fn fallbacks_by_head(
    source: &Source,
    report: &mut Report,
) -> HashMap<String, Vec<(String, String)>> {
    let mut by_head: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut narrowed: HashSet<&str> = HashSet::new();
    for Fallback {
        from,
        to,
        source: at,
    } in &source.fallbacks
    {
        if (at.ends_with("context_window_fallbacks") || at.ends_with("content_policy_fallbacks"))
            && narrowed.insert(at.as_str())
        {
            report.changed(
                at,
                "LiteLLM tries these only on that kind of error; Tollgate tries them on any failure, after the model's own fallbacks",
            );
        }
        let list = by_head.entry(from.clone()).or_default();
        for target in to {
            list.push((target.clone(), at.clone()));
        }
    }
    by_head
}

fn report_unknown_heads(
    fallbacks: &HashMap<String, Vec<(String, String)>>,
    by_name: &ByName,
    source: &Source,
    report: &mut Report,
) {
    let mut heads: Vec<&String> = fallbacks.keys().collect();
    heads.sort();
    for head in heads {
        if !by_name.iter().any(|(n, _)| n == head) {
            let at = source
                .fallbacks
                .iter()
                .find(|f| &f.from == head)
                .map_or("fallbacks", |f| f.source.as_str());
            report.unmapped(
                at,
                format!("fallbacks for `{head}`, which is not an imported model_name"),
            );
        }
    }
}

fn chains_text(chains: &BTreeMap<String, Vec<String>>, header: &Header) -> String {
    let mut text = format!(
        "# Fallback chains imported from {} by `tollgate import litellm` on {}.\n# Each alias's chain is tried in order when it cannot answer.\n",
        header.source, header.date
    );
    for (alias, chain) in chains {
        let list: Vec<String> = chain.iter().map(|a| yaml_scalar(a)).collect();
        text.push_str(&format!("{}: [{}]\n", yaml_scalar(alias), list.join(", ")));
    }
    text
}

/// A name as a YAML scalar, quoted when plain style would misread it.
fn yaml_scalar(name: &str) -> String {
    serde_yaml::to_string(name)
        .expect("a string serialises")
        .trim_end()
        .to_owned()
}

/// `policies.yaml`, when LiteLLM's routing strategy or a load-balanced group
/// asks for something other than the default order.
fn policies(
    source: &Source,
    by_name: &ByName,
    report: &mut Report,
    header: &Header,
) -> Option<String> {
    let default = match source.routing_strategy.as_deref() {
        None | Some("simple-shuffle") => None,
        Some(s @ ("usage-based-routing" | "usage-based-routing-v2" | "least-busy")) => {
            report.changed(
                "router_settings.routing_strategy",
                format!("`{s}` becomes policy most-headroom: the candidate with the most quota left goes first, within each tier"),
            );
            Some("most-headroom")
        }
        Some("cost-based-routing") => {
            report.changed(
                "router_settings.routing_strategy",
                "`cost-based-routing` becomes the default policy free-first: free tiers, then subscriptions, then paid, then local",
            );
            None
        }
        Some(other) => {
            report.unmapped(
                "router_settings.routing_strategy",
                format!("`{other}` has no Tollgate policy; the default free-first applies (a policy is a plugin: see docs)"),
            );
            None
        }
    };
    let mut balanced: Vec<&str> = by_name
        .iter()
        .filter(|(_, group)| group.len() > 1)
        .map(|(_, group)| group[0].alias.as_str())
        .collect();
    balanced.sort();
    if default.is_none() && balanced.is_empty() {
        return None;
    }
    let mut text = format!(
        "# Routing policies imported from {} by `tollgate import litellm` on {}.\ndefault: {}\n",
        header.source,
        header.date,
        default.unwrap_or(crate::config::DEFAULT_POLICY)
    );
    if default.is_none() {
        text.push_str("# LiteLLM load-balanced these over several deployments.\naliases:\n");
        for alias in balanced {
            text.push_str(&format!("  {}: most-headroom\n", yaml_scalar(alias)));
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::litellm;

    fn plan(yaml: &str) -> (Plan, Report) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut report = Report::default();
        let source = litellm::read(&path, None, &mut report).unwrap();
        let header = Header {
            source: "config.yaml".into(),
            date: "2026-12-06".into(),
        };
        let plan = build(&source, &mut report, &header);
        (plan, report)
    }

    fn file<'a>(plan: &'a Plan, name: &str) -> &'a str {
        &plan
            .files
            .iter()
            .find(|f| f.file_name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .text
    }

    #[test]
    fn a_groq_model_carries_the_shipped_limits_with_litellms_rpm_on_top() {
        let (plan, _) = plan(
            "model_list:\n  - model_name: fast\n    litellm_params: { model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_API_KEY, rpm: 10 }\n",
        );
        let text = file(&plan, "groq.yaml");
        let value: Value = serde_yaml::from_str(text).unwrap();
        let model = &value["models"][0];
        assert_eq!(model["alias"], "fast");
        assert_eq!(model["limits"]["rpm"], 10);
        assert_eq!(model["limits"]["rpd"], 14400, "{text}");
        assert_eq!(value["api_key"], "${GROQ_API_KEY}");
        assert_eq!(value["tier"], "free");
    }

    #[test]
    fn a_load_balanced_group_becomes_a_chain_under_most_headroom() {
        let (plan, report) = plan(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: { model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY }\n  - model_name: gpt-4o\n    litellm_params: { model: openai/gpt-4o, api_base: 'https://eu.example.com/v1', api_key: os.environ/EU_KEY }\n",
        );
        let chains: BTreeMap<String, Vec<String>> =
            serde_yaml::from_str(file(&plan, "fallbacks.yaml")).unwrap();
        assert_eq!(chains["gpt-4o"], ["gpt-4o-example"]);
        assert!(file(&plan, "policies.yaml").contains("gpt-4o: most-headroom"));
        assert_eq!(report.imported, 2);
    }

    #[test]
    fn a_literal_key_is_never_written_and_its_variable_is_named() {
        let (plan, report) = plan(
            "model_list:\n  - model_name: m\n    litellm_params: { model: mistral/mistral-small-latest, api_key: sk-literal-123 }\n",
        );
        let text = file(&plan, "mistral.yaml");
        assert!(!text.contains("sk-literal-123"));
        assert!(text.contains("${MISTRAL_API_KEY}"), "{text}");
        assert!(!report.to_string().contains("sk-literal-123"));
    }

    #[test]
    fn fallbacks_expand_to_every_deployment_and_skip_other_modes_and_unknown_names() {
        let (plan, report) = plan(
            "model_list:\n  - model_name: a\n    litellm_params: { model: groq/llama-3.3-70b-versatile }\n  - model_name: b\n    litellm_params: { model: cerebras/llama3.1-8b }\n  - model_name: b\n    litellm_params: { model: mistral/mistral-small-latest }\n  - model_name: e\n    litellm_params: { model: mistral/mistral-embed }\n    model_info: { mode: embedding }\nrouter_settings:\n  fallbacks: [{a: [b, e, nope]}]\n",
        );
        let chains: BTreeMap<String, Vec<String>> =
            serde_yaml::from_str(file(&plan, "fallbacks.yaml")).unwrap();
        assert_eq!(chains["a"], ["b", "b-mistral"]);
        let text = report.to_string();
        assert!(
            text.contains("`nope` is not an imported model_name"),
            "{text}"
        );
        assert!(text.contains("serves embedding"), "{text}");
    }

    #[test]
    fn a_free_fallback_of_a_paid_model_is_said_to_go_first() {
        let (_, report) = plan(
            "model_list:\n  - model_name: big\n    litellm_params: { model: openai/gpt-4o }\n  - model_name: free\n    litellm_params: { model: groq/llama-3.1-8b-instant }\nrouter_settings:\n  fallbacks: [{big: [free]}]\n",
        );
        let text = report.to_string();
        assert!(
            text.contains("free (free) will be tried before `big` (paid)"),
            "{text}"
        );
    }

    #[test]
    fn the_first_deployment_of_a_name_heads_its_chain_whatever_its_provider() {
        let (plan, _) = plan(
            "model_list:\n  - model_name: a\n    litellm_params: { model: groq/llama-3.1-8b-instant }\n  - model_name: b\n    litellm_params: { model: cerebras/llama3.1-8b }\n  - model_name: b\n    litellm_params: { model: groq/llama-3.3-70b-versatile }\n",
        );
        let chains: BTreeMap<String, Vec<String>> =
            serde_yaml::from_str(file(&plan, "fallbacks.yaml")).unwrap();
        assert_eq!(chains["b"], ["b-groq"]);
        assert!(file(&plan, "policies.yaml").contains("  b: most-headroom"));
    }

    #[test]
    fn litellm_prices_become_per_million_tokens() {
        let (plan, _) = plan(
            "model_list:\n  - model_name: ds\n    litellm_params: { model: deepseek/deepseek-chat, input_cost_per_token: 0.00000027, output_cost_per_token: 0.0000011 }\n",
        );
        let value: Value = serde_yaml::from_str(file(&plan, "deepseek.yaml")).unwrap();
        assert_eq!(
            value["models"][0]["price"]["input_per_mtok"].as_f64(),
            Some(0.27)
        );
        assert_eq!(
            value["models"][0]["price"]["output_per_mtok"].as_f64(),
            Some(1.1)
        );
    }

    #[test]
    fn two_accounts_of_one_provider_are_two_fragments() {
        let (plan, _) = plan(
            "model_list:\n  - model_name: a\n    litellm_params: { model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_ONE }\n  - model_name: b\n    litellm_params: { model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_TWO }\n",
        );
        let second: Value = serde_yaml::from_str(file(&plan, "groq-2.yaml")).unwrap();
        assert_eq!(second["flag"], "GROQ_2");
        assert_eq!(second["api_key"], "${GROQ_TWO}");
    }

    #[test]
    fn an_unmappable_mode_and_a_wildcard_are_reported_not_dropped() {
        let (plan, report) = plan(
            "model_list:\n  - model_name: mod\n    litellm_params: { model: openai/omni-moderation-latest }\n    model_info: { mode: moderation }\n  - model_name: '*'\n    litellm_params: { model: 'openai/*' }\n",
        );
        assert!(plan.files.is_empty());
        assert_eq!(report.imported, 0);
        let text = report.to_string();
        assert!(
            text.contains("mode `moderation`") && text.contains("wildcard"),
            "{text}"
        );
    }
}
