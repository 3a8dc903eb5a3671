//! Label matchers exactly as Alertmanager parses them in its default mode (0.27 and later): the
//! UTF-8 parser, with the classic parser as the fallback, for `name="value"`, `!=`, `=~` and `!~`,
//! alone or as `{a="b", c=~"d"}`.
//!
//! Both of Alertmanager's parsers are here ([`classic`] and [`utf8`]), each checked against its
//! own upstream test table (`tests/data/alertmanager/matchers.yaml`), and composed as
//! Alertmanager's `compat` package composes them: the classic result wins whenever the classic
//! parser accepts the input; otherwise the UTF-8 result; an input both refuse is refused.
//! Regular expressions follow Go's RE2 semantics where they differ from the `regex` crate's
//! defaults: `\d`, `\w`, `\s` and `\b` are ASCII, as in Go.

use std::fmt;

use regex::Regex;

use crate::event::Labels;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Neither parser accepts the input; `reason` is the UTF-8 parser's positional message
    /// (`column:column: what: expected ...`).
    #[error("matcher `{input}` is invalid: {reason}")]
    Invalid { input: String, reason: String },
    #[error("matcher `{input}` has an invalid regular expression: {message}")]
    InvalidRegex { input: String, message: String },
    #[error(
        "matcher `{input}` has an empty label name; name the label, as `service=\"checkout\"`"
    )]
    EmptyName { input: String },
    #[error("`{input}` holds {count} matchers where one is expected; give them one by one")]
    NotOne { input: String, count: usize },
    #[error(
        "matcher `{input}` is wrapped in braces; write a single matcher without `{{` and `}}`"
    )]
    Braces { input: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }

    /// Alertmanager API v2's `isRegex` and `isEqual` flags as an operator.
    pub fn from_flags(is_regex: bool, is_equal: bool) -> Op {
        match (is_regex, is_equal) {
            (false, true) => Op::Equal,
            (false, false) => Op::NotEqual,
            (true, true) => Op::Regex,
            (true, false) => Op::NotRegex,
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, Op::Regex | Op::NotRegex)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, Op::Equal | Op::Regex)
    }
}

/// One label matcher. A missing label matches as the empty string, as in Alertmanager.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    /// As Alertmanager prints a matcher: a name with reserved characters is quoted (with the
    /// value) as Go quotes strings; otherwise the value alone, with OpenMetrics escapes. Either
    /// form parses back to the same matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.chars().any(utf8::is_reserved) {
            write!(
                f,
                "{}{}{}",
                go_quote(&self.name),
                self.op.as_str(),
                go_quote(&self.value)
            )
        } else {
            write!(f, "{}{}\"", self.name, self.op.as_str())?;
            for c in self.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '"' => f.write_str("\\\"")?,
                    other => write!(f, "{other}")?,
                }
            }
            f.write_str("\"")
        }
    }
}

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, Error> {
        let input = || format!("{name}{}{value:?}", op.as_str());
        if name.is_empty() {
            return Err(Error::EmptyName { input: input() });
        }
        let regex = if op.is_regex() {
            Some(compile_regex(value).map_err(|message| Error::InvalidRegex {
                input: input(),
                message,
            })?)
        } else {
            None
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses one matcher as Alertmanager's default mode does for a single matcher (the API's
    /// `filter`): no braces, exactly one matcher.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if input.starts_with('{') || input.ends_with('}') {
            return Err(Error::Braces {
                input: input.to_string(),
            });
        }
        let new = utf8::parse_one(input);
        let old = classic::parse_one(input);
        match (new, old) {
            (_, Ok(classic)) => Ok(classic),
            (Ok(new), Err(_)) => Ok(new),
            (Err(Failure::Count(count)), Err(_)) => Err(Error::NotOne {
                input: input.to_string(),
                count,
            }),
            (Err(failure), Err(_)) => Err(failure.into_error(input)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let actual = labels.get(&self.name).map(String::as_str).unwrap_or("");
        self.matches_value(actual)
    }

    /// Whether the matcher matches a label's value (the empty string for a missing label).
    pub fn matches_value(&self, actual: &str) -> bool {
        match self.op {
            Op::Equal => actual == self.value,
            Op::NotEqual => actual != self.value,
            Op::Regex => self
                .regex
                .as_ref()
                .is_some_and(|regex| regex.is_match(actual)),
            Op::NotRegex => !self
                .regex
                .as_ref()
                .is_some_and(|regex| regex.is_match(actual)),
        }
    }
}

/// Parses a list of matchers as Alertmanager's default mode does (configs, silences, amtool):
/// `{a="b", c=~"d"}`, or the same without braces. An input can hold no matcher at all (`{}`);
/// callers that need one say so.
pub fn parse_list(input: &str) -> Result<Vec<Matcher>, Error> {
    let new = utf8::parse_list(input);
    let old = classic::parse_list(input);
    match (new, old) {
        (_, Ok(classic)) => Ok(classic),
        (Ok(new), Err(_)) => Ok(new),
        (Err(failure), Err(_)) => Err(failure.into_error(input)),
    }
}

/// Whether all matchers match.
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|matcher| matcher.matches(labels))
}

