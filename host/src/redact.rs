//! Keeps API keys out of anything shown to clients or written to logs.
//!
//! Upstreams sometimes echo the key they were sent ("Incorrect API key
//! provided: gsk_…"), and transport errors can carry URLs with a key in the
//! query. Every such text passes through [`Redactor::scrub`] first.

/// Replaces every known secret with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Shorter values are not scrubbed: they would mangle ordinary words.
const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a key containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_occurrence_of_every_key() {
        let redactor = Redactor::new(["gsk_abcdef".to_owned(), "sk-1234567".to_owned()]);
        assert_eq!(
            redactor.scrub("bad key gsk_abcdef; also sk-1234567 and gsk_abcdef"),
            "bad key ***; also *** and ***"
        );
        assert_eq!(redactor.scrub("nothing here"), "nothing here");
    }
}
