//! Small text helpers shared by the backends: truncating output for display and for the model.

/// At most `max` bytes of `text` (cut on a char boundary), with a marker saying how much was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n[... {} bytes truncated ...]",
        &text[..cut],
        text.len() - cut
    )
}

/// The first line of `text`, at most `max` bytes, for one-line summaries.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut cut = first.len().min(max);
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < first.len() || text.lines().nth(1).is_some() {
        format!("{}…", &first[..cut])
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 3);
        assert!(cut.starts_with('é'));
        assert!(cut.contains("8 bytes truncated"));
    }

    #[test]
    fn one_line_marks_cuts() {
        assert_eq!(one_line("ls -la", 20), "ls -la");
        assert_eq!(one_line("a\nb", 20), "a…");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
