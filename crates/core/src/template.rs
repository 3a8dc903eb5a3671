//! Templates (minijinja) for rule parameters, step inputs and webhook mappings.
//!
//! Undefined variables are errors, not empty strings: a typo in `{{ labels.podd }}` must fail the run
//! before it executes `kubectl delete pod ""`, not after.

use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
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
        if !source_text.contains("{{") && !source_text.contains("{%") {
            return Ok(Template::Literal(source_text.to_string()));
        }
        let id = format!("t{}", self.count);
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
        Ok(match with {
            serde_json::Value::String(text) => {
                Inputs::Text(self.add(text).map_err(|error| (path.to_string(), error))?)
            }
            serde_json::Value::Array(items) => Inputs::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.add_inputs(item, &format!("{path}[{index}]")))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => Inputs::Object(
                map.iter()
                    .map(|(key, value)| {
                        Ok((
                            key.clone(),
                            self.add_inputs(value, &format!("{path}.{key}"))?,
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
                compiled.render(context).map_err(|error| Error::Render {
                    source_text: source_text.clone(),
                    message: describe(&error),
                })
            }
        }
    }
}

fn environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_keep_trailing_newline(false);
    environment
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
}
