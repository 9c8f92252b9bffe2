//! legate-filter: `?filter=` expressions: Consul's boolean filter language (the go-bexpr grammar), evaluated
//! against the JSON objects an endpoint would answer with.
//!
//! # Language
//!
//! ```text
//! expr     := or
//! or       := and ("or" and)*
//! and      := unary ("and" unary)*
//! unary    := "not" unary | "(" expr ")" | match
//! match    := selector "==" value          | selector "!=" value
//!           | selector "is" "empty"        | selector "is" "not" "empty"
//!           | value "in" selector          | value "not" "in" selector
//!           | selector "contains" value    | selector "not" "contains" value
//!           | selector "matches" value     | selector "not" "matches" value
//! selector := ident ( "." ident | "." "[" string "]" | "[" string "]" )*
//! value    := string | number | "true" | "false"
//! string   := "..." (Go-style escapes) | `...` (raw, no escapes)
//! ident    := [A-Za-z_][A-Za-z0-9_]*
//! ```
//!
//! Precedence is `not` > `and` > `or`; keywords are lower-case.
//!
//! # Semantics
//!
//! Every value is kept as text and compared against the selected JSON value by that value's type,
//! as bexpr coerces a literal to the field's type: a JSON number compares numerically (`80`,
//! `"80"` and `80.0` all equal `80`), a JSON bool compares with Go's `ParseBool` spellings
//! (`true`, `"true"`, `"1"`, `"T"`...), a string compares exactly.
//!
//! * `==` / `!=`: scalar equality; on an array, `==` holds if any element is equal (and `!=` is
//!   its negation: no element is equal). Objects and `null` are never equal to anything.
//! * `in` / `contains` (the same test, operands swapped): on an array, membership; on an object,
//!   key presence (exact key); on a string, substring.
//! * `matches`: the regular expression (Rust `regex` syntax, close to Go's RE2) is searched in a
//!   string, or in the text of a number or bool; on an array, any element matching is enough.
//! * `is empty`: missing, `null`, `""`, `[]` or `{}`.
//! * A missing field: `==`, `in`, `contains`, `matches` are false, their negations true, and
//!   `is empty` is true.
//!
//! Field names in dotted form (`Service.Tags`) match case-sensitively first and then
//! case-insensitively (ASCII) as a fallback; the index form `Meta["key"]` matches the key exactly
//! and allows any characters in it.
//!
//! Selecting through an array of objects (`Checks.Status`, where `Checks` is an array) collects
//! the field from every element (elements lacking it are skipped). Over such a collection,
//! `"passing" in Checks.Status` is membership in the collected values (array values are
//! flattened, object values test key presence); `==` and `matches` hold if any collected value
//! satisfies them; `is empty` holds if every collected value is empty (or none was found).
//!
//! # Deviations from go-bexpr
//!
//! bexpr type-checks a filter against the Go structure of the answer and refuses, when the
//! evaluator is created, selectors that do not exist or operators the field type does not
//! support (e.g. `==` on a slice). Here the JSON shape is only known at evaluation time, so those
//! cases never fail: unknown fields behave as missing, and unsupported operator/type pairs are
//! simply false (their negated forms true). `==` on an array and selecting through arrays with
//! `==`/`matches` are extensions ("any element"). The case-insensitive fallback also applies to
//! map keys written in dotted form.

use std::fmt;

use regex::Regex;
use serde_json::{Map, Value};

/// Nesting allowed for parentheses and `not` before the parser gives up.
const MAX_DEPTH: usize = 256;
/// Compiled-size limit for a `matches` regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 21;

/// Why a filter expression could not be parsed. `Display` gives the text Consul answers in its
/// HTTP 400 body: `Failed to create boolean expression evaluator: <line>:<col> (<offset>): ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The expression is not well-formed.
    #[error("Failed to create boolean expression evaluator: {line}:{column} ({offset}): {message}")]
    Syntax {
        /// Byte offset into the expression.
        offset: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        message: String,
    },
    /// A `matches` operand is not a valid regular expression.
    #[error("Failed to create boolean expression evaluator: {line}:{column} ({offset}): invalid regular expression {pattern:?}: {reason}")]
    InvalidRegex { offset: usize, line: usize, column: usize, pattern: String, reason: String },
}

impl FilterError {
    fn syntax(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(src, offset);
        FilterError::Syntax { offset, line, column, message: message.into() }
    }

    /// Byte offset into the expression where the problem was found.
    pub fn offset(&self) -> usize {
        match self {
            FilterError::Syntax { offset, .. } | FilterError::InvalidRegex { offset, .. } => *offset,
        }
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let upto = src.get(..offset).unwrap_or(src);
    let line = upto.matches('\n').count() + 1;
    let column = upto.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// A parsed filter expression, ready to be evaluated against any number of JSON values.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses `expr`; every syntax problem and every invalid regular expression is reported here.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let tokens = lex(expr)?;
        let mut p = Parser { src: expr, tokens, pos: 0, depth: 0 };
        let parsed = p.parse_or()?;
        let t = p.peek();
        if t.tok != Tok::Eof {
            return Err(p.error_at(
                t.pos,
                format!("unexpected {} after a complete expression, expected \"and\", \"or\" or end of input", t.tok),
            ));
        }
        Ok(Filter { expr: parsed })
    }

    /// Whether `v` passes the filter.
    pub fn matches(&self, v: &Value) -> bool {
        self.expr.eval(v)
    }
}

