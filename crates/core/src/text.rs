//! Clipping text for messages and summaries. Pure.

/// At most `max` bytes of `s`, cut on a char boundary, with `…` when anything was cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_on_char_boundaries() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("hello world", 5), "hello…");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
