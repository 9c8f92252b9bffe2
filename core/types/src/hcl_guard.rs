//! A guard before handing untrusted text to the HCL parser (hcl-rs / hcl-edit). Its cost grows
//! with nesting: it recurses once per level, so a few kilobytes of `((((...` overflow the stack
//! and abort the process, and its backtracking grows about 1.5x per level on some inputs (a
//! 4 KB input nesting 27 levels took 5 s in a debug build, 12 s under the fuzzer), both found
//! by the `config` fuzz target. Real configs and ACL rules nest well under ten levels (a
//! service's check headers: five), so text nesting deeper than [`MAX_DEPTH`] is refused
//! before parsing.

/// Deepest nesting HCL text may have: brackets, strings, and `${...}` / `%{...}` template
/// sequences inside strings each count as a level.
pub const MAX_DEPTH: usize = 20;

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    /// `(`, `[` or `{` in an expression.
    Bracket,
    /// A quoted string.
    Str,
    /// A template sequence inside a string: an expression until its `}`.
    Template,
}

/// The deepest nesting of brackets, quoted strings and template sequences, as HCL's lexer
/// sees them: inside a string only `\` escapes, the closing quote and `${` / `%{` matter;
/// inside a template sequence brackets and strings nest again until its `}`.
pub fn nesting_depth(text: &str) -> usize {
    let mut stack: Vec<Frame> = Vec::new();
    let mut max = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if stack.last() == Some(&Frame::Str) {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    stack.pop();
                }
                '$' | '%' if chars.peek() == Some(&'{') => {
                    chars.next();
                    stack.push(Frame::Template);
                }
                _ => {}
            }
        } else {
            match c {
                '"' => stack.push(Frame::Str),
                '(' | '[' | '{' => stack.push(Frame::Bracket),
                ')' | ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
        max = max.max(stack.len());
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
    fn brackets_in_strings_do_not_count_but_templates_do() {
        assert_eq!(nesting_depth(r#"service { name = "((((" meta = { a = "\"{" } }"#), 3);
        assert_eq!(nesting_depth("a = [[[1]]]"), 3);
        assert_eq!(nesting_depth(r#"a = "${ [ "${x}" ] }""#), 5);
        assert!(check(&"(".repeat(MAX_DEPTH + 1)).is_err());
        assert!(check(&"[".repeat(MAX_DEPTH)).is_ok());
        // A string's brackets stay inside it; a template's `}` returns to the string.
        assert_eq!(nesting_depth(r#"x = "a${b}c{[(" y = [1]"#), 2);
    }

    #[test]
    fn real_configs_pass() {
        let service = r#"
service {
  name = "web"
  checks = [
    { http = "http://localhost/health", header = { "X-Env" = ["prod"] }, interval = "10s" }
  ]
  connect { sidecar_service { proxy { upstreams = [ { destination_name = "db", config { x = 1 } } ] } } }
}"#;
        assert!(check(service).is_ok());
        assert!(check(r#"key_prefix "" { policy = "read" } service_prefix "" { policy = "write" }"#).is_ok());
    }
}
