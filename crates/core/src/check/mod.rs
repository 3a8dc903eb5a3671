//! The checks of `homeostat check` that need no IO, one file per config section: every problem at
//! once, each at the field it is about (file, line and path), with a hint that says the fix.
//!
//! [`crate::rule::compile`] runs them as passes over one [`Report`], in the order the file list
//! below gives, and compiles what passed. The checks that need IO (secrets resolve, spec files
//! read, addresses parse) are the binary's (`src/cli/config.rs`); parsing and merging files, with
//! the errors of a file that does not deserialize, is [`crate::config::parse`].

pub(crate) mod cel;
pub(crate) mod detectors;
pub(crate) mod forecasts;
pub(crate) mod incidents;
pub(crate) mod kubernetes;
pub(crate) mod rules;
pub mod runbooks;
pub(crate) mod slos;
pub(crate) mod sources;
pub(crate) mod store;
pub(crate) mod tokens;
pub(crate) mod words;

use std::collections::HashSet;

use crate::config::{Config, Diagnostic, Diagnostics, Severity};

/// Every problem the checks find in one config, in the order they find them.
pub struct Report<'a> {
    pub config: &'a Config,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(config: &'a Config) -> Self {
        Report {
            config,
            diagnostics: Vec::new(),
        }
    }

    /// An error at `field` of a section, or of its item `index` for a list.
    pub fn error(
        &mut self,
        section: &'static str,
        index: Option<usize>,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(Severity::Error, section, index, field, message, hint);
    }

    /// A warning: the config runs, but probably not as meant.
    pub fn warning(
        &mut self,
        section: &'static str,
        index: Option<usize>,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(Severity::Warning, section, index, field, message, hint);
    }

    fn add(
        &mut self,
        severity: Severity,
        section: &'static str,
        index: Option<usize>,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let diagnostic = self
            .config
            .diagnostic(severity, section, index, field, message, hint);
        self.diagnostics.push(diagnostic);
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(diagnostics);
    }

    /// Names in a list must be unique: the second of each pair is the error.
    pub fn unique<'n>(&mut self, section: &'static str, names: impl Iterator<Item = &'n str>) {
        let mut seen = HashSet::new();
        for (index, name) in names.enumerate() {
            if !seen.insert(name) {
                self.error(
                    section,
                    Some(index),
                    "name",
                    format!("the name `{name}` is used twice in `{section}`"),
                    Some("names must be unique; rename one".into()),
                );
            }
        }
    }

    /// The warnings when nothing is an error; else everything, as the error. Either way in file
    /// and line order, so that a config reads top to bottom whichever check found what; the
    /// sort is stable, so problems on one line stay in the order the passes found them.
    pub fn finish(self) -> Result<Vec<Diagnostic>, Diagnostics> {
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let diagnostics = Diagnostics(diagnostics);
        if diagnostics.has_errors() {
            return Err(diagnostics);
        }
        Ok(diagnostics.0)
    }
}

/// The names of sources, notifiers, rules and API tokens are unique in their lists. They are
/// checked first, before the sections' own checks, as they always were: problems on one line
/// keep the order `homeostat check` prints them in. Runbooks, detectors and forecasts check
/// their names with the rest of their sections.
pub(crate) fn names(report: &mut Report) {
    let config = report.config;
    report.unique("sources", config.sources.iter().map(|s| s.name()));
    report.unique("notifiers", config.notifiers.iter().map(|n| n.name()));
    report.unique("rules", config.rules.iter().map(|r| r.name.as_str()));
    report.unique(
        "api_tokens",
        config.api_tokens.iter().map(|t| t.name.as_str()),
    );
}

/// Letters, digits, `-` and `_`: a name that is safe in a URL path and a metric label.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
