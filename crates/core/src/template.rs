//! Templates (minijinja) for rule parameters, step inputs and webhook mappings.
//!
//! Undefined variables are errors, not empty strings: a typo in `{{ labels.podd }}` must fail the run
//! before it executes `kubectl delete pod ""`, not after.
//!
//! A template compiled as a URL ([`TemplatesBuilder::add_url`]) percent-encodes every value it
//! interpolates for the part of the URL the value lands in, so an event's label cannot change
//! which path, query or host a request goes to (see [`url`]).

use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid template `{source_text}`: {message}")]
    Syntax {
        source_text: String,
        message: String,
    },
    #[error("template `{source_text}` failed: {message}; consider `| default(\"...\")` for values that may be missing")]
    Render {
        source_text: String,
        message: String,
    },
    #[error("url template `{source_text}` refused a value: {message}")]
    Url {
        source_text: String,
        message: String,
    },
}

/// A set of compiled templates, addressed by the handles [`TemplatesBuilder::add`] returns.
#[derive(Clone)]
pub struct Templates {
    environment: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// Builds a [`Templates`] set; every added source is syntax-checked here, once.
pub struct TemplatesBuilder {
    environment: Environment<'static>,
    count: usize,
}

/// A handle to one compiled template, or a literal string that needs no rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Template {
    Literal(String),
    Compiled { id: String, source_text: String },
}

impl Template {
    /// Whether rendering gives the source text back whatever the context.
    pub fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }
}

impl Default for TemplatesBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplatesBuilder {
    pub fn new() -> Self {
        Self {
            environment: environment(),
            count: 0,
        }
    }

    pub fn add(&mut self, source_text: &str) -> Result<Template, Error> {
        self.add_named(source_text, "")
    }

    /// Adds a template whose output is a URL: each value it interpolates is encoded for the part of
    /// the URL it lands in (see [`url`]); `| safe` inserts a value as it is.
    pub fn add_url(&mut self, source_text: &str) -> Result<Template, Error> {
        self.add_named(source_text, url::SUFFIX)
    }

    fn add_named(&mut self, source_text: &str, suffix: &str) -> Result<Template, Error> {
        if !source_text.contains("{{") && !source_text.contains("{%") {
            return Ok(Template::Literal(source_text.to_string()));
        }
        let id = format!("t{}{suffix}", self.count);
        self.count += 1;
        self.environment
            .add_template_owned(id.clone(), source_text.to_string())
            .map_err(|error| Error::Syntax {
                source_text: source_text.to_string(),
                message: describe(&error),
            })?;
        Ok(Template::Compiled {
            id,
            source_text: source_text.to_string(),
        })
    }

    pub fn build(self) -> Templates {
        Templates {
            environment: Arc::new(self.environment),
        }
    }
}

/// A step's `with` inputs compiled once: the JSON structure with every string a [`Template`].
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// Numbers, booleans and null pass through as they are.
    Value(serde_json::Value),
    Text(Template),
    Array(Vec<Inputs>),
    Object(Vec<(String, Inputs)>),
}

impl Inputs {
    /// Whether no string inside needs rendering.
    pub fn is_literal(&self) -> bool {
        match self {
            Inputs::Value(_) => true,
            Inputs::Text(template) => template.is_literal(),
            Inputs::Array(items) => items.iter().all(Inputs::is_literal),
            Inputs::Object(fields) => fields.iter().all(|(_, value)| value.is_literal()),
        }
    }
}

impl TemplatesBuilder {
    /// Compiles every string inside `with`; a syntax error comes back with its path under `path`.
    pub fn add_inputs(
        &mut self,
        with: &serde_json::Value,
        path: &str,
    ) -> Result<Inputs, (String, Error)> {
        self.add_inputs_with_urls(with, path, &[])
    }