/// Convenience: `None` or an empty (all-whitespace) expression keeps every item; otherwise the
/// items the expression matches, in order, or the parse error.
pub fn apply(expr: Option<&str>, items: Vec<Value>) -> Result<Vec<Value>, FilterError> {
    let Some(expr) = expr.filter(|e| !e.trim().is_empty()) else {
        return Ok(items);
    };
    let filter = Filter::parse(expr)?;
    Ok(items.into_iter().filter(|v| filter.matches(v)).collect())
}

// ---------------------------------------------------------------------------------------------
// AST and evaluation

#[derive(Debug, Clone)]
enum Expr {
    /// n-ary so long `a or b or c ...` chains do not nest (no deep recursion).
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Matcher),
}

#[derive(Debug, Clone)]
struct Matcher {
    selector: Vec<Segment>,
    op: Op,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    /// Written as `["name"]`: no case-insensitive fallback.
    exact: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    IsEmpty,
    IsNotEmpty,
    /// `"v" in Sel` and `Sel contains "v"`.
    Contains(String),
    NotContains(String),
    Matches(Regex),
    NotMatches(Regex),
}

impl Expr {
    fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::Or(xs) => xs.iter().any(|x| x.eval(v)),
            Expr::And(xs) => xs.iter().all(|x| x.eval(v)),
            Expr::Not(x) => !x.eval(v),
            Expr::Match(m) => m.eval(v),
        }
    }
}

/// What a selector found.
enum Selected<'a> {
    Missing,
    One(&'a Value),
    /// The path went through at least one array: the values found under every element.
    Many(Vec<&'a Value>),
}

impl Matcher {
    fn eval(&self, root: &Value) -> bool {
        let sel = select(root, &self.selector);
        match &self.op {
            Op::Equal(s) => equal(&sel, s),
            Op::NotEqual(s) => !equal(&sel, s),
            Op::IsEmpty => empty(&sel),
            Op::IsNotEmpty => !empty(&sel),
            Op::Contains(s) => contains(&sel, s),
            Op::NotContains(s) => !contains(&sel, s),
            Op::Matches(re) => regex_match(&sel, re),
            Op::NotMatches(re) => !regex_match(&sel, re),
        }
    }
}

fn select<'a>(root: &'a Value, segments: &[Segment]) -> Selected<'a> {
    let mut current = vec![root];
    let mut collected = false;
    for seg in segments {
        let mut next = Vec::new();
        for v in current {
            step(v, seg, &mut next, &mut collected);
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    if collected {
        Selected::Many(current)
    } else if current.len() == 1 {
        Selected::One(current[0])
    } else {
        Selected::Missing
    }
}

fn step<'a>(v: &'a Value, seg: &Segment, out: &mut Vec<&'a Value>, collected: &mut bool) {
    match v {
        Value::Object(map) => {
            if let Some(found) = lookup(map, &seg.name, seg.exact) {
                out.push(found);
            }
        }
        Value::Array(items) => {
            *collected = true;
            for item in items {
                step(item, seg, out, collected);
            }
        }
        _ => {}
    }
}

fn lookup<'a>(map: &'a Map<String, Value>, key: &str, exact: bool) -> Option<&'a Value> {
    if let Some(v) = map.get(key) {
        return Some(v);
    }
    if exact {
        return None;
    }
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn equal(sel: &Selected, want: &str) -> bool {
    fn one(v: &Value, want: &str) -> bool {
        match v {
            Value::Array(items) => items.iter().any(|i| scalar_eq(i, want)),
            other => scalar_eq(other, want),
        }
    }
    match sel {
        Selected::Missing => false,
        Selected::One(v) => one(v, want),
        Selected::Many(vs) => vs.iter().any(|v| one(v, want)),
    }
}

fn empty(sel: &Selected) -> bool {
    fn one(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Number(_) | Value::Bool(_) => false,
        }
    }
    match sel {
        Selected::Missing => true,
        Selected::One(v) => one(v),
        Selected::Many(vs) => vs.iter().all(|v| one(v)),
    }
}

fn contains(sel: &Selected, needle: &str) -> bool {
    match sel {
        Selected::Missing => false,
        Selected::One(v) => match v {
            Value::String(s) => s.contains(needle),
            Value::Array(items) => items.iter().any(|i| scalar_eq(i, needle)),
            Value::Object(map) => map.contains_key(needle),
            Value::Null | Value::Number(_) | Value::Bool(_) => false,
        },
        Selected::Many(vs) => vs.iter().any(|v| match v {
            Value::Array(items) => items.iter().any(|i| scalar_eq(i, needle)),
            Value::Object(map) => map.contains_key(needle),
            other => scalar_eq(other, needle),
        }),
    }
}

fn regex_match(sel: &Selected, re: &Regex) -> bool {
    fn scalar(v: &Value, re: &Regex) -> bool {
        match v {
            Value::String(s) => re.is_match(s),
            Value::Number(n) => re.is_match(&n.to_string()),
            Value::Bool(b) => re.is_match(if *b { "true" } else { "false" }),
            Value::Null | Value::Array(_) | Value::Object(_) => false,
        }
    }
    fn one(v: &Value, re: &Regex) -> bool {
        match v {
            Value::Array(items) => items.iter().any(|i| scalar(i, re)),
            other => scalar(other, re),
        }
    }
    match sel {
        Selected::Missing => false,
        Selected::One(v) => one(v, re),
        Selected::Many(vs) => vs.iter().any(|v| one(v, re)),
    }
}

