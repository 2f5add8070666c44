//! Small edits of a user's YAML text that keep everything else byte for byte: comments, order,
//! quoting, blank lines. Only block style is edited; a flow collection on the way (`{…}`,
//! `[a, b]`) is refused with a message, since rewriting it would lose the user's layout.
//! (`[]` and `{}` are empty and are replaced.) The caller re-parses the result.

/// Appends `item` (one line of YAML: a scalar or a flow mapping) to the block sequence at
/// `path` (e.g. `["mirroring", "sources", "git"]`), creating missing keys on the way.
pub fn append_to_list(text: &str, path: &[&str], item: &str) -> Result<String, String> {
    if path.is_empty() || item.contains('\n') {
        return Err("append_to_list needs a path and a one-line item".to_owned());
    }
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if let Some(last) = lines.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    // The block being searched: lines [start, end) whose keys sit at `indent`.
    let (mut start, mut end, mut indent) = (0usize, lines.len(), 0usize);
    for (depth, key) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let found = (start..end).find(|&i| {
            let l = &lines[i];
            indent_of(l) == indent
                && l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|r| r.starts_with(':'))
        });
        let i = match found {
            Some(i) => i,
            None => {
                // Insert `key:` at the end of the block (before its trailing blank lines).
                let mut at = end;
                while at > start && lines[at - 1].trim().is_empty() {
                    at -= 1;
                }
                lines.insert(at, format!("{}{key}:\n", " ".repeat(indent)));
                at
            }
        };
        let line = lines[i].clone();
        let after = line.trim_start()[key.len() + 1..].trim_end_matches(['\n', '\r']);
        let value = strip_comment(after).trim();
        match value {
            "" => {}
            "[]" | "{}" => {
                lines[i] = format!("{}{key}:\n", " ".repeat(indent));
            }
            _ => {
                return Err(format!(
                    "`{}` is written on one line (`{}`); write it as an indented block to let autogit add to it, or edit it by hand",
                    path[..=depth].join("."),
                    value
                ));
            }
        }
        // The child block: following lines more indented than the key, or blank/comments.
        let mut j = i + 1;
        let mut child_indent = None;
        while j < lines.len() {
            let l = &lines[j];
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                j += 1;
                continue;
            }
            let ind = indent_of(l);
            // A sequence may sit at the key's own indentation (`key:\n- item`).
            let same_level_item = last && ind == indent && t.starts_with("- ");
            if ind <= indent && !same_level_item {
                break;
            }
            child_indent.get_or_insert(ind);
            j += 1;
        }
        // Trailing blank lines and comments belong to what follows.
        let mut block_end = j;
        while block_end > i + 1 && {
            let t = lines[block_end - 1].trim();
            t.is_empty() || t.starts_with('#')
        } {
            block_end -= 1;
        }
        if last {
            let items_indent = child_indent.unwrap_or(indent + 2);
            if let Some(first) = (i + 1..block_end).find(|&k| {
                let t = lines[k].trim();
                !t.is_empty() && !t.starts_with('#')
            }) && !lines[first].trim_start().starts_with("- ")
            {
                return Err(format!(
                    "`{}` is a single mapping, not a list; make it a list (`- …`) to add another",
                    path.join(".")
                ));
            }
            lines.insert(block_end, format!("{}- {item}\n", " ".repeat(items_indent)));
            return Ok(lines.concat());
        }
        if let Some(first) = (i + 1..block_end).find(|&k| {
            let t = lines[k].trim();
            !t.is_empty() && !t.starts_with('#')
        }) && lines[first].trim_start().starts_with("- ")
        {
            return Err(format!(
                "`{}` is a list, not a mapping",
                path[..=depth].join(".")
            ));
        }
        start = i + 1;
        end = block_end;
        indent = child_indent.unwrap_or(indent + 2);
    }
    unreachable!("the loop returns at the last path element")
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `value  # comment` → `value` (a `#` after whitespace starts a comment outside quotes).
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return &s[..i];
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(text: &str) -> Result<String, String> {
        append_to_list(
            text,
            &["mirroring", "sources", "git"],
            "https://example.com/a.git",
        )
    }

    #[test]
    fn appends_keeping_everything_else() {
        let cases = [
            (
                "# top\nmirroring:\n  enabled: true  # on\n  sources:\n    git:\n      - https://x/1.git   # first\n\n# after\nrunners: {}\n",
                "# top\nmirroring:\n  enabled: true  # on\n  sources:\n    git:\n      - https://x/1.git   # first\n      - https://example.com/a.git\n\n# after\nrunners: {}\n",
            ),
            (
                "mirroring:\n    sources:\n        git:\n        - https://x/1.git\n",
                "mirroring:\n    sources:\n        git:\n        - https://x/1.git\n        - https://example.com/a.git\n",
            ),
            (
                "mirroring:\n  enabled: true\n",
                "mirroring:\n  enabled: true\n  sources:\n    git:\n      - https://example.com/a.git\n",
            ),
            (
                "",
                "mirroring:\n  sources:\n    git:\n      - https://example.com/a.git\n",
            ),
            (
                "gitlab: {}\nmirroring:\n  sources:\n    git: []\nbackup: {retention: 3}",
                "gitlab: {}\nmirroring:\n  sources:\n    git:\n      - https://example.com/a.git\nbackup: {retention: 3}\n",
            ),
            (
                "mirroring:\n  sources:\n    github:\n      - {username: me}\n  schedule: \"0 * * * *\"\n",
                "mirroring:\n  sources:\n    github:\n      - {username: me}\n    git:\n      - https://example.com/a.git\n  schedule: \"0 * * * *\"\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(git(input).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_edit_in_place() {
        for (input, why) in [
            ("mirroring: {sources: {git: [a]}}\n", "written on one line"),
            (
                "mirroring:\n  sources:\n    git: [https://x/1.git]\n",
                "written on one line",
            ),
            (
                "mirroring:\n  sources:\n    - a\n",
                "is a list, not a mapping",
            ),
        ] {
            let e = git(input).unwrap_err();
            assert!(e.contains(why), "{input:?}: {e}");
        }
        let e = append_to_list(
            "mirroring:\n  sources:\n    github:\n      username: me\n",
            &["mirroring", "sources", "github"],
            "{username: you}",
        )
        .unwrap_err();
        assert!(e.contains("single mapping"), "{e}");
    }

    #[test]
    fn comments_with_hashes_in_quotes() {
        assert_eq!(strip_comment("\"a # b\" # c"), "\"a # b\" ");
        assert_eq!(strip_comment("a#b"), "a#b");
    }
}
