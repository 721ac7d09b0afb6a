//! Errors in configuration files (scenarios, deployment files): every one
//! names the file, and the line when the problem is tied to a place in it
//! (syntax, unknown or missing keys, bad values). Cross-reference errors
//! name the item instead.

use std::fmt;

/// A configuration file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file (or whatever name the text was given).
    pub origin: String,
    /// 1-based line, when the problem sits on one.
    pub line: Option<usize>,
    pub message: String,
}

impl FileError {
    pub fn at_line(origin: &str, line: usize, message: String) -> Self {
        FileError { origin: origin.to_string(), line: Some(line), message }
    }

    pub fn item(origin: &str, message: String) -> Self {
        FileError { origin: origin.to_string(), line: None, message }
    }

    /// Translates a TOML/serde error: the byte span becomes a line, and
    /// serde's "unknown field `x`" / "missing field `x`" become messages in
    /// the file's own vocabulary, naming the table they were found in.
    pub fn from_toml(origin: &str, text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_string();
        let Some(span) = error.span() else { return FileError::item(origin, message) };
        let offset = span.start.min(text.len());
        let line = line_of(text, offset);
        let section = section_at(text, offset);
        // Where the value sits: "engine", "[[vm]] disks", or "[[vm]]".
        let place = match (key_at(text, offset), section.as_str()) {
            (Some(key), "the top level") => key.to_string(),
            (Some(key), section) => format!("{section} {key}"),
            (None, section) => section.to_string(),
        };
        let message = if let Some(key) = quoted_after(&message, "unknown field `") {
            format!("unknown key {key:?} in {section}")
        } else if let Some(key) = quoted_after(&message, "missing field `") {
            format!("missing key {key:?} in {section}")
        } else if let Some(variant) = quoted_after(&message, "unknown variant `") {
            let expected = message.split_once(", expected").map(|(_, e)| format!(" (expected{e})")).unwrap_or_default();
            format!("invalid value {variant:?} for {place}{expected}")
        } else {
            format!("{place}: {message}")
        };
        FileError::at_line(origin, line, message)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The text between `prefix` and the next backquote, if `message` has it.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split_once('`').map(|(key, _)| key)
}

/// The table header governing `offset` ("[[vm]]", "[manager]", or "the top
/// level"), with the inline table's key when the offset is inside one on the
/// same line ("[[vm]] workload").
fn section_at(text: &str, offset: usize) -> String {
    // Up to the end of the offset's line: a missing-key error points at the
    // header of the table that lacks the key.
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = text[..line_end].lines().rev().find_map(header_of).unwrap_or("the top level");
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let on_line = &text[line_start..offset];
    match on_line.rfind('{').map(|brace| on_line[..brace].trim_end()) {
        Some(lhs) if lhs.ends_with('=') => {
            let key = lhs.trim_end_matches('=').trim();
            let key = key.rsplit(['{', ',']).next().unwrap_or(key).trim();
            format!("{header} {key}")
        }
        _ => header.to_string(),
    }
}

/// The key whose value starts at `offset`, when it is written on the same
/// line (`key = value`, or `key = value` inside an inline table).
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let lhs = text[line_start..offset].trim_end().strip_suffix('=')?;
    let key = lhs.rsplit(['{', ',']).next()?.trim();
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    bare.then_some(key)
}

/// `[[name]]` or `[name]` if the line is a table header.
fn header_of(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = line.split_once('#').map_or(line, |(code, _)| code).trim_end();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(inner);
    let bare = !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '"' | '\''));
    bare.then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_found_from_headers() {
        let text = "name = \"x\"\n[[vm]]\nname = \"a\"\nworkload = { writes = 3 }\ndisks = [\n  [1],\n]\n";
        assert_eq!(section_at(text, 3), "the top level");
        let at = text.find("name = \"a\"").unwrap();
        assert_eq!(section_at(text, at), "[[vm]]");
        let at = text.find("writes").unwrap();
        assert_eq!(section_at(text, at), "[[vm]] workload");
        let at = text.find("[1]").unwrap() + 1;
        assert_eq!(section_at(text, at), "[[vm]]");
        assert_eq!(line_of(text, at), 6);
    }

    #[test]
    fn display_with_and_without_line() {
        let e = FileError::at_line("scenarios/x.toml", 12, "unknown key \"foo\" in [[vm]]".into());
        assert_eq!(e.to_string(), "scenarios/x.toml:12: unknown key \"foo\" in [[vm]]");
        let e = FileError::item("scenarios/x.toml", "job \"backup-db\" names unknown repository \"repo-x\"".into());
        assert_eq!(e.to_string(), "scenarios/x.toml: job \"backup-db\" names unknown repository \"repo-x\"");
    }
}
