//! Where a key is written in `edgeseal.yaml`: a key path such as `services.a.selectors.unix` to the
//! line and column of that key (pure). Used for errors found once the whole file is parsed (rules that
//! involve several keys or sections), which serde cannot place.
//!
//! Block mappings are followed key by key through their indentation; inside a flow mapping
//! (`unix: { uid: 998 }`) the key is looked up on the same line. A key that cannot be found — not
//! written (a default), or in a layout this scanner does not follow — falls back to the deepest
//! enclosing key that was found, so the operator is sent to the right section at least.

/// A position in the configuration text, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
}

impl Location {
    /// The start of the file: where an error about a key that is not written at all points.
    pub const START: Location = Location { line: 1, column: 1 };
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The lines of `text` as YAML counts them: CR LF, LF and a lone CR end a line.
fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\n', '\r']) {
        out.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

/// The location of `key_path` (dot-separated keys) in `text`, or of the deepest enclosing key found;
/// `None` when not even the first key is written.
pub fn locate(text: &str, key_path: &str) -> Option<Location> {
    let lines = lines(text);
    let mut found: Option<Location> = None;
    // The block being searched: lines after `start` indented deeper than `parent_indent`.
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    // Once a key is found inside a flow mapping, deeper keys are searched on that line only.
    let mut flow = false;
    for key in key_path.split('.') {
        if !flow {
            if let Some((index, indent)) = block_key(&lines, start, parent_indent, key) {
                found = Some(Location { line: index + 1, column: indent + 1 });
                start = index + 1;
                parent_indent = Some(indent);
                continue;
            }
        }
        let at = found?;
        match flow_key(lines[at.line - 1], at.column - 1, key) {
            Some(column) => {
                found = Some(Location { line: at.line, column: column + 1 });
                flow = true;
            }
            None => return found,
        }
    }
    found
}

/// The line index and indentation of `key` among the direct children of the block starting at `start`.
fn block_key(lines: &[&str], start: usize, parent_indent: Option<usize>, key: &str) -> Option<(usize, usize)> {
    let mut child_indent = None;
    for (index, line) in lines.iter().enumerate().skip(start) {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") || trimmed.starts_with("...") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|parent| indent <= parent) {
            return None;
        }
        let children = *child_indent.get_or_insert(indent);
        if indent == children && key_of(trimmed) == Some(key) {
            return Some((index, indent));
        }
    }
    None
}

/// The key a block-mapping line starts with (`key:`, `"key":`, `'key':`).
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with("- ") || line == "-" || line.starts_with(['{', '[', '&', '*', '!', '|', '>']) {
        return None;
    }
    let (key, rest) = match line.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = line[1..].find(quote)? + 1;
            (&line[1..end], &line[end + 1..])
        }
        _ => {
            let end = line.find(':')?;
            (line[..end].trim_end(), &line[end..])
        }
    };
    let after = rest.trim_start().strip_prefix(':')?;
    (after.is_empty() || after.starts_with([' ', '\t'])).then_some(key)
}

/// The byte column of `key` written as a flow-mapping key on `line` after byte `from`.
fn flow_key(line: &str, from: usize, key: &str) -> Option<usize> {
    let mut search = from;
    while let Some(i) = line.get(search..)?.find(key) {
        let at = search + i;
        let before = line[..at].chars().next_back();
        let quoted = matches!(before, Some('"' | '\''));
        let key_start = if quoted { at - 1 } else { at };
        let preceded = line[..key_start].trim_end().ends_with(['{', ',']);
        let mut after = &line[at + key.len()..];
        if quoted {
            after = after.strip_prefix(['"', '\'']).unwrap_or("\u{0}");
        }
        if preceded && after.trim_start().starts_with(':') {
            return Some(key_start);
        }
        search = at + key.len();
    }
    None
}

