//! HCL 1 tokens: one at a time, with their positions.

use crate::Error;

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    Ident(String),
    Str(String),
    Number(serde_json::Number),
    Bool(bool),
    Null,
    Assign,
    Comma,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Eof,
}

impl Token {
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier {s:?}"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Number(n) => format!("number {n}"),
            Token::Bool(b) => format!("{b}"),
            Token::Null => "null".into(),
            Token::Assign => "'='".into(),
            Token::Comma => "','".into(),
            Token::LBrace => "'{'".into(),
            Token::RBrace => "'}'".into(),
            Token::LBracket => "'['".into(),
            Token::RBracket => "']'".into(),
            Token::Eof => "end of input".into(),
        }
    }
}

pub struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    _text: &'a str,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer { chars: text.chars().collect(), pos: 0, line: 1, column: 1, _text: text }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, line: usize, column: usize, message: impl Into<String>) -> Error {
        Error { line, column, message: message.into() }
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), Error> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, column) = (self.line, self.column);
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek_at(1)) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => return Err(self.error(line, column, "comment not terminated")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and where it starts.
    pub fn next(&mut self) -> Result<(Token, usize, usize), Error> {
        self.skip_trivia()?;
        let (line, column) = (self.line, self.column);
        let Some(c) = self.peek() else { return Ok((Token::Eof, line, column)) };
        let token = match c {
            '=' => {
                self.bump();
                Token::Assign
            }
            ',' => {
                self.bump();
                Token::Comma
            }
            '{' => {
                self.bump();
                Token::LBrace
            }
            '}' => {
                self.bump();
                Token::RBrace
            }
            '[' => {
                self.bump();
                Token::LBracket
            }
            ']' => {
                self.bump();
                Token::RBracket
            }
            '"' => Token::Str(self.string(line, column)?),
            '<' if self.peek_at(1) == Some('<') => Token::Str(self.heredoc(line, column)?),
            c if c.is_ascii_digit() || (c == '-' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) => {
                self.number(line, column)?
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = String::new();
                while let Some(c) = self.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                        word.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                match word.as_str() {
                    "true" => Token::Bool(true),
                    "false" => Token::Bool(false),
                    "null" => Token::Null,
                    _ => Token::Ident(word),
                }
            }
            other => return Err(self.error(line, column, format!("illegal character {other:?}"))),
        };
        Ok((token, line, column))
    }

    /// A quoted string. `${...}` sequences are kept as written, quotes and braces inside them
    /// included, as HCL 1 leaves interpolation to its caller (Consul has none).
    fn string(&mut self, line: usize, column: usize) -> Result<String, Error> {
        self.bump();
        let mut out = String::new();
        let mut braces = 0usize;
        loop {
            let Some(c) = self.bump() else { return Err(self.error(line, column, "literal not terminated")) };
            match c {
                '"' if braces == 0 => return Ok(out),
                '\n' if braces == 0 => return Err(self.error(line, column, "literal not terminated")),
                '$' if self.peek() == Some('{') => {
                    out.push('$');
                    out.push('{');
                    self.bump();
                    braces += 1;
                }
                '{' if braces > 0 => {
                    braces += 1;
                    out.push(c);
                }
                '}' if braces > 0 => {
                    braces -= 1;
                    out.push(c);
                }
                '\\' if braces == 0 => out.push(self.escape(line, column)?),
                other => out.push(other),
            }
        }
    }

    fn escape(&mut self, line: usize, column: usize) -> Result<char, Error> {
        let Some(e) = self.bump() else { return Err(self.error(line, column, "literal not terminated")) };
        Ok(match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\u{07}',
            'b' => '\u{08}',
            'f' => '\u{0c}',
            'v' => '\u{0b}',
            '\\' => '\\',
            '"' => '"',
            '/' => '/',
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let mut hex = String::new();
                for _ in 0..n {
                    match self.bump() {
                        Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                        _ => return Err(self.error(self.line, self.column, "escape sequence is invalid")),
                    }
                }
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.error(self.line, self.column, "escape sequence is invalid"))?
            }
            _ => return Err(self.error(self.line, self.column, "unknown escape sequence")),
        })
    }

    /// `<<ANCHOR` ... `ANCHOR` on a line of its own; `<<-ANCHOR` also removes the indentation
    /// the lines share. The value keeps the newline before the closing anchor.
    fn heredoc(&mut self, line: usize, column: usize) -> Result<String, Error> {
        self.bump();
        self.bump();
        let indented = self.peek() == Some('-');
        if indented {
            self.bump();
        }
        let mut anchor = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                anchor.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if anchor.is_empty() {
            return Err(self.error(line, column, "heredoc anchor missing"));
        }
        match self.bump() {
            Some('\n') => {}
            Some('\r') if self.peek() == Some('\n') => {
                self.bump();
            }
            _ => return Err(self.error(line, column, "heredoc anchor must be followed by a newline")),
        }
        let mut lines: Vec<String> = Vec::new();
        let closing_indent = loop {
            if self.peek().is_none() {
                return Err(self.error(line, column, format!("heredoc not terminated: no closing {anchor}")));
            }
            let mut text = String::new();
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                text.push(c);
                self.bump();
            }
            let trimmed = text.trim_end_matches('\r');
            let closing = if indented { trimmed.trim_start() == anchor } else { trimmed == anchor };
            if closing {
                break trimmed[..trimmed.len() - anchor.len()].to_string();
            }
            self.bump();
            lines.push(trimmed.to_string());
        };
        // `<<-`: the closing marker's indentation is removed from every line, unless a line
        // does not start with it (then the text is left as written), as HCL 1 does.
        if indented && !closing_indent.is_empty() && lines.iter().all(|l| l.starts_with(&closing_indent)) {
            for l in &mut lines {
                *l = l[closing_indent.len()..].to_string();
            }
        }
        if lines.is_empty() {
            return Ok(String::new());
        }
        let mut out = lines.join("\n");
        out.push('\n');
        Ok(out)
    }

    fn number(&mut self, line: usize, column: usize) -> Result<Token, Error> {
        let mut text = String::new();
        if self.peek() == Some('-') {
            text.push('-');
            self.bump();
        }
        if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let mut hex = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_hexdigit) {
                hex.push(c);
                self.bump();
            }
            let v =
                i64::from_str_radix(&hex, 16).map_err(|_| self.error(line, column, "invalid hexadecimal number"))?;
            let v = if text.is_empty() { v } else { -v };
            return Ok(Token::Number(v.into()));
        }
        let mut float = false;
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '+' | '-') && text.ends_with(['e', 'E']);
            if c.is_ascii_digit() || exponent_sign {
                text.push(c);
            } else if (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) || matches!(c, 'e' | 'E') {
                float = true;
                text.push(c);
            } else {
                break;
            }
            self.bump();
        }
        let bad = || Error { line, column, message: format!("invalid number {text:?}") };
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Token::Number(i.into()));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Token::Number(u.into()));
            }
        }
        let f: f64 = text.parse().map_err(|_| bad())?;
        serde_json::Number::from_f64(f).map(Token::Number).ok_or_else(bad)
    }
}
