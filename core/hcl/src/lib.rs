//! HCL 1, the configuration language Consul reads (`hashicorp/hcl` v1), parsed into the JSON
//! value Legate's config loader and ACL rules work on. No maintained Rust crate parses HCL 1;
//! HCL 2 parsers (hcl-rs) refuse what Consul users write every day: several attributes on one
//! line (`service { name = "web" port = 80 }`), commas between attributes, and `${...}` that
//! is plain text rather than an expression to evaluate.
//!
//! The grammar: a body is a sequence of items, separated by whitespace, newlines or commas;
//! an item is `key = value` or `key ["label" ...] { body }` (a block); keys and labels are
//! identifiers or quoted strings; values are strings (with `\` escapes; `${...}` kept as text,
//! quotes inside it included), heredocs (`<<EOF` and the indented `<<-EOF`), numbers,
//! `true`/`false`, lists `[a, b,]` (of any values, objects included) and objects `{ body }`.
//! Comments are `#`, `//` and `/* */`. A text that starts with `{` is JSON, as in HCL 1.
//!
//! The value shape is the one HCL's JSON form gives: a block is an object; labels nest
//! (`key "a" { }` is `{"key": {"a": {}}}`), and blocks of one type with different labels
//! share that object; a key given more than once (two `service` blocks) becomes a list of
//! its values in order.
//!
//! The parser is a single pass with one token of lookahead: time linear in the input, and
//! nesting is limited to [`MAX_DEPTH`] levels so that hostile input cannot exhaust the stack.

mod lexer;
mod parser;

pub use parser::from_str;

/// Deepest nesting of blocks, objects and lists accepted.
pub const MAX_DEPTH: usize = 64;

/// Where and why a text is not HCL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("At {line}:{column}: {message}")]
pub struct Error {
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub message: String,
}

#[cfg(test)]
mod tests;