/// Why one of the two parsers refused an input, in the parser's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Syntax(String),
    Regex(String),
    EmptyName,
    Count(usize),
}

impl Failure {
    /// The upstream parser's message.
    pub fn message(&self) -> String {
        match self {
            Failure::Syntax(message) | Failure::Regex(message) => message.clone(),
            Failure::EmptyName => "empty label name".into(),
            Failure::Count(count) => format!("expected 1 matcher, found {count}"),
        }
    }

    fn into_error(self, input: &str) -> Error {
        let input = input.to_string();
        match self {
            Failure::Syntax(mut reason) => {
                if reason.ends_with("expected an operator such as '=', '!=', '=~' or '!~'") {
                    reason.push_str("; consider `name=\"value\"`");
                }
                Error::Invalid { input, reason }
            }
            Failure::Regex(message) => Error::InvalidRegex { input, message },
            Failure::EmptyName => Error::EmptyName { input },
            Failure::Count(count) => Error::NotOne { input, count },
        }
    }
}

fn build(name: &str, op: Op, value: &str) -> Result<Matcher, Failure> {
    if name.is_empty() {
        return Err(Failure::EmptyName);
    }
    let regex = if op.is_regex() {
        Some(compile_regex(value).map_err(Failure::Regex)?)
    } else {
        None
    };
    Ok(Matcher {
        name: name.to_string(),
        op,
        value: value.to_string(),
        regex,
    })
}

/// Compiles a value as Alertmanager does, anchored at both ends, with Go's ASCII classes.
fn compile_regex(value: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{})$", go_classes(value)))
        .map_err(|error| last_line(&error.to_string()))
}

