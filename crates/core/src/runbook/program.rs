//! A runbook compiled for execution: templates and CEL parsed once, steps laid out as blocks.
//!
//! A program is compiled from the runbook's spec and the specs of the runbooks it calls, so a run
//! journals exactly what it will execute and resumes after a restart with the same definition, even
//! if the config changed in between.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Check, HttpCheck, OnFailure, Param, ParamType, Retries, Runbook, Step};
use crate::template::{Inputs, Template, Templates, TemplatesBuilder};

/// How deep runbooks may call each other; `homeostat check` refuses cycles, this is the backstop.
const MAX_CALL_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("step `{step}`: {message}")]
    Step { step: String, message: String },
    #[error("runbook `{runbook}` is not defined")]
    UnknownRunbook { runbook: String },
    #[error(
        "runbook calls nest deeper than {MAX_CALL_DEPTH}; is there a cycle through `{runbook}`?"
    )]
    TooDeep { runbook: String },
}

/// A parameter value that does not fit its declaration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("param `{param}`: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

/// A compiled CEL expression.
#[derive(Clone)]
pub struct Expr {
    pub source_text: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source_text)
    }
}

/// How deep brackets may nest in a CEL expression.
///
/// The `cel` crate's ANTLR parser takes time and memory exponential in the nesting of brackets
/// around unary operators: `[--` repeated 20 times (60 bytes) takes 0.8 s and 400 MB, 25 times
/// 38 s and 10 GB, valid or not (found by fuzzing); each level doubles it. A condition a person
/// writes rarely nests past four.
pub const MAX_CEL_NESTING: usize = 12;

/// How many unary operators (`-`, `!`) may follow one another.
///
/// Within that nesting, the parser's cost still grew with runs of unary operators among syntax
/// errors: a 1.7 kB input of `--!--!---` runs took 19 s and 2 GB at 12 deep. With runs capped at
/// two it takes 45 ms. Two is what an expression needs (`!!x`, `a - -1`).
pub const MAX_CEL_UNARY_RUN: usize = 2;

/// Compiles CEL, turning a panic of the `cel` crate into an error.
pub(crate) fn compile_cel(source_text: &str) -> Result<cel::Program, String> {
    let depth = cel_nesting(source_text)?;
    if depth > MAX_CEL_NESTING {
        return Err(format!(
            "brackets nest {depth} deep, more than the {MAX_CEL_NESTING} allowed; \
             write the expression with fewer nested brackets"
        ));
    }
    std::panic::catch_unwind(|| cel::Program::compile(source_text))
        .map_err(|_| "the CEL parser failed on this expression".to_string())?
        .map_err(|error| error.to_string().lines().next().unwrap_or("").to_string())
}