    /// As [`add_inputs`](Self::add_inputs), compiling the strings at the paths in `urls` (such as
    /// `with.url`) as URLs.
    pub fn add_inputs_with_urls(
        &mut self,
        with: &serde_json::Value,
        path: &str,
        urls: &[&str],
    ) -> Result<Inputs, (String, Error)> {
        Ok(match with {
            serde_json::Value::String(text) => {
                let template = if urls.contains(&path) {
                    self.add_url(text)
                } else {
                    self.add(text)
                };
                Inputs::Text(template.map_err(|error| (path.to_string(), error))?)
            }
            serde_json::Value::Array(items) => Inputs::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        self.add_inputs_with_urls(item, &format!("{path}[{index}]"), urls)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => Inputs::Object(
                map.iter()
                    .map(|(key, value)| {
                        Ok((
                            key.clone(),
                            self.add_inputs_with_urls(value, &format!("{path}.{key}"), urls)?,
                        ))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Inputs::Value(other.clone()),
        })
    }
}

impl Templates {
    /// Renders compiled inputs back into JSON.
    pub fn render_inputs(
        &self,
        inputs: &Inputs,
        context: &impl Serialize,
    ) -> Result<serde_json::Value, Error> {
        Ok(match inputs {
            Inputs::Value(value) => value.clone(),
            Inputs::Text(template) => serde_json::Value::String(self.render(template, context)?),
            Inputs::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| self.render_inputs(item, context))
                    .collect::<Result<_, _>>()?,
            ),
            Inputs::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), self.render_inputs(value, context)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    pub fn render(&self, template: &Template, context: &impl Serialize) -> Result<String, Error> {
        match template {
            Template::Literal(text) => Ok(text.clone()),
            Template::Compiled { id, source_text } => {
                let compiled =
                    self.environment
                        .get_template(id)
                        .map_err(|error| Error::Render {
                            source_text: source_text.clone(),
                            message: describe(&error),
                        })?;
                let rendered = compiled.render(context).map_err(|error| Error::Render {
                    source_text: source_text.clone(),
                    message: describe(&error),
                })?;
                if !id.ends_with(url::SUFFIX) {
                    return Ok(rendered);
                }
                url::assemble(&rendered).map_err(|message| Error::Url {
                    source_text: source_text.clone(),
                    message,
                })
            }
        }
    }
}

fn environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_keep_trailing_newline(false);
    // URL templates are told apart by name; their values are marked for `url::assemble`.
    environment.set_auto_escape_callback(|name| {
        if name.ends_with(url::SUFFIX) {
            AutoEscape::Custom(url::SUFFIX)
        } else {
            AutoEscape::None
        }
    });
    environment.set_formatter(|out, state, value| match state.auto_escape() {
        AutoEscape::Custom(url::SUFFIX) if value.is_safe() => Ok(write!(out, "{value}")?),
        AutoEscape::Custom(url::SUFFIX) => Ok(url::mark(out, &value.to_string())?),
        _ => minijinja::escape_formatter(out, state, value),
    });
    environment
}

/// URL templates: every value a template interpolates is encoded for the part of the URL where
/// it lands, decided from the text around it once the whole template has rendered.
///
/// - Before the path (`http://{{ host }}:{{ port }}/`): the value must be a host name, an IP
///   address or a port (letters, digits, `.`, `-`, `_`, `:`, `[`, `]`) and is inserted as it is;
///   anything else is refused, since encoding cannot make it a host.
///   A value that starts the template and itself starts with `http://` or `https://` is a base
///   URL, inserted as it is (`{{ params.base_url }}/items`).
/// - In the path, the query and the fragment: every byte but the unreserved `A-Z a-z 0-9 - . _ ~`
///   is percent-encoded, so a value stays one path segment or one query value: `/`, `?`, `#`,
///   `&`, `=`, `;`, `%` and spaces cannot start another. A value that makes a whole path segment
///   `.` or `..` is refused: no encoding keeps a URL parser from climbing the path on it.
/// - `{{ value | safe }}` inserts the value as it is, for a template author who means it.
pub mod url {
    /// The name suffix of URL templates, and the name of their auto-escape mode.
    pub(super) const SUFFIX: &str = ".url";
    /// Private-use characters that bracket each interpolated value in the raw rendering.
    const OPEN: char = '\u{E000}';
    const CLOSE: char = '\u{E001}';
    /// Escapes one of these three inside a value.
    const ESCAPE: char = '\u{E002}';
    /// A value quoted in an error is cut to this many characters.
    const MAX_QUOTED_CHARS: usize = 80;

    /// Writes a value bracketed for [`assemble`].
    pub(super) fn mark(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
        out.write_char(OPEN)?;
        for ch in value.chars() {
            if matches!(ch, OPEN | CLOSE | ESCAPE) {
                out.write_char(ESCAPE)?;
            }
            out.write_char(ch)?;
        }
        out.write_char(CLOSE)
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Part {
        /// Nothing before the value.
        Start,
        /// The scheme, user info, host or port.
        Authority,
        Path,
        Query,
        Fragment,
    }

    /// Where a value appended to `url` would land.
    fn part(url: &str) -> Part {
        let Some(scheme_end) = url.find("://") else {
            return if url.is_empty() {
                Part::Start
            } else {
                Part::Authority
            };
        };
        let rest = &url[scheme_end + 3..];
        // A URL parser takes a backslash for `/` in http(s) URLs.
        match rest.find(['/', '\\', '?', '#']) {
            None => Part::Authority,
            Some(at) if rest[at..].contains('#') => Part::Fragment,
            Some(at) if rest[at..].contains('?') => Part::Query,
            Some(_) => Part::Path,
        }
    }

    /// Turns a raw rendering with bracketed values into the URL.
    pub(super) fn assemble(rendered: &str) -> Result<String, String> {
        let mut url = String::with_capacity(rendered.len());
        // Where each value encoded into the path begins and ends in `url`.
        let mut in_path = Vec::new();
        let mut chars = rendered.chars();
        while let Some(ch) = chars.next() {
            match ch {
                OPEN => {}
                CLOSE | ESCAPE => return Err(malformed()),
                literal => {
                    url.push(literal);
                    continue;
                }
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or_else(malformed)? {
                    CLOSE => break,
                    ESCAPE => value.push(chars.next().ok_or_else(malformed)?),
                    ch => value.push(ch),
                }
            }
            match part(&url) {
                Part::Start if is_base_url(&value) => url.push_str(&value),
                Part::Start | Part::Authority => {
                    if let Some(bad) = value.chars().find(|ch| !is_host_char(*ch)) {
                        return Err(format!(
                            "`{}` cannot be part of a host name (it has `{}`); only letters, digits, `.`, `-`, `_`, `:`, `[` and `]` can, and `| safe` inserts a value as it is",
                            quote(&value),
                            bad.escape_debug()
                        ));
                    }
                    url.push_str(&value);
                }
                Part::Path => {
                    let start = url.len();
                    encode_into(&mut url, &value);
                    in_path.push((start, url.len()));
                }
                Part::Query | Part::Fragment => encode_into(&mut url, &value),
            }
        }
        for (start, end) in in_path {
            let segment_start = url[..start].rfind(['/', '\\']).map_or(0, |at| at + 1);
            let segment_end = url[end..]
                .find(['/', '\\', '?', '#'])
                .map_or(url.len(), |at| end + at);
            let segment = &url[segment_start..segment_end];
            if is_dot_segment(segment) {
                return Err(format!(
                    "a value makes the path segment `{segment}`, which would climb the path; refuse such values before they reach the url"
                ));
            }
        }
        Ok(url)
    }

    fn malformed() -> String {
        "the template wrote a private-use character (U+E000 to U+E002) that urls reserve".into()
    }

    fn is_base_url(value: &str) -> bool {
        let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    }

    fn is_host_char(ch: char) -> bool {
        ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | ':' | '[' | ']')
    }

    fn is_dot_segment(segment: &str) -> bool {
        let lower = segment.to_ascii_lowercase();
        matches!(
            lower.as_str(),
            "." | ".." | "%2e" | ".%2e" | "%2e." | "%2e%2e"
        )
    }

    /// Percent-encodes every byte but the unreserved characters of RFC 3986.
    fn encode_into(url: &mut String, value: &str) {
        for byte in value.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                url.push(char::from(byte));
            } else {
                url.push('%');
                url.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
                url.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 0xf)]));
            }
        }
    }

    fn quote(value: &str) -> String {
        match value.char_indices().nth(MAX_QUOTED_CHARS) {
            Some((cut, _)) => format!("{}...", value[..cut].escape_debug()),
            None => value.escape_debug().to_string(),
        }
    }
}

