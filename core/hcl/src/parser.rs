//! HCL 1 items, blocks and values into a JSON value (see the crate docs for the shape).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::lexer::{Lexer, Token};
use crate::{Error, MAX_DEPTH};

/// Parses HCL 1 (or JSON, when the text starts with `{`) into a JSON object.
pub fn from_str(text: &str) -> Result<Value, Error> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| Error {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        });
    }
    let mut p = Parser::new(text)?;
    let body = p.body(0, &Token::Eof)?;
    Ok(Value::Object(body))
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    token: Token,
    line: usize,
    column: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Parser<'a>, Error> {
        let mut lexer = Lexer::new(text);
        let (token, line, column) = lexer.next()?;
        Ok(Parser { lexer, token, line, column })
    }

    fn advance(&mut self) -> Result<Token, Error> {
        let (next, line, column) = self.lexer.next()?;
        self.line = line;
        self.column = column;
        Ok(std::mem::replace(&mut self.token, next))
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error { line: self.line, column: self.column, message: message.into() }
    }

    fn deeper(&self, depth: usize) -> Result<usize, Error> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(depth + 1)
    }

    /// Items up to `end` (not consumed): `}` for a block or object, the end of the text at
    /// the top.
    fn body(&mut self, depth: usize, end: &Token) -> Result<Map<String, Value>, Error> {
        let mut map = Map::new();
        let mut repeated = HashSet::new();
        loop {
            match &self.token {
                t if t == end => return Ok(map),
                Token::Comma => {
                    self.advance()?;
                }
                Token::Ident(_) | Token::Str(_) => self.item(depth, &mut map, &mut repeated)?,
                Token::Eof => return Err(self.error("expected '}' before the end of input")),
                other => return Err(self.error(format!("expected a key, found {}", other.describe()))),
            }
        }
    }

    /// `key = value` or `key "label"... { body }`.
    fn item(
        &mut self,
        depth: usize,
        map: &mut Map<String, Value>,
        repeated: &mut HashSet<String>,
    ) -> Result<(), Error> {
        let key = match self.advance()? {
            Token::Ident(k) | Token::Str(k) => k,
            _ => unreachable!("item starts at a key"),
        };
        let mut labels = Vec::new();
        loop {
            match &self.token {
                Token::Assign => {
                    if !labels.is_empty() {
                        return Err(self.error(format!("key '{key}' has labels and an assignment")));
                    }
                    self.advance()?;
                    let value = self.value(depth)?;
                    insert(map, repeated, key, value, 0);
                    return Ok(());
                }
                Token::LBrace => {
                    let inner = self.deeper(depth)?;
                    self.advance()?;
                    let body = self.body(inner, &Token::RBrace)?;
                    self.advance()?;
                    let depth_of_labels = labels.len();
                    let value = labels
                        .into_iter()
                        .rev()
                        .fold(Value::Object(body), |v, l| Value::Object(Map::from_iter([(l, v)])));
                    insert(map, repeated, key, value, depth_of_labels);
                    return Ok(());
                }
                Token::Ident(_) | Token::Str(_) => {
                    // Each label nests the body one level deeper.
                    self.deeper(depth + labels.len())?;
                    if let Token::Ident(l) | Token::Str(l) = self.advance()? {
                        labels.push(l);
                    }
                }
                other => {
                    return Err(self.error(format!(
                        "key '{key}' expected start of object ('{{') or assignment ('='), found {}",
                        other.describe()
                    )))
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        match &self.token {
            Token::Str(_) | Token::Number(_) | Token::Bool(_) | Token::Null => Ok(match self.advance()? {
                Token::Str(s) => Value::String(s),
                Token::Number(n) => Value::Number(n),
                Token::Bool(b) => Value::Bool(b),
                _ => Value::Null,
            }),
            Token::LBrace => {
                let inner = self.deeper(depth)?;
                self.advance()?;
                let body = self.body(inner, &Token::RBrace)?;
                self.advance()?;
                Ok(Value::Object(body))
            }
            Token::LBracket => {
                let inner = self.deeper(depth)?;
                self.advance()?;
                let mut list = Vec::new();
                loop {
                    if self.token == Token::RBracket {
                        self.advance()?;
                        return Ok(Value::Array(list));
                    }
                    list.push(self.value(inner)?);
                    match &self.token {
                        Token::Comma => {
                            self.advance()?;
                        }
                        Token::RBracket => {}
                        other => {
                            return Err(self.error(format!("expected ',' or ']' in a list, found {}", other.describe())))
                        }
                    }
                }
            }
            Token::Ident(word) => Err(self.error(format!("unknown value {word:?} (quote strings)"))),
            other => Err(self.error(format!("expected a value, found {}", other.describe()))),
        }
    }
}

/// Adds `key`'s value to `map`: a key given again collects its values into a list; blocks
/// with `labels` levels of labels share the key's object, label by label.
fn insert(map: &mut Map<String, Value>, repeated: &mut HashSet<String>, key: String, value: Value, labels: usize) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, value);
        }
        Some(existing) if labels > 0 && existing.is_object() => merge_labeled(existing, value, labels),
        Some(existing) => {
            if repeated.contains(&key) {
                if let Value::Array(list) = existing {
                    list.push(value);
                }
            } else {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
                repeated.insert(key);
            }
        }
    }
}

/// Merges one labeled block (`{"label": ...}`, `labels` deep) into the object of earlier
/// blocks of its type; the same labels again make a list of the bodies.
fn merge_labeled(existing: &mut Value, new: Value, labels: usize) {
    let (Value::Object(target), Value::Object(new)) = (existing, new) else { return };
    for (label, body) in new {
        match target.get_mut(&label) {
            None => {
                target.insert(label, body);
            }
            Some(e) if labels > 1 && e.is_object() => merge_labeled(e, body, labels - 1),
            Some(Value::Array(list)) => list.push(body),
            Some(e) => {
                let first = e.take();
                *e = Value::Array(vec![first, body]);
            }
        }
    }
}