/// The deepest nesting of `(`, `[` and `{` in a CEL expression, as the parser will see it; an
/// error for a string literal the lexer would not take whole, or for a run of unary operators
/// longer than [`MAX_CEL_UNARY_RUN`].
///
/// It must never count less than the parser nests, or the bound above is no bound. So it lexes
/// as CEL's grammar does where that decides what is code: `//` comments, identifiers and numbers
/// (an `r` or `b` prefix makes a string raw or bytes only where it starts a token), and string
/// literals with their escapes. A literal that does not lex whole (not closed, a bad escape, a
/// control character) is refused: the ANTLR lexer would fall back to shorter tokens and read part
/// of it as code, and such an expression is invalid anyway. A closer that does not match the
/// innermost opener does not close it (the parser's error recovery may drop it).
fn cel_nesting(text: &str) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let (mut open, mut deepest, mut i) = (Vec::new(), 0, 0);
    // Unary operators in a row, whitespace and comments between them counted in.
    let mut run = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' | b'!' if bytes[i] == b'-' || bytes.get(i + 1) != Some(&b'=') => {
                run += 1;
                if run > MAX_CEL_UNARY_RUN {
                    return Err(format!(
                        "{run} operators `-` or `!` in a row at byte {i}, more than the \
                         {MAX_CEL_UNARY_RUN} allowed; write `!!x` or `a - -1` at most"
                    ));
                }
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            // What is always a token of its own ends a run: an operand, a bracket, another
            // operator. Whitespace does not, nor `=`, `&` and `|` (tokens only when doubled), nor
            // anything the lexer skips as an error (a NUL, `$`), since the parser never sees it.
            byte if byte.is_ascii_alphanumeric() || b"_\"'()[]{}.,?:+*%<>/".contains(&byte) => {
                run = 0
            }
            _ => {
                i += 1;
                continue;
            }
        }
        match bytes[i] {
            opener @ (b'(' | b'[' | b'{') => {
                open.push(opener);
                deepest = deepest.max(open.len());
                i += 1;
            }
            closer @ (b')' | b']' | b'}') => {
                let opener = match closer {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                if open.last() == Some(&opener) {
                    open.pop();
                }
                i += 1;
            }
            b'"' | b'\'' => i = string_end(bytes, i, false)?,
            byte if byte.is_ascii_alphabetic() || byte == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                // `r'...'`, `b"..."`, `br'...'`: a prefix is a whole identifier before a quote.
                let word = bytes[start..i].to_ascii_lowercase();
                if matches!(word.as_slice(), b"r" | b"b" | b"br")
                    && matches!(bytes.get(i), Some(b'"' | b'\''))
                {
                    i = string_end(bytes, i, word.contains(&b'r'))?;
                }
            }
            byte if byte.is_ascii_digit() => i = number_end(bytes, i),
            _ => i += 1,
        }
    }
    Ok(deepest)
}

/// Where a number that starts at `start` ends, as the lexer takes it: `0x1F`, `12u`, `1.5e-3`.
/// Only where a following identifier starts matters, for a string prefix after it.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let digits = |mut i: usize, hex: bool| {
        while i < bytes.len() && (bytes[i].is_ascii_digit() || hex && bytes[i].is_ascii_hexdigit())
        {
            i += 1;
        }
        i
    };
    let mut i = start;
    if bytes[i] == b'0'
        && matches!(bytes.get(i + 1), Some(b'x' | b'X'))
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i = digits(i + 2, true);
    } else {
        i = digits(i, false);
        if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1, false);
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
            if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
                i = digits(i + 1 + sign, false);
            }
        }
    }
    if matches!(bytes.get(i), Some(b'u' | b'U')) {
        i += 1;
    }
    i
}

/// Where the string literal whose quote is at `start` ends (just past its closing quote).
fn string_end(bytes: &[u8], start: usize, raw: bool) -> Result<usize, String> {
    let quote = bytes[start];
    let triple = bytes.get(start..start + 3) == Some(&[quote; 3][..]);
    let refuse = |at: usize, what: &str| {
        Err(format!(
            "the string literal at byte {start} {what} (at byte {at}); close it, and write \
             special characters as escapes such as \\n, \\\\, \\\", \\x00 or \\u00e9"
        ))
    };
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == quote {
            if !triple {
                return Ok(i + 1);
            }
            if bytes.get(i..i + 3) == Some(&[quote; 3][..]) {
                return Ok(i + 3);
            }
        }
        match byte {
            b'\n' | b'\r' if !triple => return refuse(i, "ends at a line break"),
            b'\t' | b'\n' | b'\r' => {}
            control if control < 0x20 || control == 0x7f => {
                return refuse(i, "holds a control character")
            }
            b'\\' if !raw => match escape_len(&bytes[i + 1..]) {
                Some(len) => i += len,
                None => return refuse(i, "has an escape CEL does not know"),
            },
            _ => {}
        }
        i += 1;
    }
    refuse(bytes.len(), "is not closed")
}