/// Go's RE2 reads `\d`, `\w`, `\s` and `\b` as ASCII where the `regex` crate reads them as
/// Unicode: spell them as the ASCII sets, so `web-\d+` does not match Arabic digits. Inside a
/// character class RE2 takes `[`, `&` and `~` literally, where the crate would read nesting and
/// set operations: escape them.
fn go_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let set = match next {
                    'd' | 'D' => Some("0-9"),
                    'w' | 'W' => Some("0-9A-Za-z_"),
                    's' | 'S' => Some("\\t\\n\\f\\r "),
                    _ => None,
                };
                let negated = next.is_ascii_uppercase();
                match set {
                    Some(set) if in_class && !negated => out.push_str(set),
                    Some(set) if negated => out.push_str(&format!("[^{set}]")),
                    Some(set) => out.push_str(&format!("[{set}]")),
                    None if !in_class && next == 'b' => out.push_str("(?-u:\\b)"),
                    None if !in_class && next == 'B' => out.push_str("(?-u:\\B)"),
                    None => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if in_class => {
                // `[[:alpha:]]`-style names stay as they are; any other `[` is a literal.
                let rest = chars.as_str();
                match rest.strip_prefix(':').and_then(|tail| tail.find(":]")) {
                    Some(end) => {
                        out.push('[');
                        out.push_str(&rest[..end + 3]);
                        chars = rest[end + 3..].chars();
                    }
                    None => out.push_str("\\["),
                }
            }
            '[' => {
                in_class = true;
                out.push('[');
                if chars.as_str().starts_with('^') {
                    out.push('^');
                    chars.next();
                }
                // A `]` right after `[` or `[^` is a literal in RE2.
                if chars.as_str().starts_with(']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

/// The regex crate's multi-line message, reduced to its last line without its `error: ` label.
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Quotes a string as Go's `strconv.Quote` does, which the UTF-8 parser's unquoting reads back.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Alertmanager's classic parser (`pkg/labels`, now `matcher/oldparse`): tolerant, regular
/// expression based, Prometheus label names only.
pub mod classic {
    use std::sync::LazyLock;

    use regex::Regex;

    use super::{build, Failure, Matcher, Op};

    // As upstream: `=~` before `=`, so `=~` is not read as `=` and a value starting with `~`.
    static MATCHER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*((?s).*?)[\t\n\f\r ]*$")
            .expect("a valid regex")
    });

    /// `ParseMatchers`: one leading `{` and one trailing `}` trimmed, split on commas outside
    /// double quotes, a trailing empty part dropped.
    pub fn parse_list(input: &str) -> Result<Vec<Matcher>, Failure> {
        let text = input.strip_prefix('{').unwrap_or(input);
        let text = text.strip_suffix('}').unwrap_or(text);
        let mut tokens = Vec::new();
        let mut token = String::new();
        let (mut inside_quotes, mut escaped) = (false, false);
        for c in text.chars() {
            match c {
                ',' if !inside_quotes => {
                    tokens.push(std::mem::take(&mut token));
                    continue;
                }
                ',' => {}
                '"' => {
                    if escaped {
                        escaped = false;
                    } else {
                        inside_quotes = !inside_quotes;
                    }
                }
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
            token.push(c);
        }
        let last = token.trim_matches(|c: char| c.is_whitespace());
        if !last.is_empty() {
            tokens.push(last.to_string());
        }
        tokens.iter().map(|token| parse_one(token)).collect()
    }

    /// `ParseMatcher`: one matcher; the value may be quoted, and `\"`, `\n` and `\\` are read as
    /// escapes in it, quoted or not; any other backslash is literal.
    pub fn parse_one(input: &str) -> Result<Matcher, Failure> {
        let Some(captures) = MATCHER.captures(input) else {
            return Err(Failure::Syntax(format!("bad matcher format: {input}")));
        };
        let (name, op, raw) = (&captures[1], &captures[2], &captures[3]);
        let (mut raw_value, mut expect_trailing_quote) = (raw, false);
        if let Some(rest) = raw.strip_prefix('"') {
            raw_value = rest;
            expect_trailing_quote = true;
        }
        let unescaped_quote = || {
            Failure::Syntax(format!(
                "matcher value contains unescaped double quote: {raw}"
            ))
        };
        let mut value = String::with_capacity(raw_value.len());
        let mut escaped = false;
        for (index, c) in raw_value.char_indices() {
            if escaped {
                escaped = false;
                match c {
                    'n' => value.push('\n'),
                    '"' | '\\' => value.push(c),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
                continue;
            }
            let last = index + c.len_utf8() == raw_value.len();
            match c {
                '\\' if !last => escaped = true,
                '\\' => value.push('\\'),
                '"' => {
                    if !expect_trailing_quote || !last {
                        return Err(unescaped_quote());
                    }
                    expect_trailing_quote = false;
                }
                other => value.push(other),
            }
        }
        if expect_trailing_quote {
            return Err(unescaped_quote());
        }
        let op = match op {
            "=" => Op::Equal,
            "!=" => Op::NotEqual,
            "=~" => Op::Regex,
            _ => Op::NotRegex,
        };
        build(name, op, &value)
    }
}

/// Alertmanager's UTF-8 parser (`matcher/parse`): a lexer and a small state machine; names and
/// values are unquoted runs of non-reserved characters or double-quoted Go strings. Its messages
/// carry the columns of the offending token, as upstream's do.
pub mod utf8 {
    use super::{build, Failure, Matcher, Op};

    /// Characters that end an unquoted name or value.
    pub fn is_reserved(c: char) -> bool {
        c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Eof,
        OpenBrace,
        CloseBrace,
        Comma,
        Equals,
        NotEquals,
        Matches,
        NotMatches,
        Quoted,
        Unquoted,
    }

    #[derive(Clone, Debug)]
    struct Token<'a> {
        kind: Kind,
        value: &'a str,
        column_start: usize,
        column_end: usize,
    }

    #[derive(Clone)]
    struct Lexer<'a> {
        input: &'a str,
        error: Option<String>,
        start: usize,
        pos: usize,
        width: usize,
        column: usize,
        cols: usize,
    }

    impl<'a> Lexer<'a> {
        fn new(input: &'a str) -> Self {
            Lexer {
                input,
                error: None,
                start: 0,
                pos: 0,
                width: 0,
                column: 0,
                cols: 0,
            }
        }

        fn next(&mut self) -> Option<char> {
            let c = self.input[self.pos..].chars().next();
            match c {
                None => self.width = 0,
                Some(c) => {
                    self.width = c.len_utf8();
                    self.pos += self.width;
                    self.cols += 1;
                }
            }
            c
        }

        fn rewind(&mut self) {
            self.pos -= self.width;
            if self.width > 0 {
                self.cols -= 1;
            }
        }

        fn accept(&mut self, valid: &str) -> bool {
            if self.next().is_some_and(|c| valid.contains(c)) {
                return true;
            }
            self.rewind();
            false
        }

        fn emit(&mut self, kind: Kind) -> Token<'a> {
            let token = Token {
                kind,
                value: &self.input[self.start..self.pos],
                column_start: self.column,
                column_end: self.cols,
            };
            self.start = self.pos;
            self.column = self.cols;
            token
        }

        fn eof(&self) -> Token<'a> {
            Token {
                kind: Kind::Eof,
                value: "",
                column_start: 0,
                column_end: 0,
            }
        }

        fn expected(&self, expected: &str) -> String {
            if self.pos >= self.input.len() {
                format!(
                    "{}:{}: unexpected end of input, expected one of '{expected}'",
                    self.column, self.cols
                )
            } else {
                format!(
                    "{}:{}: {}: expected one of '{expected}'",
                    self.column,
                    self.cols,
                    &self.input[self.start..self.pos]
                )
            }
        }

        fn scan(&mut self) -> Result<Token<'a>, String> {
            if let Some(error) = &self.error {
                return Err(error.clone());
            }
            let result = self.scan_inner();
            if let Err(error) = &result {
                self.error = Some(error.clone());
            }
            result
        }

        fn scan_inner(&mut self) -> Result<Token<'a>, String> {
            while let Some(c) = self.next() {
                match c {
                    '{' => return Ok(self.emit(Kind::OpenBrace)),
                    '}' => return Ok(self.emit(Kind::CloseBrace)),
                    ',' => return Ok(self.emit(Kind::Comma)),
                    '=' | '!' => {
                        self.rewind();
                        return self.scan_operator();
                    }
                    '"' => {
                        self.rewind();
                        return self.scan_quoted();
                    }
                    c if !is_reserved(c) => {
                        self.rewind();
                        while let Some(c) = self.next() {
                            if is_reserved(c) {
                                self.rewind();
                                break;
                            }
                        }
                        return Ok(self.emit(Kind::Unquoted));
                    }
                    c if c.is_whitespace() => {
                        self.start = self.pos;
                        self.column = self.cols;
                    }
                    _ => {
                        return Err(format!(
                            "{}:{}: {}: invalid input",
                            self.column,
                            self.cols,
                            &self.input[self.start..self.pos]
                        ))
                    }
                }
            }
            Ok(self.eof())
        }

        fn scan_operator(&mut self) -> Result<Token<'a>, String> {
            if self.accept("!") {
                if self.accept("=") {
                    return Ok(self.emit(Kind::NotEquals));
                }
                if self.accept("~") {
                    return Ok(self.emit(Kind::NotMatches));
                }
                return Err(self.expected("=~"));
            }
            if self.accept("=") {
                if self.accept("~") {
                    return Ok(self.emit(Kind::Matches));
                }
                return Ok(self.emit(Kind::Equals));
            }
            Err(self.expected("!="))
        }

        fn scan_quoted(&mut self) -> Result<Token<'a>, String> {
            if !self.accept("\"") {
                return Err(self.expected("\""));
            }
            let mut escaped = false;
            while let Some(c) = self.next() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    self.rewind();
                    break;
                }
            }
            if !self.accept("\"") {
                return Err(format!(
                    "{}:{}: {}: missing end \"",
                    self.column,
                    self.cols,
                    &self.input[self.start..self.pos]
                ));
            }
            Ok(self.emit(Kind::Quoted))
        }

        /// The next token without consuming it; a lexing error sticks, as upstream.
        fn peek(&mut self) -> Result<Token<'a>, String> {
            let saved = (self.start, self.pos, self.width, self.column, self.cols);
            let result = self.scan();
            (self.start, self.pos, self.width, self.column, self.cols) = saved;
            result
        }
    }

    const EOF: &str = "end of input";
    const NO_CLOSE_BRACE: &str = "expected close brace";

    struct Parser<'a> {
        lexer: Lexer<'a>,
        matchers: Vec<Matcher>,
        has_open_brace: bool,
    }

    enum State {
        OpenBrace,
        CloseBrace,
        Matcher,
        EndOfMatcher,
        Comma,
        Eof,
    }

    /// What `expectPeek` answers: the token, or end of input, or another token, or an error.
    enum Peeked<'a> {
        Token(Token<'a>),
        Eof,
        Unexpected(String),
    }

    impl<'a> Parser<'a> {
        fn expect_peek(&mut self, kinds: &[Kind]) -> Result<Peeked<'a>, String> {
            let token = self.lexer.peek()?;
            if token.kind == Kind::Eof {
                return Ok(Peeked::Eof);
            }
            if !kinds.contains(&token.kind) {
                return Ok(Peeked::Unexpected(format!(
                    "{}:{}: unexpected {}",
                    token.column_start, token.column_end, token.value
                )));
            }
            Ok(Peeked::Token(token))
        }

        /// `expect`: the token, consumed; or upstream's unwrapped error.
        fn expect(&mut self, kinds: &[Kind]) -> Result<Token<'a>, String> {
            match self.expect_peek(kinds)? {
                Peeked::Eof => Err(EOF.to_string()),
                Peeked::Unexpected(error) => Err(error),
                Peeked::Token(token) => {
                    self.lexer.scan()?;
                    Ok(token)
                }
            }
        }

        /// `expect`, with upstream's context after the error.
        fn expect_in(&mut self, kinds: &[Kind], context: &str) -> Result<Token<'a>, Failure> {
            self.expect(kinds)
                .map_err(|error| Failure::Syntax(format!("{error}: {context}")))
        }

        fn step(&mut self, state: State) -> Result<Option<State>, Failure> {
            let syntax = Failure::Syntax;
            Ok(match state {
                State::OpenBrace => {
                    let token = self.lexer.peek().map_err(syntax)?;
                    if token.kind == Kind::Eof {
                        return Ok(Some(State::Eof));
                    }
                    if token.kind == Kind::OpenBrace {
                        self.has_open_brace = true;
                        self.lexer.scan().map_err(syntax)?;
                    }
                    let token = self.lexer.peek().map_err(syntax)?;
                    match token.kind {
                        Kind::Eof | Kind::CloseBrace => Some(State::CloseBrace),
                        _ => Some(State::Matcher),
                    }
                }
                State::CloseBrace => {
                    let closed = self.expect(&[Kind::CloseBrace]);
                    if self.has_open_brace {
                        if let Err(error) = closed {
                            return Err(syntax(format!(
                                "0:{}: {error}: {NO_CLOSE_BRACE}",
                                self.lexer.cols
                            )));
                        }
                    } else if closed.is_ok() {
                        return Err(syntax(format!(
                            "0:{}: }}: expected opening brace",
                            self.lexer.cols
                        )));
                    }
                    Some(State::Eof)
                }
                State::Matcher => {
                    let token =
                        self.expect_in(&[Kind::Quoted, Kind::Unquoted], "expected label name")?;
                    let name = unquote(&token).map_err(syntax)?;
                    let token = self.expect_in(
                        &[
                            Kind::Equals,
                            Kind::NotEquals,
                            Kind::Matches,
                            Kind::NotMatches,
                        ],
                        "expected an operator such as '=', '!=', '=~' or '!~'",
                    )?;
                    let op = match token.kind {
                        Kind::Equals => Op::Equal,
                        Kind::NotEquals => Op::NotEqual,
                        Kind::Matches => Op::Regex,
                        _ => Op::NotRegex,
                    };
                    let token =
                        self.expect_in(&[Kind::Unquoted, Kind::Quoted], "expected label value")?;
                    let value = unquote(&token).map_err(syntax)?;
                    self.matchers.push(build(&name, op, &value)?);
                    Some(State::EndOfMatcher)
                }
                State::EndOfMatcher => {
                    match self
                        .expect_peek(&[Kind::Comma, Kind::CloseBrace])
                        .map_err(|error| {
                            syntax(format!("{error}: expected a comma or close brace"))
                        })? {
                        Peeked::Eof => Some(State::CloseBrace),
                        Peeked::Unexpected(error) => {
                            return Err(syntax(format!("{error}: expected a comma or close brace")))
                        }
                        Peeked::Token(token) if token.kind == Kind::Comma => Some(State::Comma),
                        Peeked::Token(_) => Some(State::CloseBrace),
                    }
                }
                State::Comma => {
                    self.expect_in(&[Kind::Comma], "expected a comma")?;
                    let context = "expected a matcher or close brace after comma";
                    match self
                        .expect_peek(&[Kind::CloseBrace, Kind::Unquoted, Kind::Quoted])
                        .map_err(|error| syntax(format!("{error}: {context}")))?
                    {
                        Peeked::Eof => Some(State::CloseBrace),
                        Peeked::Unexpected(error) => {
                            return Err(syntax(format!("{error}: {context}")))
                        }
                        Peeked::Token(token) if token.kind == Kind::CloseBrace => {
                            Some(State::CloseBrace)
                        }
                        Peeked::Token(_) => Some(State::Matcher),
                    }
                }
                State::Eof => {
                    let token = self
                        .lexer
                        .scan()
                        .map_err(|error| syntax(format!("{error}: expected end of input")))?;
                    if token.kind != Kind::Eof {
                        return Err(syntax(format!(
                            "{}:{}: {}: expected end of input",
                            token.column_start, token.column_end, token.value
                        )));
                    }
                    None
                }
            })
        }
    }

    /// `Matchers`: zero or more matchers, optionally in braces, a trailing comma allowed.
    pub fn parse_list(input: &str) -> Result<Vec<Matcher>, Failure> {
        let mut parser = Parser {
            lexer: Lexer::new(input),
            matchers: Vec::new(),
            has_open_brace: false,
        };
        let mut state = State::OpenBrace;
        while let Some(next) = parser.step(state)? {
            state = next;
        }
        Ok(parser.matchers)
    }

    /// `Matcher`: exactly one matcher, braces allowed.
    pub fn parse_one(input: &str) -> Result<Matcher, Failure> {
        let mut list = parse_list(input)?;
        match list.len() {
            1 => Ok(list.remove(0)),
            0 => Err(Failure::Syntax("no matchers".into())),
            count => Err(Failure::Count(count)),
        }
    }

    fn unquote(token: &Token<'_>) -> Result<String, String> {
        let invalid = || {
            format!(
                "{}:{}: {}: invalid input",
                token.column_start, token.column_end, token.value
            )
        };
        if token.kind != Kind::Quoted {
            return Ok(token.value.to_string());
        }
        go_unquote(token.value).ok_or_else(invalid)
    }

    /// Go's `strconv.Unquote` for a double-quoted string, and the UTF-8 check upstream adds.
    pub fn go_unquote(quoted: &str) -> Option<String> {
        let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\n') {
            return None;
        }
        let mut bytes = Vec::with_capacity(inner.len());
        let mut chars = inner.chars();
        let hex = |chars: &mut std::str::Chars<'_>, count: usize| -> Option<u32> {
            let mut value = 0u32;
            for _ in 0..count {
                value = value * 16 + chars.next()?.to_digit(16)?;
            }
            Some(value)
        };
        while let Some(c) = chars.next() {
            match c {
                '"' => return None,
                '\\' => {
                    let escape = chars.next()?;
                    match escape {
                        'a' => bytes.push(7),
                        'b' => bytes.push(8),
                        'f' => bytes.push(12),
                        'n' => bytes.push(b'\n'),
                        'r' => bytes.push(b'\r'),
                        't' => bytes.push(b'\t'),
                        'v' => bytes.push(11),
                        '\\' => bytes.push(b'\\'),
                        '"' => bytes.push(b'"'),
                        'x' => bytes.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
                        'u' | 'U' => {
                            let code = hex(&mut chars, if escape == 'u' { 4 } else { 8 })?;
                            let c = char::from_u32(code)?;
                            bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        '0'..='7' => {
                            let mut value = escape.to_digit(8)?;
                            for _ in 0..2 {
                                value = value * 8 + chars.next()?.to_digit(8)?;
                            }
                            bytes.push(u8::try_from(value).ok()?);
                        }
                        _ => return None,
                    }
                }
                c => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        String::from_utf8(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator_and_matches_like_alertmanager() {
        let cases = [
            ("job=\"api\"", &[("job", "api")][..], true),
            ("job=\"api\"", &[("job", "db")][..], false),
            ("job!=\"api\"", &[("job", "db")][..], true),
            ("job!=\"api\"", &[][..], true),
            (
                "severity=~\"crit.*|page\"",
                &[("severity", "critical")][..],
                true,
            ),
            ("severity=~\"crit\"", &[("severity", "critical")][..], false),
            (
                "severity!~\"info|debug\"",
                &[("severity", "page")][..],
                true,
            ),
            ("missing=\"\"", &[][..], true),
            ("job=api", &[("job", "api")][..], true),
            (
                "msg=\"a \\\"quoted\\\" word\"",
                &[("msg", "a \"quoted\" word")][..],
                true,
            ),
            // As Alertmanager configs write it: the backslash reaches the regex.
            (r#"instance=~"web-\d+""#, &[("instance", "web-1")][..], true),
            (
                r#"instance=~"web-\d+""#,
                &[("instance", "web-d")][..],
                false,
            ),
            // Go's `\d` is ASCII.
            (
                r#"instance=~"web-\d+""#,
                &[("instance", "web-٣")][..],
                false,
            ),
            (
                r#"severity=~"(?i)CRIT.*""#,
                &[("severity", "critical")][..],
                true,
            ),
            (r#"path=~"[\d/]+""#, &[("path", "/12/3")][..], true),
            (
                r#""service.name"="checkout""#,
                &[("service.name", "checkout")][..],
                true,
            ),
        ];
        for (input, pairs, expected) in cases {
            let list = parse_list(input).unwrap_or_else(|error| panic!("{input}: {error}"));
            assert_eq!(list.len(), 1, "{input}");
            assert_eq!(
                list[0].matches(&labels(pairs)),
                expected,
                "{input} against {pairs:?}"
            );
        }
    }

    #[test]
    fn parses_lists_with_commas_inside_quotes() {
        let list = parse_list("{alertname=\"A,B\", severity=~\"x|y\"}").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].value, "A,B");
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let message = |input: &str| parse_list(input).unwrap_err().to_string();
        assert_eq!(
            message("service"),
            "matcher `service` is invalid: end of input: expected an operator such as '=', '!=', '=~' or '!~'; consider `name=\"value\"`"
        );
        assert_eq!(
            message(","),
            "matcher `,` is invalid: 0:1: unexpected ,: expected label name"
        );
        assert!(matches!(
            parse_list("job=~\"(\""),
            Err(Error::InvalidRegex { .. })
        ));
        assert!(matches!(
            parse_list("\"\"=\"x\""),
            Err(Error::EmptyName { .. })
        ));
        assert!(matches!(Matcher::parse("{a=b}"), Err(Error::Braces { .. })));
    }
}

/// Alertmanager's own test tables, each run against the parser it was written for, and every
/// input whose default-mode result the tables determine run through [`parse_list`].
#[cfg(test)]
mod upstream {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Tables {
        classic: Table,
        utf8: Table,
        utf8_one: Table,
        fallback: Table,
        fallback_one: Table,
        compliance: Table,
        default: Table,
    }

    #[derive(Deserialize)]
    struct Table {
        source: String,
        cases: Vec<Case>,
    }

    #[derive(Deserialize, Clone)]
    struct Case {
        input: String,
        #[serde(default)]
        want: Option<Vec<(String, String, String)>>,
        #[serde(default)]
        err: Option<String>,
        #[serde(default)]
        skip: bool,
    }

    type Outcome = Result<Vec<(String, String, String)>, Failure>;

    fn tables() -> Tables {
        serde_yaml_ng::from_str(include_str!(
            "../../../tests/data/alertmanager/matchers.yaml"
        ))
        .expect("the tables parse")
    }

    fn triples(list: Vec<Matcher>) -> Vec<(String, String, String)> {
        list.into_iter()
            .map(|m| (m.name, m.op.as_str().to_string(), m.value))
            .collect()
    }

    /// Checks one row; `exact` compares upstream's message too (Go's regex messages excepted).
    fn check(table: &str, case: &Case, got: Outcome, exact: bool) -> Option<String> {
        let problem = match (&case.want, &case.err, got) {
            (Some(want), _, Ok(got)) if *want == got => return None,
            (Some(want), _, Ok(got)) => format!("want {want:?}, got {got:?}"),
            (Some(want), _, Err(failure)) => format!("want {want:?}, got error {failure:?}"),
            (None, Some(err), Err(failure)) => {
                let same = !exact
                    || match &failure {
                        Failure::Regex(_) => err.starts_with("error parsing regexp"),
                        other => other.message() == *err,
                    };
                if same {
                    return None;
                }
                format!("want error `{err}`, got `{}`", failure.message())
            }
            (None, Some(err), Ok(got)) => format!("want error `{err}`, got {got:?}"),
            (None, None, _) => "row has neither want nor err".to_string(),
        };
        Some(format!("{table}: `{}`: {problem}", case.input))
    }

    fn default_list(input: &str) -> Outcome {
        parse_list(input)
            .map(triples)
            .map_err(|error| Failure::Syntax(error.to_string()))
    }

    #[test]
    fn every_upstream_table_agrees() {
        let tables = tables();
        let mut failures = Vec::new();
        let mut counts = Vec::new();
        let mut run = |name: &str, table: &Table, parse: &dyn Fn(&Case) -> Option<String>| {
            assert!(
                table.source.starts_with("prometheus/alertmanager "),
                "{name}"
            );
            let before = failures.len();
            failures.extend(table.cases.iter().filter_map(parse));
            counts.push(format!(
                "{name}: {}/{}",
                table.cases.len() - (failures.len() - before),
                table.cases.len()
            ));
        };
        run("classic", &tables.classic, &|case| {
            check(
                "classic",
                case,
                classic::parse_list(&case.input).map(triples),
                true,
            )
        });
        run("utf8", &tables.utf8, &|case| {
            check(
                "utf8",
                case,
                utf8::parse_list(&case.input).map(triples),
                true,
            )
        });
        run("utf8_one", &tables.utf8_one, &|case| {
            let got = utf8::parse_one(&case.input).map(|one| triples(vec![one]));
            check("utf8_one", case, got, true)
        });
        run("fallback", &tables.fallback, &|case| {
            check("fallback", case, default_list(&case.input), false)
        });
        run("fallback_one", &tables.fallback_one, &|case| {
            let got = Matcher::parse(&case.input)
                .map(|one| triples(vec![one]))
                .map_err(|error| Failure::Syntax(error.to_string()));
            check("fallback_one", case, got, false)
        });
        run("compliance", &tables.compliance, &|case| {
            // Upstream skips where the UTF-8 parser differs; the default mode then gives the
            // classic result, which is what `want` holds.
            let default = check(
                "compliance (default mode)",
                case,
                default_list(&case.input),
                false,
            );
            if case.skip {
                return default;
            }
            let got = utf8::parse_list(&case.input).map(triples);
            check("compliance", case, got, false).or(default)
        });
        eprintln!("alertmanager matcher tables: {}", counts.join(", "));
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Every distinct input of the tables whose default-mode result they determine: the classic
    /// result where the classic parser accepts, else the UTF-8 parser's.
    #[test]
    fn the_default_mode_agrees_on_every_determined_input() {
        let tables = tables();
        let mut classic: BTreeMap<&str, &Case> = BTreeMap::new();
        let mut utf8: BTreeMap<&str, &Case> = BTreeMap::new();
        for case in &tables.classic.cases {
            classic.insert(&case.input, case);
        }
        for case in tables.compliance.cases.iter().filter(|case| case.skip) {
            classic.insert(&case.input, case);
        }
        for case in tables.utf8.cases.iter() {
            utf8.insert(&case.input, case);
        }
        for case in tables.compliance.cases.iter().filter(|case| !case.skip) {
            // A row the UTF-8 parser passes without a skip is also the classic parser's result.
            utf8.entry(&case.input).or_insert(case);
            classic.entry(&case.input).or_insert(case);
        }
        let inputs: std::collections::BTreeSet<&str> = tables
            .classic
            .cases
            .iter()
            .chain(&tables.utf8.cases)
            .chain(&tables.compliance.cases)
            .chain(&tables.fallback.cases)
            .map(|case| case.input.as_str())
            .collect();
        let fallback: BTreeMap<&str, &Case> = tables
            .fallback
            .cases
            .iter()
            .chain(&tables.default.cases)
            .map(|case| (case.input.as_str(), case))
            .collect();
        let (mut checked, mut failures) = (0, Vec::new());
        for input in &inputs {
            let expected = match (fallback.get(input), classic.get(input), utf8.get(input)) {
                (Some(case), _, _) => Some((*case).clone()),
                (None, Some(case), _) if case.want.is_some() => Some((*case).clone()),
                (None, Some(_), Some(case)) => Some((*case).clone()),
                (None, None, Some(case)) if case.err.is_some() => None,
                (None, None, Some(case)) => Some((*case).clone()),
                _ => None,
            };
            let Some(expected) = expected else { continue };
            checked += 1;
            failures.extend(check("default mode", &expected, default_list(input), false));
        }
        eprintln!(
            "alertmanager default mode: {}/{checked} determined inputs of {} distinct agree",
            checked - failures.len(),
            inputs.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(checked, inputs.len(), "every input is determined");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What a matcher prints, it parses back to the same matcher, whatever its name and value.
        #[test]
        fn display_round_trips(
            name in prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,12}", "\\PC{1,12}"],
            value in "[ -~\t\n]{0,24}|\\PC{0,12}",
            op in prop_oneof![Just(Op::Equal), Just(Op::NotEqual)],
        ) {
            let matcher = Matcher::new(&name, op, &value).expect("valid");
            let parsed = parse_list(&matcher.to_string()).expect("round trip");
            prop_assert_eq!(parsed, vec![matcher]);
        }

        /// No input makes the parsers panic; they answer with matchers or an error.
        #[test]
        fn never_panics(input in "\\PC{0,40}") {
            let _ = parse_list(&input);
            let _ = Matcher::parse(&input);
        }
    }
}
