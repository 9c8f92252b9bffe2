//! A guard before handing untrusted text to the HCL parser (hcl-rs): it recurses once per
//! nested bracket, so a few kilobytes of `((((...` overflow the stack and abort the process
//! (found by the `config` fuzz target). Real configs and ACL rules nest a handful of levels.

/// Deepest nesting HCL text may have.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting of `(`, `[` and `{` outside double-quoted strings.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Err with a reason when `text` nests deeper than [`MAX_DEPTH`].
pub fn check(text: &str) -> Result<(), String> {
    let depth = nesting_depth(text);
    if depth > MAX_DEPTH {
        return Err(format!("nesting {depth} levels deep (at most {MAX_DEPTH} are accepted)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert_eq!(nesting_depth(r#"service { name = "((((" meta = { a = "\"{" } }"#), 2);
        assert_eq!(nesting_depth("a = [[[1]]]"), 3);
        assert!(check(&"(".repeat(65)).is_err());
        assert!(check(&"[".repeat(64)).is_ok());
    }
}