/// How many bytes after a backslash make a CEL escape: `n`, `x41`, `u00e9`, `U0001F600`, `101`.
fn escape_len(rest: &[u8]) -> Option<usize> {
    let hex = |count: usize| {
        (rest.len() > count && rest[1..=count].iter().all(u8::is_ascii_hexdigit))
            .then_some(count + 1)
    };
    match *rest.first()? {
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'"' | b'\'' | b'\\' | b'?' | b'`' => {
            Some(1)
        }
        b'x' | b'X' => hex(2),
        b'u' => hex(4),
        b'U' => hex(8),
        b'0'..=b'3'
            if rest.len() > 2
                && (b'0'..=b'7').contains(&rest[1])
                && (b'0'..=b'7').contains(&rest[2]) =>
        {
            Some(3)
        }
        _ => None,
    }
}

impl Expr {
    pub fn compile(source_text: &str) -> Result<Self, String> {
        let program = compile_cel(source_text)?;
        Ok(Self {
            source_text: source_text.to_string(),
            program: Arc::new(program),
        })
    }

    /// Runs the program in a context the caller built.
    ///
    /// The `cel` crate (0.11) panics on some expressions that parse, such as a macro called on a
    /// number (`[1] - 4.map(x, x)` reaches a `todo!`); a condition evaluates inside the decide
    /// stage, so such a panic becomes this expression's error instead of taking the daemon down.
    pub fn execute(&self, context: &cel::Context) -> Result<cel::Value, String> {
        let program = std::panic::AssertUnwindSafe(&self.program);
        let context = std::panic::AssertUnwindSafe(context);
        std::panic::catch_unwind(|| program.execute(*context))
            .map_err(|_| "the CEL interpreter failed on this expression (a bug of the `cel` crate); rewrite the expression".to_string())?
            .map_err(|error| error.to_string())
    }

    /// Evaluates with each top-level field of `variables` as a variable.
    pub fn evaluate(
        &self,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let mut context = cel::Context::default();
        for (name, value) in variables {
            context
                .add_variable(name.as_str(), value)
                .map_err(|error| format!("variable `{name}`: {error}"))?;
        }
        let value = self
            .execute(&context)
            .map_err(|error| format!("`{}` failed: {error}", self.source_text))?;
        value
            .json()
            .map_err(|error| format!("`{}` gave {error}", self.source_text))
    }

