//! The fuzz targets' bodies: every parser that reads bytes a client, a
//! provider or an operator chose. `host/fuzz` runs them under libFuzzer
//! (`just fuzz TARGET`); the tests below replay each target's committed
//! corpus, plus mutations of it, on every `cargo test`.
//!
//! Each function must return for any input, without a panic. Where a
//! parser has a property beyond that, the function asserts it.

use crate::config::Catalog;
use crate::config::env::Env;
use crate::ledger::headers::{MAX_WAIT_MS, RateHeaders};

/// The three inbound request parsers (chat, Anthropic Messages, OpenAI
/// Responses) on one body.
pub fn requests(data: &[u8]) {
    let _ = crate::http::endpoints::chat_inbound(data);
    let _ = crate::http::messages::parse_messages(data);
    let _ = crate::http::responses::parse(data);
}

/// The rate-limit header parser on `name: value` lines. Whatever the
/// provider says, no wait that comes out is longer than a month.
pub fn rate_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let headers: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let parsed = RateHeaders::parse(headers.iter().copied(), 1_790_000_000_000);
    let waits = parsed.reported.iter().filter_map(|r| r.reset_in_ms);
    for ms in waits.chain(parsed.retry_after_ms) {
        assert!(ms <= MAX_WAIT_MS, "a wait of {ms} ms");
    }
}

/// The config parsers: a provider fragment, and `keys.yaml`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Env::from_pairs(&[
        ("GROQ_API_KEY", "gsk-fuzz"),
        ("ALICE_KEY", "tg-alice-0123456789abcdef"),
    ]);
    let _ = Catalog::check_fragment(text, &env);
    let _ = crate::keys::file::parse(text, &env);
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every file of `target`'s corpus.
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Simple mutations of each corpus entry (a byte changed, a cut, a
    /// splice of two entries), from a fixed seed: a short, repeatable run.
    fn mutations(corpus: &[Vec<u8>], rounds: usize) -> Vec<Vec<u8>> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for _ in 0..rounds {
            for entry in corpus {
                let mut m = entry.clone();
                match next() % 3 {
                    0 if !m.is_empty() => {
                        let at = next() as usize % m.len();
                        m[at] = next() as u8;
                    }
                    1 => m.truncate(next() as usize % (m.len() + 1)),
                    _ => {
                        let other = &corpus[next() as usize % corpus.len()];
                        let cut = next() as usize % (other.len() + 1);
                        m.extend_from_slice(&other[cut..]);
                    }
                }
                out.push(m);
            }
        }
        out
    }

    fn replay(target: &str, run: fn(&[u8])) {
        let corpus = corpus(target);
        // About 20,000 mutations in all, however large the corpus grew.
        let rounds = (20_000 / corpus.len()).clamp(1, 20);
        for input in corpus.iter().chain(&mutations(&corpus, rounds)) {
            run(input);
        }
    }

    #[test]
    fn requests_corpus() {
        replay("requests", super::requests);
    }

    #[test]
    fn rate_headers_corpus() {
        replay("rate_headers", super::rate_headers);
    }

    #[test]
    fn config_corpus() {
        replay("config", super::config);
    }
}