/// Keeps a parser's location inside the text: for a file without a final line break, the YAML
/// scanner reports errors at the end of the file one line past the last one.
pub fn clamp(text: &str, location: Location) -> Location {
    let lines = lines(text);
    let last = lines.len().max(1);
    if location.line <= last {
        return Location { line: location.line.max(1), column: location.column.max(1) };
    }
    let end = lines.last().map_or(0, |l| l.chars().count());
    Location { line: last, column: end + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_through_blocks_and_flow_mappings() {
        let text = "\
# edgeseal
secret_store:
  address: https://127.0.0.1:8200
  server_cert: ca-only
services:
  a:
    selectors:
      unix: { uid: 998, path: /usr/bin/a }
  \"b\":
    selectors: { docker: {}, unix: {uid: 1} }
    secrets: [x]
token_server:
  max_connections: 0
";
        let cases: &[(&str, Option<(usize, usize)>)] = &[
            ("secret_store", Some((2, 1))),
            ("secret_store.server_cert", Some((4, 3))),
            ("services.a.selectors.unix", Some((8, 7))),
            ("services.a.selectors.unix.uid", Some((8, 15))),
            ("services.a.selectors.unix.path", Some((8, 25))),
            ("services.b", Some((9, 3))),
            ("services.b.selectors.docker", Some((10, 18))),
            ("services.b.selectors.unix.uid", Some((10, 37))),
            ("services.b.secrets", Some((11, 5))),
            ("token_server.max_connections", Some((13, 3))),
            // Not written: the deepest enclosing key.
            ("token_server.rate_burst", Some((12, 1))),
            ("services.a.selectors.docker", Some((7, 5))),
            ("services.c.selectors", Some((5, 1))),
            ("pki.certs.openbao", None),
            // A key of the same name in another section is not taken.
            ("secret_store.selectors", Some((2, 1))),
            ("address", None),
        ];
        for (path, want) in cases {
            let got = locate(text, path).map(|l| (l.line, l.column));
            assert_eq!(got, *want, "{path}");
        }
    }

    #[test]
    fn a_top_level_flow_mapping_falls_back_to_nothing_and_a_section_in_flow_style_to_its_line() {
        assert_eq!(locate("{services: {a: {}}}\n", "services.a"), None);
        let text = "pki: { certs: { rogue: { sans: [127.0.0.1] } } }\n";
        assert_eq!(locate(text, "pki.certs.rogue.sans"), Some(Location { line: 1, column: 26 }));
        assert_eq!(locate(text, "pki.dir"), Some(Location { line: 1, column: 1 }));
    }

    #[test]
    fn line_breaks_are_counted_as_yaml_counts_them() {
        assert_eq!(locate("a: 1\r\nb:\r  c: 2", "b.c"), Some(Location { line: 3, column: 3 }));
        assert_eq!(locate("a: 1\n\n\nb: 2", "b"), Some(Location { line: 4, column: 1 }));
    }

    #[test]
    fn a_key_must_be_followed_by_a_colon() {
        let cases = [
            ("a: 1", Some("a")),
            ("a:", Some("a")),
            ("\"a b\": 1", Some("a b")),
            ("'x': 1", Some("x")),
            ("a:b", None),
            ("http://x: 1", None),
            ("- a: 1", None),
            ("plain", None),
            ("{ sans: [] }", None),
        ];
        for (line, want) in cases {
            assert_eq!(key_of(line), want, "{line}");
        }
    }

    #[test]
    fn locations_past_the_end_are_clamped_to_the_last_line() {
        let at = |line, column| Location { line, column };
        let cases = [
            ("a: 1\nb: [", at(3, 1), at(2, 5)),
            ("a: 1\nb: [\n", at(3, 1), at(2, 5)),
            ("a: 1", at(2, 1), at(1, 5)),
            ("", at(2, 1), at(1, 1)),
            ("a: 1\nb: 2\n", at(2, 3), at(2, 3)),
            ("a: 1\r\nb", at(0, 0), at(1, 1)),
        ];
        for (text, given, want) in cases {
            assert_eq!(clamp(text, given), want, "{text:?} {given}");
        }
    }
}
