//! Label matchers in Alertmanager's syntax: `name="value"`, `!=`, `=~` and `!~`, alone or as `{a="b", c=~"d"}`.

use std::fmt;

use regex::Regex;

use crate::event::Labels;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("matcher `{input}` has no operator; consider `name=\"value\"`, `!=`, `=~` or `!~`")]
    NoOperator { input: String },
    #[error("matcher `{input}` has an empty label name; consider `name=\"value\"`")]
    EmptyName { input: String },
    #[error("matcher `{input}` has an invalid label name `{name}`: names are letters, digits and `_`, not starting with a digit")]
    InvalidName { input: String, name: String },
    #[error("matcher `{input}` has an unterminated quoted value; close it with `\"`")]
    Unterminated { input: String },
    #[error("matcher `{input}` has text after its quoted value: `{rest}`")]
    TrailingText { input: String, rest: String },
    #[error("matcher `{input}` has an invalid regular expression: {message}")]
    InvalidRegex { input: String, message: String },
    #[error("matcher list `{input}` is missing its closing `}}`")]
    UnclosedBrace { input: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, Error> {
        let input = format!("{name}{}{value:?}", op.as_str());
        validate_name(&input, name)?;
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                // Alertmanager anchors regular expressions at both ends.
                Regex::new(&format!("^(?:{value})$")).map_err(|error| Error::InvalidRegex {
                    input,
                    message: first_line(&error.to_string()),
                })?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses one matcher such as `severity=~"critical|page"` or `job=api`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let text = input.trim();
        let (op_start, op) = find_operator(text).ok_or_else(|| Error::NoOperator {
            input: input.to_string(),
        })?;
        let name = text[..op_start].trim();
        if name.is_empty() {
            return Err(Error::EmptyName {
                input: input.to_string(),
            });
        }
        let raw_value = text[op_start + op.as_str().len()..].trim();
        let value = parse_value(input, raw_value)?;
        let mut matcher = Self::new(name, op, &value).map_err(|error| with_input(error, input))?;
        matcher.value = value;
        Ok(matcher)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let actual = labels.get(&self.name).map(String::as_str).unwrap_or("");
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

/// Parses a list of matchers: `{a="b", c=~"d"}`, or the same without braces.
pub fn parse_list(input: &str) -> Result<Vec<Matcher>, Error> {
    let mut text = input.trim();
    if let Some(rest) = text.strip_prefix('{') {
        text = rest.strip_suffix('}').ok_or_else(|| Error::UnclosedBrace {
            input: input.to_string(),
        })?;
    }
    split_top_level(text)
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .map(Matcher::parse)
        .collect()
}

/// Whether all matchers match.
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|matcher| matcher.matches(labels))
}

fn with_input(error: Error, input: &str) -> Error {
    match error {
        Error::InvalidName { name, .. } => Error::InvalidName {
            input: input.to_string(),
            name,
        },
        Error::InvalidRegex { message, .. } => Error::InvalidRegex {
            input: input.to_string(),
            message,
        },
        other => other,
    }
}

fn validate_name(input: &str, name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let valid_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::InvalidName {
            input: input.to_string(),
            name: name.to_string(),
        });
    }
    Ok(())
}

fn find_operator(text: &str) -> Option<(usize, Op)> {
    let bytes = text.as_bytes();
    for index in 0..bytes.len() {
        match bytes[index] {
            b'"' => return None,
            b'!' if bytes.get(index + 1) == Some(&b'=') => {
                return Some((
                    index,
                    if bytes.get(index + 2) == Some(&b'~') {
                        Op::NotRegex
                    } else {
                        Op::NotEqual
                    },
                ))
            }
            b'!' if bytes.get(index + 1) == Some(&b'~') => return Some((index, Op::NotRegex)),
            b'=' => {
                return Some((
                    index,
                    if bytes.get(index + 1) == Some(&b'~') {
                        Op::Regex
                    } else {
                        Op::Equal
                    },
                ))
            }
            _ => {}
        }
    }
    None
}

fn parse_value(input: &str, raw: &str) -> Result<String, Error> {
    let Some(quoted) = raw.strip_prefix('"') else {
        // Unquoted values are accepted, as Alertmanager's UTF-8 matchers do.
        return Ok(raw.to_string());
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, other)) => value.push(other),
                None => {
                    return Err(Error::Unterminated {
                        input: input.to_string(),
                    })
                }
            },
            '"' => {
                let rest = quoted[index + 1..].trim();
                if !rest.is_empty() {
                    return Err(Error::TrailingText {
                        input: input.to_string(),
                        rest: rest.to_string(),
                    });
                }
                return Ok(value);
            }
            other => value.push(other),
        }
    }
    Err(Error::Unterminated {
        input: input.to_string(),
    })
}

/// Splits on commas that are not inside quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The regex crate's multi-line message, reduced to its last line without its `error: ` label.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
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
        ];
        for (input, pairs, expected) in cases {
            let matcher = Matcher::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"));
            assert_eq!(
                matcher.matches(&labels(pairs)),
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
    fn rejects_bad_matchers_with_a_reason() {
        assert!(matches!(
            Matcher::parse("job"),
            Err(Error::NoOperator { .. })
        ));
        assert!(matches!(
            Matcher::parse("=\"x\""),
            Err(Error::EmptyName { .. })
        ));
        assert!(matches!(
            Matcher::parse("1job=\"x\""),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            Matcher::parse("job=\"x"),
            Err(Error::Unterminated { .. })
        ));
        assert!(matches!(
            Matcher::parse("job=\"x\" y"),
            Err(Error::TrailingText { .. })
        ));
        assert!(matches!(
            Matcher::parse("job=~\"(\""),
            Err(Error::InvalidRegex { .. })
        ));
        assert!(matches!(
            parse_list("{job=\"x\""),
            Err(Error::UnclosedBrace { .. })
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What a matcher prints, it parses back to the same matcher, whatever the value holds.
        #[test]
        fn display_round_trips(
            name in "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
            value in "[ -~\t\n]{0,24}",
            op in prop_oneof![Just(Op::Equal), Just(Op::NotEqual)],
        ) {
            let matcher = Matcher::new(&name, op, &value).expect("valid");
            let parsed = Matcher::parse(&matcher.to_string()).expect("round trip");
            prop_assert_eq!(parsed, matcher);
        }

        /// No input makes the parser panic; it answers with a matcher or an error.
        #[test]
        fn never_panics(input in "\\PC{0,40}") {
            let _ = parse_list(&input);
        }
    }
}
