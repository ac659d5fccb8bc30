//! An incremental server-sent-events parser.
//!
//! Upstream bytes arrive in arbitrary pieces: one network read may hold half an
//! event or several. The parser keeps the unfinished tail between calls and
//! yields whole events only, per the WHATWG event-stream rules that matter for
//! LLM APIs (`event:`, `data:` joined by newlines, comments ignored, CRLF or LF).

use crate::alloc_prelude::*;

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty for the default `message` event.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feed it bytes with [`SseParser::push`]; it returns the events they complete.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: String,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns every event they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            let mut line = &self.buffer[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(event) = self.take_line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        events
    }

    /// The stream ended: returns the last event if it lacked its blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            let rest = String::from_utf8_lossy(&core::mem::take(&mut self.buffer)).into_owned();
            if let Some(event) = self.take_line(rest.trim_end_matches('\r')) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn take_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = core::mem::take(&mut self.event);
        self.data.take().map(|data| SseEvent { event, data })
    }
}

/// The `sse` fuzz target's body (`host/fuzz`): the events of a stream do
/// not depend on how the network cut it. The first byte picks the size of
/// the pieces the rest is fed in.
#[doc(hidden)]
pub fn fuzz_pieces(data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let parse = |piece: usize| {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            events.extend(parser.push(chunk));
        }
        events.extend(parser.finish());
        events
    };
    let whole = parse(bytes.len());
    let cut = parse(usize::from(seed % 17) + 1);
    assert_eq!(whole, cut, "the events changed with the cut");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_split_across_pushes_are_joined() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: {\"a\"").is_empty());
        assert_eq!(data(&parser.push(b":1}\n\ndata: [DO")), vec!["{\"a\":1}"]);
        assert_eq!(data(&parser.push(b"NE]\r\n\r\n")), vec!["[DONE]"]);
    }

    #[test]
    fn named_events_multiline_data_and_comments() {
        let mut parser = SseParser::new();
        let events = parser.push(b": keep-alive\nevent: message_start\ndata: a\ndata: b\n\n");
        assert_eq!(
            events,
            vec![SseEvent {
                event: "message_start".into(),
                data: "a\nb".into()
            }]
        );
    }

    #[test]
    fn finish_flushes_an_unterminated_event() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: tail").is_empty());
        assert_eq!(parser.finish().map(|e| e.data), Some("tail".to_owned()));
        assert_eq!(parser.finish(), None);
    }

    /// The `sse` fuzz target's corpus (in `host/fuzz`), replayed whole and
    /// cut: the short run of the fuzzer every `cargo test` makes.
    #[cfg(feature = "std")]
    #[test]
    fn the_fuzz_corpus_parses_the_same_however_it_is_cut() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/fuzz/corpus/sse");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for seed in 0..17u8 {
                let mut input = vec![seed];
                input.extend_from_slice(&bytes);
                fuzz_pieces(&input);
            }
            count += 1;
        }
        assert!(count > 0, "{} is empty", dir.display());
    }
}
