//! How a recorded case's expectations are compared with what a plugin did.
//!
//! An expectation names only what it cares about: an object's fields that
//! a case leaves out are not compared, and a field expected as `null` must
//! be absent (or null). Arrays compare item by item and must be as long.
//! Numbers compare by value (`1` equals `1.0`). Each difference is reported
//! with its JSON path, so a failing case says where, not just that.

use serde_json::Value;

/// Adds one line to `problems` for every place `actual` differs from
/// `expected`, under `path` (`body`, `chunk 2`).
pub fn compare(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want) in want {
                let at = format!("{path}.{key}");
                match got.get(key) {
                    None | Some(Value::Null) if want.is_null() => {}
                    None => problems.push(format!("{at}: missing, expected {}", short(want))),
                    Some(got) if want.is_null() => {
                        problems.push(format!("{at}: expected to be absent, got {}", short(got)));
                    }
                    Some(got) => compare(want, got, &at, problems),
                }
            }
        }
        (Value::Array(want), Value::Array(got)) if want.len() == got.len() => {
            for (i, (want, got)) in want.iter().zip(got).enumerate() {
                compare(want, got, &format!("{path}[{i}]"), problems);
            }
        }
        (Value::Array(want), Value::Array(got)) => problems.push(format!(
            "{path}: expected {} items, got {}: {}",
            want.len(),
            got.len(),
            short(actual)
        )),
        (Value::Number(want), Value::Number(got)) if want.as_f64() == got.as_f64() => {}
        (want, got) if want == got => {}
        (want, got) => problems.push(format!(
            "{path}: expected {}, got {}",
            short(want),
            short(got)
        )),
    }
}

/// A value as compact JSON, cut to a line's length.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(expected: Value, actual: Value) -> Vec<String> {
        let mut found = Vec::new();
        compare(&expected, &actual, "body", &mut found);
        found
    }

    #[test]
    fn fields_left_out_are_not_compared() {
        assert!(problems(json!({"a": 1}), json!({"a": 1.0, "b": 2})).is_empty());
        assert!(problems(json!({"a": null}), json!({"b": 2})).is_empty());
    }

    #[test]
    fn each_difference_names_its_path() {
        let found = problems(
            json!({"choices": [{"delta": {"content": "Hel"}}], "gone": null, "here": 1}),
            json!({"choices": [{"delta": {"content": "Help"}}], "gone": true}),
        );
        assert_eq!(
            found,
            [
                r#"body.choices[0].delta.content: expected "Hel", got "Help""#,
                "body.gone: expected to be absent, got true",
                "body.here: missing, expected 1",
            ]
        );
        assert_eq!(
            problems(json!([1, 2]), json!([1])),
            ["body: expected 2 items, got 1: [1]"]
        );
        assert_eq!(
            problems(json!("a"), json!({"a": 1})),
            [r#"body: expected "a", got {"a":1}"#]
        );
    }
}