/// A JSON scalar against a literal's text, coercing the literal to the scalar's type.
fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => parse_bool(want) == Some(*b),
        Value::Number(n) => number_eq(n, want),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

fn number_eq(n: &serde_json::Number, want: &str) -> bool {
    let want = want.trim();
    if let (Some(a), Ok(b)) = (n.as_i64(), want.parse::<i64>()) {
        return a == b;
    }
    if let (Some(a), Ok(b)) = (n.as_u64(), want.parse::<u64>()) {
        return a == b;
    }
    match (n.as_f64(), want.parse::<f64>()) {
        (Some(a), Ok(b)) => a == b,
        _ => n.to_string() == want,
    }
}

/// The spellings Go's `strconv.ParseBool` accepts.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Dot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    EqEq,
    NotEq,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Num(s) => write!(f, "number {s}"),
            Tok::Dot => f.write_str("\".\""),
            Tok::LBracket => f.write_str("\"[\""),
            Tok::RBracket => f.write_str("\"]\""),
            Tok::LParen => f.write_str("\"(\""),
            Tok::RParen => f.write_str("\")\""),
            Tok::EqEq => f.write_str("\"==\""),
            Tok::NotEq => f.write_str("\"!=\""),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset of the token's first character.
    pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        let tok = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '.' => {
                chars.next();
                Tok::Dot
            }
            '[' => {
                chars.next();
                Tok::LBracket
            }
            ']' => {
                chars.next();
                Tok::RBracket
            }
            '(' => {
                chars.next();
                Tok::LParen
            }
            ')' => {
                chars.next();
                Tok::RParen
            }
            '=' | '!' => {
                chars.next();
                match chars.peek() {
                    Some(&(_, '=')) => {
                        chars.next();
                        if c == '=' {
                            Tok::EqEq
                        } else {
                            Tok::NotEq
                        }
                    }
                    _ => {
                        let msg = format!("unexpected {c:?}, expected \"==\" or \"!=\"");
                        return Err(FilterError::syntax(src, pos, msg));
                    }
                }
            }
            '"' => {
                chars.next();
                Tok::Str(lex_quoted(src, pos, &mut chars)?)
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '`')) => break,
                        Some((_, ch)) => s.push(ch),
                        None => return Err(FilterError::syntax(src, pos, "unterminated raw string literal")),
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || c == '-' => Tok::Num(lex_number(src, pos, &mut chars)?),
            c if is_ident_start(c) => {
                let mut s = String::new();
                while let Some(&(_, ch)) = chars.peek() {
                    if !is_ident_char(ch) {
                        break;
                    }
                    s.push(ch);
                    chars.next();
                }
                Tok::Ident(s)
            }
            other => {
                return Err(FilterError::syntax(src, pos, format!("unexpected character {other:?}")));
            }
        };
        tokens.push(Token { tok, pos });
    }
    tokens.push(Token { tok: Tok::Eof, pos: src.len() });
    Ok(tokens)
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn take_digits(chars: &mut Chars, out: &mut String) -> usize {
    let mut n = 0;
    while let Some(&(_, ch)) = chars.peek() {
        if !ch.is_ascii_digit() {
            break;
        }
        out.push(ch);
        chars.next();
        n += 1;
    }
    n
}