    pub fn evaluate_bool(
        &self,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, String> {
        match self.evaluate(variables)? {
            serde_json::Value::Bool(value) => Ok(value),
            other => Err(format!(
                "`{}` gave {other}, not a boolean",
                self.source_text
            )),
        }
    }
}

/// A compiled runbook.
#[derive(Debug)]
pub struct Program {
    pub spec: Runbook,
    /// The specs of every runbook this one calls, directly or not.
    pub library: BTreeMap<String, Runbook>,
    pub(crate) templates: Templates,
    /// `blocks[0]` is the runbook's own step list.
    pub(crate) blocks: Vec<Block>,
    pub(crate) outputs: Vec<(String, Template)>,
}

#[derive(Debug)]
pub(crate) struct Block {
    pub steps: Vec<Node>,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub kind: Kind,
    pub when: Option<Expr>,
    pub timeout_secs: f64,
    pub retries: Option<Retries>,
    pub outputs: Vec<(String, Template)>,
    pub on_failure: OnFailure,
    pub rollback: Option<Box<Node>>,
    pub idempotent: bool,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Action {
        action: String,
        inputs: Inputs,
    },
    Parallel(Vec<(String, usize)>),
    ForEach {
        items: Expr,
        concurrency: usize,
        block: usize,
    },
    Call {
        runbook: String,
        params: Vec<(String, Inputs)>,
        specs: BTreeMap<String, Param>,
        outputs: Vec<(String, Template)>,
        block: usize,
    },
    Wait {
        duration_secs: Option<f64>,
        until: Option<CheckTemplates>,
        interval_secs: f64,
    },
    Approval {
        approvers: Vec<String>,
        message: Option<Template>,
        notify: Option<String>,
        distinct_from_starter: bool,
    },
    Assert(CheckTemplates),
}

#[derive(Debug)]
pub(crate) struct CheckTemplates {
    promql: Option<Template>,
    prometheus_url: Option<Template>,
    http: Option<(Template, HttpCheck)>,
}

impl CheckTemplates {
    pub fn render(
        &self,
        templates: &Templates,
        context: &minijinja::Value,
    ) -> Result<Check, crate::template::Error> {
        let render = |template: &Option<Template>| {
            template
                .as_ref()
                .map(|template| templates.render(template, context))
                .transpose()
        };
        Ok(Check {
            promql: render(&self.promql)?,
            prometheus_url: render(&self.prometheus_url)?,
            http: match &self.http {
                Some((url, http)) => Some(HttpCheck {
                    url: templates.render(url, context)?,
                    ..http.clone()
                }),
                None => None,
            },
        })
    }
}

impl Program {
    /// Compiles `spec`, looking up the runbooks it calls in `library`.
    pub fn compile(spec: &Runbook, library: &BTreeMap<String, Runbook>) -> Result<Self, Error> {
        let mut compiler = Compiler {
            builder: TemplatesBuilder::new(),
            blocks: Vec::new(),
            library,
            used: BTreeMap::new(),
        };
        compiler.blocks.push(Block { steps: Vec::new() });
        let steps = compiler.steps(&spec.steps, "", 0)?;
        compiler.blocks[0].steps = steps;
        let outputs = compiler.templates(&spec.outputs, "outputs")?;
        Ok(Program {
            spec: spec.clone(),
            library: compiler.used,
            templates: compiler.builder.build(),
            blocks: compiler.blocks,
            outputs,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether a dry run of it executes anything: a step whose action can ask its API for a dry
    /// run (Kubernetes' `dryRun=All`). Such dry runs are driven like real runs; others complete at
    /// once.
    pub fn asks_server_dry_run(&self) -> bool {
        self.blocks.iter().any(|block| {
            block.steps.iter().any(|node| {
                matches!(&node.kind, Kind::Action { action, .. }
                    if crate::action::Kind::from_name(action)
                        .is_some_and(crate::action::Kind::server_dry_run))
            })
        })
    }

    pub fn params(&self) -> &BTreeMap<String, Param> {
        &self.spec.params
    }
}

struct Compiler<'a> {
    builder: TemplatesBuilder,
    blocks: Vec<Block>,
    library: &'a BTreeMap<String, Runbook>,
    used: BTreeMap<String, Runbook>,
}

impl Compiler<'_> {
    fn block(&mut self, steps: &[Step], path: &str, depth: usize) -> Result<usize, Error> {
        let index = self.blocks.len();
        self.blocks.push(Block { steps: Vec::new() });
        let steps = self.steps(steps, path, depth)?;
        self.blocks[index].steps = steps;
        Ok(index)
    }

    fn steps(&mut self, steps: &[Step], path: &str, depth: usize) -> Result<Vec<Node>, Error> {
        steps
            .iter()
            .map(|step| self.node(step, &format!("{path}{}", step.name), depth))
            .collect()
    }

    fn template(&mut self, text: &str, field: &str) -> Result<Template, Error> {
        self.builder.add(text).map_err(|error| Error::Step {
            step: field.to_string(),
            message: error.to_string(),
        })
    }

    fn templates(
        &mut self,
        map: &BTreeMap<String, String>,
        field: &str,
    ) -> Result<Vec<(String, Template)>, Error> {
        map.iter()
            .map(|(name, text)| Ok((name.clone(), self.template(text, field)?)))
            .collect()
    }

    fn url_template(&mut self, text: &str, field: &str) -> Result<Template, Error> {
        self.builder.add_url(text).map_err(|error| Error::Step {
            step: field.to_string(),
            message: error.to_string(),
        })
    }

    fn inputs(&mut self, with: &serde_json::Value, path: &str) -> Result<Inputs, Error> {
        self.action_inputs(with, path, &[])
    }

    /// An action's inputs; the strings at `urls` (such as `with.url`) are URL templates.
    fn action_inputs(
        &mut self,
        with: &serde_json::Value,
        path: &str,
        urls: &[&str],
    ) -> Result<Inputs, Error> {
        self.builder
            .add_inputs_with_urls(with, "with", urls)
            .map_err(|(field, error)| Error::Step {
                step: path.to_string(),
                message: format!("{field}: {error}"),
            })
    }

    fn check(&mut self, check: &Check, path: &str) -> Result<CheckTemplates, Error> {
        Ok(CheckTemplates {
            promql: check
                .promql
                .as_deref()
                .map(|text| self.template(text, path))
                .transpose()?,
            prometheus_url: check
                .prometheus_url
                .as_deref()
                .map(|text| self.url_template(text, path))
                .transpose()?,
            http: match &check.http {
                Some(http) => Some((self.url_template(&http.url, path)?, http.clone())),
                None => None,
            },
        })
    }

    fn node(&mut self, step: &Step, path: &str, depth: usize) -> Result<Node, Error> {
        let fail = |message: String| Error::Step {
            step: path.to_string(),
            message,
        };
        let kind = if let Some(action) = &step.action {
            Kind::Action {
                action: action.clone(),
                inputs: self.action_inputs(&step.with, path, crate::action::url_inputs(action))?,
            }
        } else if let Some(branches) = &step.parallel {
            let mut compiled = Vec::with_capacity(branches.len());
            for branch in branches {
                let block =
                    self.block(&branch.steps, &format!("{path}.{}.", branch.name), depth)?;
                compiled.push((branch.name.clone(), block));
            }
            Kind::Parallel(compiled)
        } else if let Some(items) = &step.for_each {
            let items =
                Expr::compile(items).map_err(|message| fail(format!("for_each: {message}")))?;
            let steps = step.steps.as_deref().unwrap_or_default();
            Kind::ForEach {
                items,
                concurrency: step.concurrency.unwrap_or(1).max(1) as usize,
                block: self.block(steps, &format!("{path}[]."), depth)?,
            }
        } else if let Some(runbook) = &step.runbook {
            if depth >= MAX_CALL_DEPTH {
                return Err(Error::TooDeep {
                    runbook: runbook.clone(),
                });
            }
            let callee = self
                .library
                .get(runbook)
                .ok_or_else(|| Error::UnknownRunbook {
                    runbook: runbook.clone(),
                })?
                .clone();
            self.used.insert(runbook.clone(), callee.clone());
            let mut params = Vec::with_capacity(step.params.len());
            for (name, value) in &step.params {
                params.push((name.clone(), self.inputs(value, path)?));
            }
            let outputs = self.templates(&callee.outputs, path)?;
            Kind::Call {
                runbook: runbook.clone(),
                params,
                specs: callee.params.clone(),
                outputs,
                block: self.block(&callee.steps, &format!("{path}."), depth + 1)?,
            }
        } else if let Some(wait) = &step.wait {
            Kind::Wait {
                duration_secs: wait.duration_secs,
                until: wait
                    .until
                    .as_ref()
                    .map(|check| self.check(check, path))
                    .transpose()?,
                interval_secs: wait.interval_secs.max(0.001),
            }
        } else if let Some(approval) = &step.approval {
            Kind::Approval {
                approvers: approval.approvers.clone(),
                message: approval
                    .message
                    .as_deref()
                    .map(|text| self.template(text, path))
                    .transpose()?,
                notify: approval.notify.clone(),
                distinct_from_starter: approval.distinct_from_starter,
            }
        } else if let Some(check) = &step.assert {
            Kind::Assert(self.check(check, path)?)
        } else {
            return Err(fail("a step needs one of `action`, `parallel`, `for_each`, `runbook`, `wait`, `approval` or `assert`".into()));
        };
        let when = step
            .when
            .as_deref()
            .map(Expr::compile)
            .transpose()
            .map_err(|message| fail(format!("when: {message}")))?;
        let outputs = self.templates(&step.outputs, path)?;
        // A rollback is not undone in turn.
        let declared = step
            .action
            .as_deref()
            .filter(|_| !path.ends_with(".rollback"))
            .and_then(crate::action::kubernetes::declared_rollback)
            .map(|(action, with)| {
                crate::config::Step::action(&format!("undo-{}", step.name), action, with)
            });
        // A step's own `rollback` wins; else the one its action declares (scale back, uncordon).
        let rollback = match step.rollback.as_deref().or(declared.as_ref()) {
            Some(rollback) => Some(Box::new(self.node(
                rollback,
                &format!("{path}.rollback"),
                depth,
            )?)),
            None => None,
        };
        Ok(Node {
            name: step.name.clone(),
            kind,
            when,
            timeout_secs: step
                .timeout_secs
                .unwrap_or_else(|| crate::config::runbook::default_timeout_secs(step)),
            retries: step.retries.clone(),
            outputs,
            on_failure: step.on_failure,
            rollback,
            idempotent: step.idempotent
                || step
                    .action
                    .as_deref()
                    .is_some_and(crate::action::idempotent_by_nature),
        })
    }
}

/// Checks given parameter values against their declarations: converts text (from the command line or
/// a rule's templates) to the declared type, fills defaults, and refuses unknown, missing or
/// disallowed values.
pub fn coerce_params(
    specs: &BTreeMap<String, Param>,
    given: &BTreeMap<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, ParamError> {
    let mut params = serde_json::Map::new();
    for (name, value) in given {
        let Some(spec) = specs.get(name) else {
            let known: Vec<&str> = specs.keys().map(String::as_str).collect();
            return Err(ParamError {
                param: name.clone(),
                message: if known.is_empty() {
                    "this runbook takes no parameters".into()
                } else {
                    format!("unknown parameter; this runbook takes {}", known.join(", "))
                },
            });
        };
        let value = coerce(spec.kind, value).map_err(|message| ParamError {
            param: name.clone(),
            message,
        })?;
        if !spec.allowed.is_empty() && !spec.allowed.contains(&value) {
            let allowed: Vec<String> = spec.allowed.iter().map(|v| v.to_string()).collect();
            return Err(ParamError {
                param: name.clone(),
                message: format!("{value} is not allowed; use one of {}", allowed.join(", ")),
            });
        }
        params.insert(name.clone(), value);
    }
    for (name, spec) in specs {
        if params.contains_key(name) {
            continue;
        }
        match &spec.default {
            Some(default) => {
                params.insert(name.clone(), default.clone());
            }
            None if spec.required => {
                return Err(ParamError {
                    param: name.clone(),
                    message: format!(
                        "required, a {}; give it with `--param {name}=VALUE`",
                        spec.kind.as_str()
                    ),
                })
            }
            None => {}
        }
    }
    Ok(params)
}

/// Converts one value to a declared type. Text converts where it reads unambiguously.
pub fn coerce(kind: ParamType, value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let text = value.as_str().map(str::trim);
    let article = if kind == ParamType::Integer {
        "an"
    } else {
        "a"
    };
    let wrong = || Err(format!("expected {article} {}, got {value}", kind.as_str()));
    match kind {
        ParamType::String => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(number) => Ok(Value::String(number.to_string())),
            Value::Bool(flag) => Ok(Value::String(flag.to_string())),
            _ => wrong(),
        },
        ParamType::Integer => match (value, text) {
            (Value::Number(number), _) if number.is_i64() || number.is_u64() => Ok(value.clone()),
            (_, Some(text)) => match text.parse::<i64>() {
                Ok(number) => Ok(Value::from(number)),
                Err(_) => wrong(),
            },
            _ => wrong(),
        },
        ParamType::Number => match (value, text) {
            (Value::Number(_), _) => Ok(value.clone()),
            // Whole numbers stay integers, so `"2"` equals an `allowed: [2]`.
            (_, Some(text)) => match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(whole), _) => Ok(Value::from(whole)),
                (_, Ok(number)) if number.is_finite() => Ok(Value::from(number)),
                _ => wrong(),
            },
            _ => wrong(),
        },
        ParamType::Boolean => match (value, text) {
            (Value::Bool(_), _) => Ok(value.clone()),
            (_, Some("true" | "yes" | "1")) => Ok(Value::Bool(true)),
            (_, Some("false" | "no" | "0")) => Ok(Value::Bool(false)),
            _ => wrong(),
        },
        ParamType::List => match (value, text) {
            (Value::Array(_), _) => Ok(value.clone()),
            (_, Some(text)) if text.starts_with('[') => match serde_json::from_str(text) {
                Ok(Value::Array(items)) => Ok(Value::Array(items)),
                _ => wrong(),
            },
            (_, Some("")) => Ok(Value::Array(Vec::new())),
            (_, Some(text)) => Ok(Value::Array(
                text.split(',')
                    .map(|item| Value::String(item.trim().to_string()))
                    .collect(),
            )),
            _ => wrong(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(kind: ParamType) -> Param {
        Param {
            kind,
            required: true,
            default: None,
            allowed: Vec::new(),
            description: None,
        }
    }

    #[test]
    fn cel_nesting_counts_brackets_as_the_parser_sees_them() {
        let cases = [
            (r#"labels.env == "prod""#, 0),
            ("size(labels) > 0 && [1, [2]].exists(x, x == 1)", 2),
            // Brackets in a regular expression, a comment or any string are text.
            (r#"labels.pod.matches("^((a|b)[0-9]{2})+$")"#, 1),
            (
                r#"'(((' + """[[[""" + '''{{{''' + r"((\" + "\"((" + b'[[' + BR"((\" "#,
                0,
            ),
            ("1 // [[[ '''\n + [2]", 1),
            // A raw string ends at the first quote: its backslash does not hide the brackets.
            (r#"r"\"[[[ "#, 3),
            // `r` starts a raw string only where it starts a token: `foor` is an identifier, and
            // its string escapes the quote.
            (r#"foor"\"[[[" + [1]"#, 1),
            (r#"0xbr"\"[[[ "#, 3),
            (r#"1er"\"[[[""#, 0),
            // A closer that matches no opener does not close the innermost one.
            ("[--(--][--(--]", 4),
            ("[[[]]]", 3),
            ("]]][[", 2),
        ];
        for (text, depth) in cases {
            assert_eq!(cel_nesting(text), Ok(depth), "{text}");
        }
    }

    #[test]
    fn cel_string_literals_that_do_not_lex_whole_are_refused() {
        // The lexer would read these in shorter tokens, parts of the literal as code; all found
        // by fuzzing to hide nesting that took the parser seconds and gigabytes.
        for text in [
            "\"\\q[--[--\"",
            "'abc",
            "'ab\n[[[ '",
            "\"a\0[--\"",
            "r'''\n[[[",
            "'''''",
            "\"\\x4\"",
            "\"\\u12\"",
            "\"\\8\"",
        ] {
            let error = cel_nesting(text).unwrap_err();
            assert!(
                error.contains("string literal at byte"),
                "{text:?}: {error}"
            );
            assert!(compile_cel(text).is_err(), "{text:?}");
        }
        for text in [
            r#""\a\b\f\n\r\t\v\"\'\\\?\`\x41\u00e9\U0001F600\101""#,
            "'''a\nb'''",
        ] {
            assert_eq!(cel_nesting(text), Ok(0), "{text:?}");
            assert!(compile_cel(text).is_ok(), "{text:?}");
        }
        // The grammar's lexer takes `\X41` whole; the crate refuses it after (a parse error).
        assert_eq!(cel_nesting(r#""\X41[[[""#), Ok(0));
    }

    #[test]
    fn cel_runs_of_unary_operators_past_two_are_refused() {
        for text in [
            "!!labels.x",
            "1 - -1",
            "-(-1) == 1",
            "a != -b",
            "!a && !b",
            "x--1",
            "-1 <= -2",
        ] {
            assert!(cel_nesting(text).is_ok(), "{text}");
        }
        for text in [
            "!!!x",
            "1 - - -1",
            "- -\t-1",
            "-//c\n--1",
            "-\0-\0-1",
            "-$-&-1",
            "--==-1",
        ] {
            let error = cel_nesting(text).unwrap_err();
            assert!(error.contains("in a row"), "{text:?}: {error}");
        }
    }

    #[test]
    fn cel_nested_past_the_bound_is_refused_before_the_parser_sees_it() {
        // 25 levels of this took the parser 38 s and 10 GB.
        let error = compile_cel(&"[--".repeat(25)).unwrap_err();
        assert!(error.contains("nest 25 deep"), "{error}");
        let within = format!(
            "{}1{}",
            "[--".repeat(MAX_CEL_NESTING),
            "]".repeat(MAX_CEL_NESTING)
        );
        assert!(compile_cel(&within).is_ok());
    }

    #[test]
    fn coerces_text_to_declared_types_and_names_bad_params() {
        let mut specs = BTreeMap::new();
        specs.insert("replicas".to_string(), param(ParamType::Integer));
        specs.insert("nodes".to_string(), param(ParamType::List));
        specs.insert(
            "mode".to_string(),
            Param {
                required: false,
                default: Some(json!("soft")),
                allowed: vec![json!("soft"), json!("hard")],
                ..param(ParamType::String)
            },
        );
        let given: BTreeMap<String, serde_json::Value> = [
            ("replicas".to_string(), json!("3")),
            ("nodes".to_string(), json!("a, b")),
        ]
        .into();
        let params = coerce_params(&specs, &given).unwrap();
        assert_eq!(params["replicas"], json!(3));
        assert_eq!(params["nodes"], json!(["a", "b"]));
        assert_eq!(params["mode"], json!("soft"));

        let bad: BTreeMap<String, serde_json::Value> = [
            ("replicas".to_string(), json!("three")),
            ("nodes".to_string(), json!([])),
        ]
        .into();
        assert_eq!(coerce_params(&specs, &bad).unwrap_err().param, "replicas");
        let missing: BTreeMap<String, serde_json::Value> =
            [("nodes".to_string(), json!([]))].into();
        let error = coerce_params(&specs, &missing).unwrap_err();
        assert_eq!(error.param, "replicas");
        assert!(error.message.contains("--param replicas="), "{error}");
        let unknown: BTreeMap<String, serde_json::Value> =
            [("replica".to_string(), json!(1))].into();
        assert!(coerce_params(&specs, &unknown)
            .unwrap_err()
            .message
            .contains("replicas"));
        let disallowed: BTreeMap<String, serde_json::Value> = [
            ("replicas".to_string(), json!(1)),
            ("nodes".to_string(), json!([])),
            ("mode".to_string(), json!("brutal")),
        ]
        .into();
        assert_eq!(
            coerce_params(&specs, &disallowed).unwrap_err().param,
            "mode"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let retries = Retries {
            count: 5,
            backoff_secs: 1.0,
            backoff_factor: 2.0,
            max_backoff_secs: 5.0,
        };
        let pauses: Vec<f64> = (2..=6).map(|attempt| retries.backoff(attempt)).collect();
        assert_eq!(pauses, [1.0, 2.0, 4.0, 5.0, 5.0]);
    }
}
