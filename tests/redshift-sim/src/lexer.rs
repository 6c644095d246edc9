//! A SQL tokenizer for the PostgreSQL/Redshift lexical syntax: string constants (plain, `E''`,
//! `B''`, `X''`, `N''`, `U&''`), quoted identifiers, line and nested block comments, dollar
//! quoting, numbers, parameters and operators. Concatenating the tokens' text gives back the input
//! exactly, so rewrites can replace single tokens and leave everything else byte for byte.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LexError {
    #[error("unterminated quoted string")]
    String,
    #[error("unterminated quoted identifier")]
    Ident,
    #[error("unterminated /* comment")]
    Comment,
    #[error("unterminated dollar-quoted string")]
    Dollar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Space,
    Comment,
    /// Unquoted word: keyword or identifier.
    Word,
    /// `"..."` (or `U&"..."`).
    QuotedIdent,
    /// Any string constant, including dollar-quoted ones.
    Str,
    Number,
    /// `$1`
    Param,
    /// `;`
    Semi,
    /// `(` `)` `[` `]` `,` `.` and operators.
    Punct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
}

impl Token {
    pub fn new(kind: Kind, text: impl Into<String>) -> Self {
        Token {
            kind,
            text: text.into(),
        }
    }

    /// Whitespace or comment.
    pub fn is_trivia(&self) -> bool {
        matches!(self.kind, Kind::Space | Kind::Comment)
    }

    /// An unquoted word equal to `kw` (ASCII case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    pub fn is_punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }

    /// The identifier this token names, folded to lower case as Redshift does (quoted ones too).
    pub fn ident(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_lowercase()),
            Kind::QuotedIdent => {
                let inner = self.text.strip_prefix("U&").unwrap_or(&self.text);
                let inner = inner.get(1..inner.len().saturating_sub(1)).unwrap_or("");
                Some(inner.replace("\"\"", "\"").to_lowercase())
            }
            _ => None,
        }
    }

    /// The value of a string constant (standard or `E''` escapes; dollar quoting).
    pub fn string_value(&self) -> Option<String> {
        if self.kind != Kind::Str {
            return None;
        }
        let t = &self.text;
        if let Some(after) = t.strip_prefix('$') {
            let end = after.find('$')? + 2;
            return t.get(end..t.len().checked_sub(end)?).map(str::to_string);
        }
        let (escapes, body) = match t.find('\'') {
            Some(q) => (t[..q].eq_ignore_ascii_case("e"), &t[q..]),
            None => return None,
        };
        let inner = body.get(1..body.len().checked_sub(1)?)?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\\' if escapes => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                },
                o => out.push(o),
            }
        }
        Some(out)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_cont(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

const OP_CHARS: &str = "+-*/<>=~!@#%^&|`?";

pub fn tokenize(sql: &str) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    let b = sql.as_bytes();
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        let c = match rest.chars().next() {
            Some(c) => c,
            None => break,
        };
        let len = if c.is_whitespace() {
            let n = rest
                .char_indices()
                .find(|&(_, ch)| !ch.is_whitespace())
                .map_or(rest.len(), |(n, _)| n);
            out.push(Token::new(Kind::Space, &rest[..n]));
            n
        } else if rest.starts_with("--") {
            let n = rest.find('\n').map_or(rest.len(), |n| n + 1);
            out.push(Token::new(Kind::Comment, &rest[..n]));
            n
        } else if rest.starts_with("/*") {
            let n = block_comment(rest)?;
            out.push(Token::new(Kind::Comment, &rest[..n]));
            n
        } else if c == '\'' {
            let n = quoted(rest, 0, '\'', false).ok_or(LexError::String)?;
            out.push(Token::new(Kind::Str, &rest[..n]));
            n
        } else if (c == 'e' || c == 'E') && b.get(i + 1) == Some(&b'\'') {
            let n = quoted(rest, 1, '\'', true).ok_or(LexError::String)?;
            out.push(Token::new(Kind::Str, &rest[..n]));
            n
        } else if matches!(c, 'b' | 'B' | 'x' | 'X' | 'n' | 'N') && b.get(i + 1) == Some(&b'\'') {
            let n = quoted(rest, 1, '\'', false).ok_or(LexError::String)?;
            out.push(Token::new(Kind::Str, &rest[..n]));
            n
        } else if (c == 'u' || c == 'U') && rest.get(1..3) == Some("&'") {
            let n = quoted(rest, 2, '\'', false).ok_or(LexError::String)?;
            out.push(Token::new(Kind::Str, &rest[..n]));
            n
        } else if (c == 'u' || c == 'U') && rest.get(1..3) == Some("&\"") {
            let n = quoted(rest, 2, '"', false).ok_or(LexError::Ident)?;
            out.push(Token::new(Kind::QuotedIdent, &rest[..n]));
            n
        } else if c == '"' {
            let n = quoted(rest, 0, '"', false).ok_or(LexError::Ident)?;
            out.push(Token::new(Kind::QuotedIdent, &rest[..n]));
            n
        } else if c == '$' {
            if let Some(n) = dollar_tag(rest) {
                let tag = &rest[..n];
                let close = rest[n..].find(tag).ok_or(LexError::Dollar)?;
                let total = n + close + n;
                out.push(Token::new(Kind::Str, &rest[..total]));
                total
            } else {
                let n = 1 + rest[1..]
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(rest.len() - 1);
                out.push(Token::new(Kind::Param, &rest[..n]));
                n
            }
        } else if is_ident_start(c) {
            let n = rest
                .char_indices()
                .find(|&(_, ch)| !is_ident_cont(ch))
                .map_or(rest.len(), |(n, _)| n);
            out.push(Token::new(Kind::Word, &rest[..n]));
            n
        } else if c.is_ascii_digit()
            || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let n = number(rest);
            out.push(Token::new(Kind::Number, &rest[..n]));
            n
        } else if c == ';' {
            out.push(Token::new(Kind::Semi, ";"));
            1
        } else if rest.starts_with("::") {
            out.push(Token::new(Kind::Punct, "::"));
            2
        } else if OP_CHARS.contains(c) {
            let mut n = rest
                .char_indices()
                .find(|&(_, ch)| !OP_CHARS.contains(ch))
                .map_or(rest.len(), |(n, _)| n);
            // An operator never swallows the start of a comment.
            for pat in ["--", "/*"] {
                if let Some(p) = rest[..n].find(pat) {
                    n = n.min(p.max(1));
                }
            }
            out.push(Token::new(Kind::Punct, &rest[..n]));
            n
        } else {
            let n = c.len_utf8();
            out.push(Token::new(Kind::Punct, &rest[..n]));
            n
        };
        i += len;
    }
    Ok(out)
}