fn describe(error: &minijinja::Error) -> String {
    let mut message = error
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| error.kind().to_string());
    if let Some(line) = error.line() {
        if line > 1 {
            message.push_str(&format!(" (template line {line})"));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_refuses_undefined_values() {
        let mut builder = TemplatesBuilder::new();
        let ok = builder.add("restart {{ labels.service }}").unwrap();
        let missing = builder.add("{{ labels.nope }}").unwrap();
        let fallback = builder.add("{{ labels.nope | default('x') }}").unwrap();
        let templates = builder.build();
        let context = json!({"labels": {"service": "api"}});
        assert_eq!(templates.render(&ok, &context).unwrap(), "restart api");
        assert!(matches!(
            templates.render(&missing, &context),
            Err(Error::Render { .. })
        ));
        assert_eq!(templates.render(&fallback, &context).unwrap(), "x");
        assert!(matches!(
            TemplatesBuilder::new().add("{{ unclosed"),
            Err(Error::Syntax { .. })
        ));
    }

    fn render_url(source: &str, context: &serde_json::Value) -> Result<String, Error> {
        let mut builder = TemplatesBuilder::new();
        let template = builder.add_url(source).unwrap();
        builder.build().render(&template, context)
    }

    #[test]
    fn url_values_stay_in_their_path_segment_and_query_value() {
        let context = json!({"labels": {"v": "../../admin/delete?x=1#", "q": "a b&c=d+e#f", "host": "api-1.internal:9100"}});
        // The finding: this label made the request go to `/admin/delete?x=1`.
        assert_eq!(
            render_url("http://h/items/{{ labels.v }}/drain", &context).unwrap(),
            "http://h/items/..%2F..%2Fadmin%2Fdelete%3Fx%3D1%23/drain"
        );
        assert_eq!(
            render_url("http://h/search?q={{ labels.q }}&n=1", &context).unwrap(),
            "http://h/search?q=a%20b%26c%3Dd%2Be%23f&n=1"
        );
        assert_eq!(
            render_url("http://h/#{{ labels.q }}", &context).unwrap(),
            "http://h/#a%20b%26c%3Dd%2Be%23f"
        );
        // A host and port are inserted as they are; a base URL that starts the template too.
        assert_eq!(
            render_url("http://{{ labels.host }}/metrics", &context).unwrap(),
            "http://api-1.internal:9100/metrics"
        );
        assert_eq!(
            render_url(
                "{{ base }}/items/{{ labels.v }}",
                &json!({"base": "https://lb.internal/v1", "labels": {"v": "a/b"}})
            )
            .unwrap(),
            "https://lb.internal/v1/items/a%2Fb"
        );
        // `| safe` is the explicit opt-out.
        assert_eq!(
            render_url("http://h/{{ labels.v | safe }}", &context).unwrap(),
            "http://h/../../admin/delete?x=1#"
        );
        // Unicode is encoded as UTF-8; numbers and the unreserved characters pass.
        assert_eq!(
            render_url("http://h/{{ a }}/{{ n }}", &json!({"a": "é~_.-", "n": 3})).unwrap(),
            "http://h/%C3%A9~_.-/3"
        );
    }

    #[test]
    fn url_values_that_cannot_be_made_safe_are_refused() {
        for (source, value) in [
            ("http://{{ v }}/x", "evil.example/"),
            ("http://{{ v }}/x", "user@evil.example"),
            ("http://h:{{ v }}/x", "80/../admin"),
            ("http://h/items/{{ v }}/drain", ".."),
            ("http://h/items/{{ v }}", "."),
            ("{{ v }}/x", "javascript:alert(1)"),
        ] {
            let error = render_url(source, &json!({ "v": value })).unwrap_err();
            assert!(
                matches!(error, Error::Url { .. }),
                "{source} {value}: {error}"
            );
        }
        // Dots inside a segment are fine.
        assert_eq!(
            render_url("http://h/items/x{{ v }}", &json!({"v": ".."})).unwrap(),
            "http://h/items/x.."
        );
        // A value that smuggles the marker characters cannot forge a boundary.
        assert_eq!(
            render_url("http://h/{{ v }}", &json!({"v": "a\u{E001}/\u{E000}b"})).unwrap(),
            "http://h/a%EE%80%81%2F%EE%80%80b"
        );
        let error = render_url("http://h/items/{{ v }}/drain", &json!({"v": ".."})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "url template `http://h/items/{{ v }}/drain` refused a value: a value makes the path segment `..`, which would climb the path; refuse such values before they reach the url"
        );
    }

    #[test]
    fn only_url_templates_encode() {
        let mut builder = TemplatesBuilder::new();
        let plain = builder.add("a/{{ v }}").unwrap();
        let inputs = builder
            .add_inputs_with_urls(
                &json!({"url": "http://h/{{ v }}", "body": "{{ v }}"}),
                "with",
                &["with.url"],
            )
            .unwrap();
        let templates = builder.build();
        let context = json!({"v": "x/y z"});
        assert_eq!(templates.render(&plain, &context).unwrap(), "a/x/y z");
        assert_eq!(
            templates.render_inputs(&inputs, &context).unwrap(),
            json!({"url": "http://h/x%2Fy%20z", "body": "x/y z"})
        );
    }
}