/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`, not directly followed by an identifier character.
fn lex_number(src: &str, start: usize, chars: &mut Chars) -> Result<String, FilterError> {
    let mut s = String::new();
    if let Some(&(_, '-')) = chars.peek() {
        s.push('-');
        chars.next();
    }
    let bad = |chars: &mut Chars| {
        let end = chars.peek().map_or(src.len(), |&(i, _)| i);
        let end = src[end..].find(|c: char| !is_ident_char(c) && c != '.').map_or(src.len(), |n| end + n);
        FilterError::syntax(src, start, format!("invalid number literal {:?}", &src[start..end]))
    };
    if take_digits(chars, &mut s) == 0 {
        return Err(bad(chars));
    }
    if let Some(&(_, '.')) = chars.peek() {
        s.push('.');
        chars.next();
        if take_digits(chars, &mut s) == 0 {
            return Err(bad(chars));
        }
    }
    if let Some(&(_, e @ ('e' | 'E'))) = chars.peek() {
        s.push(e);
        chars.next();
        if let Some(&(_, sign @ ('+' | '-'))) = chars.peek() {
            s.push(sign);
            chars.next();
        }
        if take_digits(chars, &mut s) == 0 {
            return Err(bad(chars));
        }
    }
    if let Some(&(_, ch)) = chars.peek() {
        if is_ident_char(ch) || ch == '.' {
            return Err(bad(chars));
        }
    }
    Ok(s)
}

/// The body of a double-quoted string (the opening quote at `start` is consumed), with Go-style
/// escapes: `\a \b \f \n \r \t \v \\ \" \'`, `\xHH`, `\NNN` (octal), `\uHHHH`, `\UHHHHHHHH`.
fn lex_quoted(src: &str, start: usize, chars: &mut Chars) -> Result<String, FilterError> {
    let mut bytes: Vec<u8> = Vec::new();
    let push_char = |bytes: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    loop {
        let Some((pos, c)) = chars.next() else {
            return Err(FilterError::syntax(src, start, "unterminated string literal"));
        };
        match c {
            '"' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err(FilterError::syntax(src, start, "unterminated string literal"));
                };
                let simple = match e {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    '\'' => Some(b'\''),
                    _ => None,
                };
                if let Some(b) = simple {
                    bytes.push(b);
                    continue;
                }
                let (radix, len) = match e {
                    'x' => (16, 2),
                    'u' => (16, 4),
                    'U' => (16, 8),
                    '0'..='7' => (8, 3),
                    other => {
                        return Err(FilterError::syntax(src, pos, format!("invalid escape sequence \"\\{other}\"")));
                    }
                };
                let mut digits = String::new();
                if radix == 8 {
                    digits.push(e);
                }
                while digits.len() < len {
                    match chars.peek() {
                        Some(&(_, d)) if d.is_digit(radix) => {
                            digits.push(d);
                            chars.next();
                        }
                        _ => {
                            let msg = format!("invalid escape sequence \"\\{e}\": expected {len} digits");
                            return Err(FilterError::syntax(src, pos, msg));
                        }
                    }
                }
                let n = u32::from_str_radix(&digits, radix).unwrap_or(u32::MAX);
                match e {
                    'x' => bytes.push(n as u8),
                    'u' | 'U' => match char::from_u32(n) {
                        Some(ch) => push_char(&mut bytes, ch),
                        None => {
                            let msg = format!("invalid escape sequence \"\\{e}{digits}\": not a Unicode scalar value");
                            return Err(FilterError::syntax(src, pos, msg));
                        }
                    },
                    _ => match u8::try_from(n) {
                        Ok(b) => bytes.push(b),
                        Err(_) => {
                            let msg = format!("invalid escape sequence \"\\{digits}\": octal value over 255");
                            return Err(FilterError::syntax(src, pos, msg));
                        }
                    },
                }
            }
            other => push_char(&mut bytes, other),
        }
    }
    String::from_utf8(bytes).map_err(|_| FilterError::syntax(src, start, "string literal is not valid UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

const EXPECT_OPERAND: &str = "a selector, a value, \"not\" or \"(\"";
const EXPECT_OPERATOR: &str =
    "\"==\", \"!=\", \"is\", \"contains\", \"not contains\", \"matches\" or \"not matches\" after the selector";
const EXPECT_VALUE: &str = "a value (a string, a number, true or false)";

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with Eof, and `advance` never moves past it.
        &self.tokens[self.pos]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> FilterError {
        FilterError::syntax(self.src, offset, message)
    }

    fn expected(&self, what: &str) -> FilterError {
        let t = self.peek();
        self.error_at(t.pos, format!("expected {what}, found {}", t.tok))
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.parse_and()?];
        while self.is_keyword("or") {
            self.advance();
            terms.push(self.parse_and()?);
        }
        Ok(if terms.len() == 1 { terms.pop().expect("one term") } else { Expr::Or(terms) })
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.parse_unary()?];
        while self.is_keyword("and") {
            self.advance();
            terms.push(self.parse_unary()?);
        }
        Ok(if terms.len() == 1 { terms.pop().expect("one term") } else { Expr::And(terms) })
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.peek().pos, format!("expression nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        if self.is_keyword("not") {
            self.advance();
            self.enter()?;
            let inner = self.parse_unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek().tok == Tok::LParen {
            let open = self.advance();
            self.enter()?;
            let inner = self.parse_or()?;
            self.depth -= 1;
            if self.peek().tok != Tok::RParen {
                let t = self.peek();
                return Err(self.error_at(
                    t.pos,
                    format!(
                        "expected \"and\", \"or\" or \")\" closing the \"(\" at offset {}, found {}",
                        open.pos, t.tok
                    ),
                ));
            }
            self.advance();
            return Ok(inner);
        }
        self.parse_match()
    }

    /// Whether the next tokens start `value in ...` / `value not in ...`.
    fn at_value_first(&self) -> bool {
        match &self.peek().tok {
            Tok::Str(_) | Tok::Num(_) => true,
            Tok::Ident(s) if s == "true" || s == "false" => match self.peek_at(1) {
                Tok::Ident(k) if k == "in" => true,
                Tok::Ident(k) if k == "not" => matches!(self.peek_at(2), Tok::Ident(k2) if k2 == "in"),
                _ => false,
            },
            _ => false,
        }
    }

    fn parse_match(&mut self) -> Result<Expr, FilterError> {
        if self.at_value_first() {
            let value = self.parse_value()?;
            let negate = if self.is_keyword("not") {
                self.advance();
                true
            } else {
                false
            };
            if !self.is_keyword("in") {
                return Err(self.expected(if negate { "\"in\"" } else { "\"in\" or \"not in\" after the value" }));
            }
            self.advance();
            let selector = self.parse_selector()?;
            let op = if negate { Op::NotContains(value) } else { Op::Contains(value) };
            return Ok(Expr::Match(Matcher { selector, op }));
        }
        if !matches!(self.peek().tok, Tok::Ident(_)) {
            return Err(self.expected(EXPECT_OPERAND));
        }
        let selector = self.parse_selector()?;
        let t = self.advance();
        let op = match &t.tok {
            Tok::EqEq => Op::Equal(self.parse_value()?),
            Tok::NotEq => Op::NotEqual(self.parse_value()?),
            Tok::Ident(k) if k == "is" => {
                let negate = if self.is_keyword("not") {
                    self.advance();
                    true
                } else {
                    false
                };
                if !self.is_keyword("empty") {
                    return Err(self.expected(if negate {
                        "\"empty\""
                    } else {
                        "\"empty\" or \"not empty\" after \"is\""
                    }));
                }
                self.advance();
                if negate {
                    Op::IsNotEmpty
                } else {
                    Op::IsEmpty
                }
            }
            Tok::Ident(k) if k == "contains" => Op::Contains(self.parse_value()?),
            Tok::Ident(k) if k == "matches" => Op::Matches(self.parse_regex()?),
            Tok::Ident(k) if k == "not" => {
                let next = self.advance();
                match &next.tok {
                    Tok::Ident(k) if k == "contains" => Op::NotContains(self.parse_value()?),
                    Tok::Ident(k) if k == "matches" => Op::NotMatches(self.parse_regex()?),
                    other => {
                        let msg = format!("expected \"contains\" or \"matches\" after \"not\", found {other}");
                        return Err(self.error_at(next.pos, msg));
                    }
                }
            }
            other => return Err(self.error_at(t.pos, format!("expected {EXPECT_OPERATOR}, found {other}"))),
        };
        Ok(Expr::Match(Matcher { selector, op }))
    }

    fn parse_selector(&mut self) -> Result<Vec<Segment>, FilterError> {
        let mut segments = Vec::new();
        match &self.peek().tok {
            Tok::Ident(name) => {
                segments.push(Segment { name: name.clone(), exact: false });
                self.advance();
            }
            _ => return Err(self.expected("a selector")),
        }
        loop {
            match &self.peek().tok {
                Tok::Dot => {
                    self.advance();
                    match &self.peek().tok {
                        Tok::Ident(name) => {
                            segments.push(Segment { name: name.clone(), exact: false });
                            self.advance();
                        }
                        Tok::LBracket => segments.push(self.parse_index()?),
                        _ => return Err(self.expected("a field name or \"[\" after \".\"")),
                    }
                }
                Tok::LBracket => segments.push(self.parse_index()?),
                _ => return Ok(segments),
            }
        }
    }

    /// `["key"]`, the `[` being the next token.
    fn parse_index(&mut self) -> Result<Segment, FilterError> {
        self.advance();
        let name = match &self.peek().tok {
            Tok::Str(s) => s.clone(),
            _ => return Err(self.expected("a quoted key after \"[\"")),
        };
        self.advance();
        if self.peek().tok != Tok::RBracket {
            return Err(self.expected("\"]\""));
        }
        self.advance();
        Ok(Segment { name, exact: true })
    }

    fn parse_value(&mut self) -> Result<String, FilterError> {
        let s = match &self.peek().tok {
            Tok::Str(s) | Tok::Num(s) => s.clone(),
            Tok::Ident(s) if s == "true" || s == "false" => s.clone(),
            _ => return Err(self.expected(EXPECT_VALUE)),
        };
        self.advance();
        Ok(s)
    }

    fn parse_regex(&mut self) -> Result<Regex, FilterError> {
        let pos = self.peek().pos;
        let pattern = self.parse_value()?;
        regex::RegexBuilder::new(&pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
            let (line, column) = line_col(self.src, pos);
            FilterError::InvalidRegex { offset: pos, line, column, pattern, reason: regex_reason(&e) }
        })
    }
}