/// Length of a quoted token starting with `prefix` bytes then the quote char; the quote char is
/// escaped by doubling, and by a backslash when `backslash` is set.
fn quoted(s: &str, prefix: usize, q: char, backslash: bool) -> Option<usize> {
    let mut it = s.char_indices().skip(prefix + 1).peekable();
    while let Some((i, c)) = it.next() {
        if backslash && c == '\\' {
            it.next();
        } else if c == q {
            if it.peek().map(|&(_, n)| n) == Some(q) {
                it.next();
            } else {
                return Some(i + c.len_utf8());
            }
        }
    }
    None
}

fn block_comment(s: &str) -> Result<usize, LexError> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err(LexError::Comment)
}

/// `$tag$` at the start of `s`: its length.
fn dollar_tag(s: &str) -> Option<usize> {
    let rest = &s[1..];
    if rest.starts_with('$') {
        return Some(2);
    }
    let first = rest.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_' || !first.is_ascii()) {
        return None;
    }
    let end = rest.find(|ch: char| !(is_ident_cont(ch) && ch != '$'))?;
    if rest[end..].starts_with('$') {
        Some(end + 2)
    } else {
        None
    }
}

fn number(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' && !(i + 1 < b.len() && b[i + 1] == b'.') {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// Split into statements at top-level semicolons. Each statement keeps its own tokens (without
/// the `;`); statements made only of whitespace and comments are dropped.
pub fn split_statements(tokens: Vec<Token>) -> Vec<Vec<Token>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in tokens {
        if t.kind == Kind::Semi {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(t);
        }
    }
    out.push(cur);
    out.retain(|s: &Vec<Token>| s.iter().any(|t| !t.is_trivia()));
    out
}

pub fn render(tokens: &[Token]) -> String {
    tokens.iter().map(|t| t.text.as_str()).collect()
}

/// Quote `s` as a SQL string constant (standard_conforming_strings = on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quote `s` as an identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Dollar-quote `body` with a tag that does not occur in it.
pub fn dollar_quote(body: &str) -> String {
    let mut tag = String::from("$rss$");
    let mut n = 0u32;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$rss{n}$");
    }
    format!("{tag}{body}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, String)> {
        tokenize(sql)
            .unwrap()
            .into_iter()
            .filter(|t| !t.is_trivia())
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn round_trips_exactly() {
        let sql =
            "SELECT 'a''b', E'x\\'y', \"Q\"\"x\", $f$ ; $f$, $$x$$, $1 /* a /* b */ c */ -- z\n;";
        assert_eq!(render(&tokenize(sql).unwrap()), sql);
    }

    #[test]
    fn strings_hide_semicolons_and_keywords() {
        let toks = kinds("select ';', \"a;b\", $x$ ; drop $x$ -- ;\n");
        assert!(toks.iter().all(|(k, _)| *k != Kind::Semi));
        assert_eq!(toks[1], (Kind::Str, "';'".into()));
        assert_eq!(toks[3], (Kind::QuotedIdent, "\"a;b\"".into()));
        assert_eq!(toks[5], (Kind::Str, "$x$ ; drop $x$".into()));
    }

    #[test]
    fn string_values() {
        let t = tokenize("'it''s' E'a\\nb\\'' $$x$$ $q$y$q$").unwrap();
        let vals: Vec<_> = t.iter().filter_map(Token::string_value).collect();
        assert_eq!(vals, vec!["it's", "a\nb'", "x", "y"]);
    }

    #[test]
    fn quoted_identifiers_fold() {
        let t = tokenize("\"Order \"\"Items\"\"\"").unwrap();
        assert_eq!(t[0].ident().unwrap(), "order \"items\"");
    }

    #[test]
    fn errors_on_unterminated() {
        assert_eq!(tokenize("select 'x"), Err(LexError::String));
        assert_eq!(tokenize("select \"x"), Err(LexError::Ident));
        assert_eq!(tokenize("/* /* */"), Err(LexError::Comment));
        assert_eq!(tokenize("$a$ x"), Err(LexError::Dollar));
    }

    #[test]
    fn splits_statements() {
        let s = split_statements(tokenize("begin; ; select 1 -- c\n; /* only */ ;commit").unwrap());
        assert_eq!(s.len(), 3);
        assert_eq!(render(&s[2]), "commit");
    }

    #[test]
    fn numbers_params_operators() {
        let toks = kinds("x::int+1.5e3-$2 <> .5");
        let texts: Vec<_> = toks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            vec!["x", "::", "int", "+", "1.5e3", "-", "$2", "<>", ".5"]
        );
    }

    #[test]
    fn dollar_quote_avoids_collisions() {
        assert_eq!(dollar_quote("a"), "$rss$a$rss$");
        assert_eq!(dollar_quote("$rss$"), "$rss1$$rss$$rss1$");
    }
}
