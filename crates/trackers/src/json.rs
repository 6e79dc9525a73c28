//! Small readers of vendor JSON shared by the REST clients and their webhook readers: a field
//! by path, an id as text, a body holding a marker, a 404 named as what was not found.

use serde_json::Value;

use crate::Error;
use crate::webhook::Hint;

/// The string at `path`, if there is one.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// The value at `path`, `None` for a missing field or `null`.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

/// Whether an item's `body` holds the hidden marker `hidden`.
pub(crate) fn body_has(item: &Value, hidden: &str) -> bool {
    str_at(item, &["body"]).is_some_and(|b| b.contains(hidden))
}

/// An id as text, whether the vendor sends a number or a string.
pub(crate) fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A 404 as [`Error::NotFound`] with `message`; other errors unchanged.
pub(crate) fn not_found(e: Error, message: impl FnOnce() -> String) -> Error {
    match e {
        Error::Status { status: 404, .. } => Error::NotFound(message()),
        other => other,
    }
}

/// A delivery codemill has no use for, and why.
pub(crate) fn ignored(reason: impl Into<String>) -> Hint {
    Hint::Ignored {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_ids_and_markers() {
        let v = json!({"a": {"b": "x", "n": null}, "id": 7, "body": "hi <!-- m -->"});
        assert_eq!(str_at(&v, &["a", "b"]), Some("x"));
        assert!(at(&v, &["a", "n"]).is_none());
        assert_eq!(id_string(&v["id"]), "7");
        assert_eq!(id_string(&json!("s1")), "s1");
        assert!(body_has(&v, "<!-- m -->"));
    }
}