/// The regex crate's syntax errors span several lines (pattern, caret, message); keep the message.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.rfind("error: ") {
        Some(i) => text[i + "error: ".len()..].trim().to_string(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_node() -> Value {
        json!({
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": "n1",
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "NodeMeta": {"rack": "r1"},
            "ServiceID": "web-1",
            "ServiceName": "web",
            "ServiceTags": ["primary", "v1"],
            "ServiceAddress": "",
            "ServiceMeta": {"env": "prod", "team-name": "core", "Owner": "ops"},
            "ServicePort": 80,
            "ServiceEnableTagOverride": false,
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceProxy": {},
            "Empty": null,
            "Ratio": 0.5,
        })
    }

    fn health_entry() -> Value {
        json!({
            "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"rack": "r1"}},
            "Service": {"ID": "web-1", "Service": "web", "Tags": ["primary"], "Port": 80},
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "service:web-1", "Status": "warning", "ServiceTags": ["primary", "x"]},
            ],
        })
    }

    fn m(expr: &str, v: &Value) -> bool {
        Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}")).matches(v)
    }

    fn err(expr: &str) -> FilterError {
        match Filter::parse(expr) {
            Ok(f) => panic!("{expr} parsed: {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn equality() {
        let v = service_node();
        assert!(m(r#"ServiceName == "web""#, &v));
        assert!(!m(r#"ServiceName == "db""#, &v));
        assert!(!m(r#"ServiceName == "Web""#, &v));
        assert!(m(r#"ServiceName != "db""#, &v));
        assert!(!m(r#"ServiceName != "web""#, &v));
        assert!(m(r#"NodeMeta.rack == "r1""#, &v));
        assert!(m(r#"ServiceWeights.Passing == 1"#, &v));
    }

    #[test]
    fn numbers_and_bools() {
        let v = service_node();
        assert!(m("ServicePort == 80", &v));
        assert!(m(r#"ServicePort == "80""#, &v));
        assert!(m("ServicePort == 80.0", &v));
        assert!(!m("ServicePort == 81", &v));
        assert!(m("ServicePort != 81", &v));
        assert!(!m(r#"ServicePort == "eighty""#, &v));
        assert!(m("Ratio == 0.5", &v));
        assert!(m("Ratio == 5e-1", &v));
        assert!(!m("Ratio == -0.5", &v));
        assert!(m("ServiceEnableTagOverride == false", &v));
        assert!(m(r#"ServiceEnableTagOverride == "false""#, &v));
        assert!(m(r#"ServiceEnableTagOverride == "F""#, &v));
        assert!(!m("ServiceEnableTagOverride == true", &v));
        assert!(m("ServiceEnableTagOverride != true", &v));
        assert!(!m(r#"ServiceEnableTagOverride == "nope""#, &v));
        // A number literal against a string field compares its text.
        assert!(m("Port == 8080", &json!({"Port": "8080"})));
        assert!(m("Neg == -3", &json!({"Neg": -3})));
        assert!(m("Big == 18446744073709551615", &json!({"Big": u64::MAX})));
        // A string containing only `true` is a value, not a keyword.
        assert!(m("S == true", &json!({"S": "true"})));
    }

    #[test]
    fn empty_and_not_empty() {
        let v = service_node();
        assert!(m("ServiceAddress is empty", &v));
        assert!(!m("ServiceAddress is not empty", &v));
        assert!(m("ServiceName is not empty", &v));
        assert!(m("ServiceProxy is empty", &v));
        assert!(m("Empty is empty", &v));
        assert!(m("Missing is empty", &v));
        assert!(m("ServiceMeta.nothere is empty", &v));
        assert!(!m("ServiceTags is empty", &v));
        assert!(m("Tags is empty", &json!({"Tags": []})));
        assert!(!m("ServicePort is empty", &v));
        assert!(m("ServicePort is not empty", &v));
    }

    #[test]
    fn in_and_contains() {
        let v = service_node();
        // Arrays: membership.
        assert!(m(r#""primary" in ServiceTags"#, &v));
        assert!(!m(r#""prim" in ServiceTags"#, &v));
        assert!(m(r#""prim" not in ServiceTags"#, &v));
        assert!(!m(r#""v1" not in ServiceTags"#, &v));
        assert!(m(r#"ServiceTags contains "v1""#, &v));
        assert!(!m(r#"ServiceTags contains "v2""#, &v));
        assert!(m(r#"ServiceTags not contains "v2""#, &v));
        // Maps: key presence.
        assert!(m(r#""env" in ServiceMeta"#, &v));
        assert!(!m(r#""prod" in ServiceMeta"#, &v));
        assert!(m(r#"ServiceMeta contains "team-name""#, &v));
        assert!(!m(r#"ServiceMeta contains "owner""#, &v), "key presence is exact");
        // Strings: substring.
        assert!(m(r#""eb" in ServiceName"#, &v));
        assert!(m(r#"Address contains "10.0""#, &v));
        assert!(!m(r#"Address contains "192""#, &v));
        assert!(m(r#"Address not contains "192""#, &v));
        // Numbers inside arrays compare by value.
        assert!(m("80 in Ports", &json!({"Ports": [443, 80]})));
        assert!(m(r#""80" in Ports"#, &json!({"Ports": [443, 80]})));
        assert!(!m("81 in Ports", &json!({"Ports": [443, 80]})));
        assert!(m("true in Flags", &json!({"Flags": [false, true]})));
        assert!(m("true not in Flags", &json!({"Flags": [false]})));
        // Unsupported type: false, negation true.
        assert!(!m(r#""8" in ServicePort"#, &v));
        assert!(m(r#""8" not in ServicePort"#, &v));
    }

    #[test]
    fn regex_matches() {
        let v = service_node();
        assert!(m(r#"ServiceName matches "^w.b$""#, &v));
        assert!(!m(r#"ServiceName matches "^db""#, &v));
        assert!(m(r#"ServiceName not matches "^db""#, &v));
        assert!(!m(r#"ServiceName not matches "we""#, &v));
        assert!(m(r#"ServicePort matches "^8[0-9]$""#, &v));
        assert!(m(r#"ServiceTags matches "^v[0-9]+$""#, &v));
        assert!(!m(r#"ServiceTags matches "^v[2-9]$""#, &v));
        assert!(m(r"Node matches `^n\d$`", &v));
        assert!(!m(r#"Missing matches ".*""#, &v));
        assert!(m(r#"Missing not matches ".*""#, &v));
    }

    #[test]
    fn precedence_parentheses_and_not() {
        let v = service_node();
        // and binds tighter than or: true or (false and false) = true.
        assert!(m(r#"ServiceName == "web" or ServiceName == "db" and Node == "n2""#, &v));
        // (true or false) and false = false.
        assert!(!m(r#"(ServiceName == "web" or ServiceName == "db") and Node == "n2""#, &v));
        // false and false or true = true.
        assert!(m(r#"Node == "n2" and ServiceName == "db" or ServicePort == 80"#, &v));
        assert!(!m(r#"Node == "n2" and (ServiceName == "db" or ServicePort == 80)"#, &v));
        // not binds tighter than and / or.
        assert!(!m(r#"not ServiceName == "web" and Node == "n1""#, &v));
        assert!(m(r#"not ServiceName == "db" and Node == "n1""#, &v));
        assert!(m(r#"not (ServiceName == "web" and Node == "n2")"#, &v));
        assert!(!m(r#"not (ServiceName == "web" or Node == "n2")"#, &v));
        assert!(m(r#"not not ServiceName == "web""#, &v));
        assert!(m(r#"not(Node=="n2")"#, &v));
        assert!(m(r#"((((ServiceName == "web"))))"#, &v));
        assert!(m(r#"ServiceName == "a" or ServiceName == "b" or ServiceName == "web""#, &v));
        assert!(!m(r#"Node == "n1" and ServicePort == 80 and ServiceName == "db""#, &v));
        assert!(m("Node == \"n1\"\n\tand\n ServicePort == 80", &v));
    }

    #[test]
    fn strings_and_escapes() {
        let v = json!({"S": "a\"b\\c\nd", "R": r"C:\path\n", "U": "é☃", "T": "tab\there"});
        assert!(m(r#"S == "a\"b\\c\nd""#, &v));
        assert!(m(r"R == `C:\path\n`", &v));
        assert!(!m(r#"R == "C:\\path\n""#, &v));
        assert!(m(r#"U == "\u00e9\u2603""#, &v));
        assert!(m(r#"U == "\xc3\xa9☃""#, &v));
        assert!(m(r#"U == "\303\251\U00002603""#, &v));
        assert!(m(r#"T == "tab\x09here""#, &v));
        assert!(m("S == `a\"b\\c\nd`", &v), "raw strings may span lines and hold quotes");
    }

    #[test]
    fn index_selectors() {
        let v = service_node();
        assert!(m(r#"ServiceMeta["team-name"] == "core""#, &v));
        assert!(m(r#"ServiceMeta.["team-name"] == "core""#, &v));
        assert!(m(r#"ServiceMeta[`env`] == "prod""#, &v));
        assert!(m(r#"ServiceMeta.env == "prod""#, &v));
        assert!(!m(r#"ServiceMeta["Env"] == "prod""#, &v), "index form is exact");
        assert!(m(r#"ServiceMeta["Env"] is empty"#, &v));
        let nested = json!({"A": {"b.c": {"d": "x"}}});
        assert!(m(r#"A["b.c"].d == "x""#, &nested));
        assert!(m(r#"A["b.c"]["d"] == "x""#, &nested));
    }

    #[test]
    fn case_insensitive_fallback() {
        let v = service_node();
        assert!(m(r#"servicename == "web""#, &v));
        assert!(m(r#"SERVICEMETA.ENV == "prod""#, &v));
        let both = json!({"name": "lower", "Name": "upper"});
        assert!(m(r#"name == "lower""#, &both));
        assert!(m(r#"Name == "upper""#, &both));
        assert!(m(r#"NAME == "lower" or NAME == "upper""#, &both));
    }

    #[test]
    fn arrays_of_objects() {
        let v = health_entry();
        assert!(m(r#""passing" in Checks.Status"#, &v));
        assert!(m(r#""warning" in Checks.Status"#, &v));
        assert!(!m(r#""critical" in Checks.Status"#, &v));
        assert!(m(r#""critical" not in Checks.Status"#, &v));
        assert!(!m(r#""pass" in Checks.Status"#, &v), "membership, not substring");
        assert!(m(r#"Checks.Status contains "warning""#, &v));
        assert!(m(r#"Checks.Status == "warning""#, &v));
        assert!(m(r#"Checks.Status == "passing""#, &v));
        assert!(!m(r#"Checks.Status == "critical""#, &v));
        assert!(m(r#"Checks.Status != "critical""#, &v));
        assert!(!m(r#"Checks.Status != "passing""#, &v));
        assert!(m(r#"Checks.CheckID matches "^service:""#, &v));
        assert!(!m(r#"Checks.CheckID matches "^node:""#, &v));
        assert!(m("Checks.Status is not empty", &v));
        assert!(m("Checks.Output is empty", &v));
        assert!(m(r#""x" in Checks.ServiceTags"#, &v), "array values are flattened");
        assert!(!m(r#""y" in Checks.ServiceTags"#, &v));
        assert!(m(r#"Service.Tags contains "primary" and Node.Meta.rack == "r1""#, &v));
        let none = json!({"Checks": []});
        assert!(!m(r#""passing" in Checks.Status"#, &none));
        assert!(!m(r#"Checks.Status == "passing""#, &none));
        assert!(m("Checks.Status is empty", &none));
        assert!(m("Checks is empty", &none));
        let nested = json!({"A": [{"B": [{"C": "1"}, {"C": "2"}]}, {"B": [{"C": "3"}]}]});
        assert!(m(r#""3" in A.B.C"#, &nested));
        assert!(!m(r#""4" in A.B.C"#, &nested));
    }

    #[test]
    fn missing_fields() {
        let v = service_node();
        assert!(!m(r#"Nope == "x""#, &v));
        assert!(m(r#"Nope != "x""#, &v));
        assert!(!m(r#"Nope.Deeper == "x""#, &v));
        assert!(m(r#"Nope.Deeper != "x""#, &v));
        assert!(!m(r#""x" in Nope"#, &v));
        assert!(m(r#""x" not in Nope"#, &v));
        assert!(!m(r#"Nope contains "x""#, &v));
        assert!(m(r#"Nope not contains "x""#, &v));
        // Through a scalar.
        assert!(!m(r#"ServiceName.Sub == "x""#, &v));
        assert!(m("ServiceName.Sub is empty", &v));
        // null behaves as missing.
        assert!(!m(r#"Empty == "x""#, &v));
        assert!(m(r#"Empty != "x""#, &v));
        assert!(!m(r#"Empty == """#, &v));
    }

    #[test]
    fn keywords_as_field_names_via_position() {
        // `in`, `contains`, ... are only keywords where an operator is expected.
        let v = json!({"in": "a", "contains": ["x"], "true": "yes"});
        assert!(m(r#"in == "a""#, &v));
        assert!(m(r#"contains contains "x""#, &v));
        assert!(m(r#"true == "yes""#, &v));
        assert!(m(r#""yes" in true"#, &v));
    }

    #[test]
    fn apply_filters_in_order() {
        let items =
            vec![json!({"Name": "a", "Port": 1}), json!({"Name": "b", "Port": 2}), json!({"Name": "c", "Port": 1})];
        assert_eq!(apply(None, items.clone()).unwrap(), items);
        assert_eq!(apply(Some("  "), items.clone()).unwrap(), items);
        let kept = apply(Some("Port == 1"), items.clone()).unwrap();
        assert_eq!(kept, vec![items[0].clone(), items[2].clone()]);
        assert!(apply(Some("Port =="), items).is_err());
    }

    #[test]
    fn error_unterminated_string() {
        let e = err(r#"Name == "web"#);
        let text = e.to_string();
        assert!(text.starts_with("Failed to create boolean expression evaluator: "), "{text}");
        assert!(text.contains("unterminated string literal"), "{text}");
        assert_eq!(e.offset(), 8);
        assert!(text.contains("1:9 (8)"), "{text}");
        assert!(err("Name == `web").to_string().contains("unterminated raw string literal"));
        assert!(err(r#"Name == "web\"#).to_string().contains("unterminated string literal"));
    }

    #[test]
    fn error_missing_operand() {
        let e = err("Name ==");
        assert_eq!(e.offset(), 7);
        let text = e.to_string();
        assert!(text.contains("expected a value"), "{text}");
        assert!(text.contains("found end of input"), "{text}");

        let e = err(r#"Name == "a" and"#);
        assert!(e.to_string().contains("expected a selector, a value"), "{e}");
        assert_eq!(e.offset(), 15);

        let e = err(r#"== "a""#);
        assert_eq!(e.offset(), 0);
        assert!(e.to_string().contains("found \"==\""), "{e}");

        let e = err("Name");
        assert!(e.to_string().contains("after the selector"), "{e}");
        assert!(err(r#""a" in"#).to_string().contains("expected a selector"));
        assert!(err(r#""a" == Name"#).to_string().contains("expected \"in\""));
        assert!(err("Name is").to_string().contains("\"empty\""));
        assert!(err("Name is not").to_string().contains("expected \"empty\""));
        assert!(err("Name not == \"a\"").to_string().contains("after \"not\""));
        assert!(err("Name == Other").to_string().contains("expected a value"));
        assert!(err("").to_string().contains("found end of input"));
        assert!(err("not").to_string().contains("found end of input"));
        assert!(err("Meta[\"k\" == \"v\"").to_string().contains("expected \"]\""));
        assert!(err("Meta[k] == \"v\"").to_string().contains("quoted key"));
        assert!(err("Meta. == \"v\"").to_string().contains("after \".\""));
    }

    #[test]
    fn error_bad_regex() {
        let e = err(r#"Name matches "(unclosed""#);
        let text = e.to_string();
        assert!(matches!(e, FilterError::InvalidRegex { offset: 13, .. }), "{e:?}");
        assert!(
            text.starts_with("Failed to create boolean expression evaluator: 1:14 (13): invalid regular expression")
        );
        assert!(text.contains("unclosed group"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(matches!(err(r#"Name not matches "[z-a]""#), FilterError::InvalidRegex { .. }));
    }

    #[test]
    fn error_trailing_garbage() {
        let e = err(r#"Name == "a" Port == 1"#);
        assert_eq!(e.offset(), 12);
        assert!(e.to_string().contains("after a complete expression"), "{e}");
        let e = err(r#"Name == "a")"#);
        assert_eq!(e.offset(), 11);
        let e = err(r#"(Name == "a""#);
        assert!(e.to_string().contains("closing the \"(\""), "{e}");
        assert!(err(r#"Name = "a""#).to_string().contains("unexpected '='"));
        assert!(err(r#"Name == "a" && Port == 1"#).to_string().contains("unexpected character '&'"));
        assert!(err("Port == 80abc").to_string().contains("invalid number literal \"80abc\""));
        assert!(err("Port == 1.").to_string().contains("invalid number literal"));
        assert!(err("Port == -").to_string().contains("invalid number literal"));
    }

    #[test]
    fn error_bad_escapes_and_positions() {
        let e = err(r#"Name == "a\qb""#);
        assert_eq!(e.offset(), 10);
        assert!(e.to_string().contains("invalid escape sequence \"\\q\""), "{e}");
        assert!(err(r#"Name == "\x4""#).to_string().contains("expected 2 digits"));
        assert!(err(r#"Name == "\uD800""#).to_string().contains("not a Unicode scalar value"));
        assert!(err(r#"Name == "\777""#).to_string().contains("over 255"));
        assert!(err(r#"Name == "\xff""#).to_string().contains("not valid UTF-8"));
        // Line and column on a later line, columns counted in characters.
        let e = err("Name == \"é\"\n  and ?");
        match e {
            FilterError::Syntax { line, column, offset, .. } => {
                assert_eq!((line, column), (2, 7));
                assert_eq!(offset, 19);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nesting_limit() {
        let deep = format!("{}Name == \"a\"{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(err(&deep).to_string().contains("nested more than"));
        let ok = format!("{}Name == \"a\"{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(m(&ok, &json!({"Name": "a"})));
        let nots = format!("{}Name == \"a\"", "not ".repeat(MAX_DEPTH + 1));
        assert!(Filter::parse(&nots).is_err());
        // Long flat chains are fine (n-ary, not nested).
        let chain = vec![r#"Name == "x""#; 10_000].join(" or ") + r#" or Name == "a""#;
        assert!(m(&chain, &json!({"Name": "a"})));
    }
}
