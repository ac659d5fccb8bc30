//! The counters one candidate of one route touches on every answer it
//! serves, looked up in their families once (on its first answer) and kept
//! in the route table: a served request then costs a few atomic adds
//! rather than a hashed lookup per counter. Answers that did not go well
//! are rarer and look theirs up each time ([`unserved`]).

use super::{ModelLabel, Outcome, RequestLabels, ServedLabel, TokenLabels, global};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The meters of answers `served_by` gives to requests for `model`.
#[derive(Debug)]
pub struct Served {
    model: Arc<str>,
    served_by: Arc<str>,
    handles: OnceLock<Handles>,
}

#[derive(Debug)]
struct Handles {
    ok: Counter,
    prompt: Counter,
    completion: Counter,
    duration: Histogram,
    first_token: Histogram,
}

impl Served {
    pub fn new(model: &str, served_by: &str) -> Self {
        Served {
            model: model.into(),
            served_by: served_by.into(),
            handles: OnceLock::new(),
        }
    }

    pub fn served_by(&self) -> &Arc<str> {
        &self.served_by
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| {
            let metrics = global();
            let tokens = |direction| {
                metrics.tokens.get_or_create_owned(&TokenLabels {
                    served_by: self.served_by.clone(),
                    direction,
                })
            };
            Handles {
                ok: metrics.requests.get_or_create_owned(&RequestLabels {
                    model: self.model.clone(),
                    served_by: self.served_by.clone(),
                    outcome: Outcome::Ok,
                }),
                prompt: tokens("prompt"),
                completion: tokens("completion"),
                duration: metrics.duration.get_or_create_owned(&ModelLabel {
                    model: self.model.clone(),
                }),
                first_token: metrics.first_token.get_or_create_owned(&ServedLabel {
                    served_by: self.served_by.clone(),
                }),
            }
        })
    }

    /// Counts one answer this candidate gave, however it ended.
    pub fn answered(
        &self,
        outcome: Outcome,
        duration: Duration,
        first_token: Option<Duration>,
        usage: Option<(u64, u64)>,
    ) {
        let handles = self.handles();
        if outcome == Outcome::Ok {
            handles.ok.inc();
        } else {
            count(&self.model, &self.served_by, outcome);
        }
        handles.duration.observe(duration.as_secs_f64());
        if let Some(first) = first_token {
            handles.first_token.observe(first.as_secs_f64());
        }
        if let Some((prompt, completion)) = usage {
            handles.prompt.inc_by(prompt);
            handles.completion.inc_by(completion);
        }
    }
}

/// Counts a request no candidate answered: `model` is the alias asked for
/// when the gateway serves it, `None` when the client named another.
pub fn unserved(model: Option<&Arc<str>>, outcome: Outcome, duration: Duration) {
    let none: Arc<str> = Arc::from("");
    let Some(model) = model else {
        return count(&none, &none, outcome);
    };
    count(model, &none, outcome);
    global()
        .duration
        .get_or_create(&ModelLabel {
            model: model.clone(),
        })
        .observe(duration.as_secs_f64());
}

fn count(model: &Arc<str>, served_by: &Arc<str>, outcome: Outcome) {
    global()
        .requests
        .get_or_create(&RequestLabels {
            model: model.clone(),
            served_by: served_by.clone(),
            outcome,
        })
        .inc();
}
