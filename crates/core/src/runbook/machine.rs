//! The run state machine: `apply(input, now) -> (records, effects)`, with no IO and no clock.
//!
//! The engine journals each transition's input and records in one commit, then executes its effects
//! (actions, checks, timers). After a restart it feeds the journaled inputs back in order to rebuild the
//! same state, then applies [`Input::Recover`], which decides what to do with effects that were
//! started but have no recorded outcome: run again if idempotent, otherwise stop in
//! `needs_attention`. Dry runs are the same machine completing every effect at once as `dry_run`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::program::{coerce_params, Block, Kind, Node, Program};
use crate::action::{self, Action};
use crate::config::{Check, OnFailure};
use crate::journal::{OutcomeStatus, RunStatus, StepStatus};

/// Something that happened to a run. Every input that changes a run is journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Start,
    /// An action's or a check's outcome.
    Outcome {
        step: String,
        attempt: u32,
        status: OutcomeStatus,
        #[serde(default)]
        output: Value,
        #[serde(default)]
        error: Option<String>,
    },
    Timer {
        step: String,
        attempt: u32,
        timer: TimerKind,
    },
    Approval {
        step: String,
        by: String,
        approved: bool,
        #[serde(default)]
        comment: Option<String>,
    },
    Cancel {
        by: String,
    },
    /// The daemon restarted: resolve effects that started and have no outcome.
    Recover,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// The pause before a retry.
    Retry,
    /// A `wait` for a duration.
    Sleep,
    /// The next poll of a `wait` until a check holds.
    Poll,
    /// A `wait` or `approval` ran out of time.
    Deadline,
}

/// Work for the engine, to execute after the transition is committed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Runs an action. The engine gives it the idempotency key `RUN/STEP/ATTEMPT`.
    Execute {
        step: String,
        attempt: u32,
        action: Action,
        timeout_secs: f64,
    },
    /// Evaluates a read-only check; the outcome is `succeeded` when it holds.
    Check {
        step: String,
        attempt: u32,
        check: Check,
        timeout_secs: f64,
    },
    Timer {
        step: String,
        attempt: u32,
        timer: TimerKind,
        at: DateTime<Utc>,
    },
    /// A best-effort message to people (an approval is waiting).
    Notify { notifier: String, summary: String },
}

/// What a transition adds to the journal besides its input, for people and for audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A step's intent: committed before its effect starts.
    StepStarted {
        step: String,
        name: String,
        attempt: u32,
        action: String,
        inputs: Value,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    StepSkipped {
        step: String,
        name: String,
        reason: String,
    },
    /// A step that ended without an outcome input of its own: a wait, an approval, a join, a
    /// condition error, a step that will not be retried after a crash.
    StepEnded {
        step: String,
        name: String,
        status: StepStatus,
        #[serde(default)]
        outputs: Value,
        #[serde(default)]
        error: Option<String>,
    },
    RollbackStarted {
        steps: Vec<String>,
    },
    RunEnded(RunEnd),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub status: RunStatus,
    #[serde(default)]
    pub error: Option<String>,
    /// The steps whose rollbacks ran and succeeded, in the order they were undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    #[serde(default)]
    pub outputs: Value,
    /// For a `rejected` run: the approval that was rejected, who rejected it and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejection>,
}

/// An approval answered no.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The approval step's path.
    pub step: String,
    /// The API token that rejected it.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The result of applying one input.
#[derive(Debug, Default)]
pub struct Transition {
    pub records: Vec<Record>,
    pub effects: Vec<Effect>,
    /// The input changed nothing (a stale timer, an outcome for a step that already ended); the
    /// engine need not journal it.
    pub ignored: bool,
    /// For an outcome input: the outputs it gave its step, journaled beside it.
    pub outputs: Option<Value>,
}

/// A run waiting for a person.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingApproval {
    pub step: String,
    /// The API tokens that may answer; any token with the `write` scope when empty.
    pub approvers: Vec<String>,
    pub message: Option<String>,
    pub deadline: DateTime<Utc>,
    /// The step's `distinct_from_starter`: the token that started the run may not answer.
    pub distinct_from_starter: bool,
    /// The token that started the run by hand; none when a rule started it.
    pub started_by: Option<String>,
}

impl PendingApproval {
    /// Why `by` may not answer this approval, if it may not.
    pub fn refuses(&self, by: &str) -> Option<Refusal> {
        if !self.approvers.is_empty() && !self.approvers.iter().any(|name| name == by) {
            return Some(Refusal::NotAnApprover);
        }
        if self.distinct_from_starter && self.started_by.as_deref() == Some(by) {
            return Some(Refusal::Starter);
        }
        None
    }
}

/// Why an answer to an approval is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not among the step's approvers.
    NotAnApprover,
    /// The token started the run, and the step wants someone else to approve it.
    Starter,
}

#[derive(Debug)]
struct Frame {
    block: usize,
    /// Prefix of the paths of this frame's steps.
    prefix: String,
    params: Arc<Value>,
    /// `item` and `index` inside a `for_each`.
    locals: Map<String, Value>,
    parent: Option<usize>,
    /// The composite step this frame belongs to, if any.
    owner: Option<String>,
    /// Steps of enclosing frames are not visible from a called runbook.
    call_boundary: bool,
    next: usize,
    current: Option<String>,
    /// `steps.NAME` as templates see it: `{status, outputs}`.
    steps: Map<String, Value>,
    failed: bool,
    /// Why this frame stopped, and how its first failed step wants the run to react. Kept per frame,
    /// not per run: a failure inside a composite step with `on_failure: continue` must not decide
    /// how a later, unrelated failure ends the run.
    failure: Option<Failure>,
    done: bool,
}

/// The first failed step of a frame.
#[derive(Clone, Debug)]
struct Failure {
    message: String,
    on_failure: OnFailure,
    /// The step was an approval a person rejected: the run ends `rejected`, not `failed`.
    rejection: Option<Rejection>,
}

#[derive(Debug)]
enum State {
    /// An action or an `assert` check is in flight.
    Effect {
        attempt: u32,
        check: bool,
    },
    /// Waiting to start `attempt`.
    Backoff {
        attempt: u32,
        at: DateTime<Utc>,
    },
    Sleep {
        at: DateTime<Utc>,
    },
    Poll {
        attempt: u32,
        checking: bool,
        next_at: Option<DateTime<Utc>>,
        deadline: DateTime<Utc>,
    },
    Approval {
        deadline: DateTime<Utc>,
        message: Option<String>,
    },
    Children {
        frames: Vec<usize>,
        items: Vec<Value>,
        next_item: usize,
        running: usize,
        failed: bool,
    },
}

#[derive(Debug)]
struct Active {
    frame: usize,
    index: usize,
    state: State,
}

/// A completed step that declares a rollback.
#[derive(Clone, Debug)]
struct Undo {
    path: String,
    frame: usize,
    block: usize,
    index: usize,
    outputs: Value,
    /// The action's own output, which a rollback declared by the action reads as `result`.
    result: Value,
}

#[derive(Debug, Default)]
struct Rollback {
    queue: Vec<Undo>,
    current: Option<(Undo, u32)>,
    undone: Vec<String>,
    failed: Vec<String>,
    waiting_retry: Option<DateTime<Utc>>,
}

/// One run's state.
#[derive(Debug)]
pub struct Machine {
    program: Arc<Program>,
    dry_run: bool,
    /// Top-level template and CEL variables besides `params` and `steps`: the trigger and `run`.
    /// Kept as JSON text: a map of maps costs a kilobyte or more in B-tree nodes, for every run,
    /// and memory per parked run counts. Parsed when a condition or a rendering needs it.
    globals: Box<str>,
    /// `globals` as a template value, built at the first rendering that needs it and shared by the
    /// rest.
    globals_context: std::cell::OnceCell<minijinja::Value>,
    frames: Vec<Frame>,
    active: HashMap<String, Active>,
    completed: Vec<Undo>,
    cancelled: Option<String>,
    rollback: Option<Rollback>,
    end: Option<RunEnd>,
}

impl Machine {
    /// A new run of `program` with checked `params`; `globals` holds the trigger's fields (`event`,
    /// `labels`, ...) and `run`.
    pub fn new(
        program: Arc<Program>,
        params: Map<String, Value>,
        globals: Map<String, Value>,
        dry_run: bool,
    ) -> Self {
        let root = Frame {
            block: 0,
            prefix: String::new(),
            params: Arc::new(Value::Object(params)),
            locals: Map::new(),
            parent: None,
            owner: None,
            call_boundary: true,
            next: 0,
            current: None,
            steps: Map::new(),
            failed: false,
            failure: None,
            done: false,
        };
        Self {
            program,
            dry_run,
            globals_context: std::cell::OnceCell::new(),
            globals: Value::Object(globals).to_string().into_boxed_str(),
            frames: vec![root],
            active: HashMap::new(),
            completed: Vec::new(),
            cancelled: None,
            rollback: None,
            end: None,
        }
    }

    /// A dry run: only actions that can ask their API for a dry run execute.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn end(&self) -> Option<&RunEnd> {
        self.end.as_ref()
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The approvals this run waits for.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        // A run that ended (in `needs_attention`, say) may keep steps in `active`; none is waiting.
        if self.end.is_some() {
            return Vec::new();
        }
        let mut pending: Vec<PendingApproval> = self
            .active
            .iter()
            .filter_map(|(path, active)| match &active.state {
                State::Approval { deadline, message } => {
                    let node = self.node(active.frame, active.index);
                    let Kind::Approval {
                        approvers,
                        distinct_from_starter,
                        ..
                    } = &node.kind
                    else {
                        return None;
                    };
                    Some(PendingApproval {
                        step: path.clone(),
                        approvers: approvers.clone(),
                        message: message.clone(),
                        deadline: *deadline,
                        distinct_from_starter: *distinct_from_starter,
                        started_by: self.started_by(),
                    })
                }
                _ => None,
            })
            .collect();
        pending.sort_by(|a, b| a.step.cmp(&b.step));
        pending
    }

    /// Applies one input at time `now`.
    pub fn apply(&mut self, input: &Input, now: DateTime<Utc>) -> Transition {
        let mut out = Transition::default();
        if self.end.is_some() {
            out.ignored = true;
            return out;
        }
        match input {
            Input::Start => self.pump(vec![0], now, &mut out),
            Input::Outcome {
                step,
                attempt,
                status,
                output,
                error,
            } => self.outcome(
                step,
                *attempt,
                *status,
                output,
                error.clone(),
                now,
                &mut out,
            ),
            Input::Timer {
                step,
                attempt,
                timer,
            } => self.timer(step, *attempt, *timer, now, &mut out),
            Input::Approval {
                step,
                by,
                approved,
                comment,
            } => self.approval(step, by, *approved, comment.as_deref(), now, &mut out),
            Input::Cancel { by } => self.cancel(by, now, &mut out),
            Input::Recover => self.recover(now, &mut out),
        }
        out
    }

    /// The API token that started the run by hand (`run.started_by`); none for a rule's run.
    fn started_by(&self) -> Option<String> {
        let globals = self.globals_map();
        globals
            .get("run")
            .and_then(|run| run.get("started_by"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn node(&self, frame: usize, index: usize) -> &Node {
        &self.program.blocks[self.frames[frame].block].steps[index]
    }

    fn block(&self, frame: usize) -> &Block {
        &self.program.blocks[self.frames[frame].block]
    }

    // ----- rendering -----

    /// `steps` as seen from `frame`: its own and its enclosing frames' up to a runbook boundary.
    fn visible_steps(&self, frame: usize) -> Map<String, Value> {
        let mut chain = Vec::new();
        let mut current = Some(frame);
        while let Some(index) = current {
            chain.push(index);
            let frame = &self.frames[index];
            current = if frame.call_boundary {
                None
            } else {
                frame.parent
            };
        }
        let mut steps = Map::new();
        for index in chain.into_iter().rev() {
            for (name, value) in &self.frames[index].steps {
                steps.insert(name.clone(), value.clone());
            }
        }
        steps
    }

    fn variables(&self, frame: usize, extra: &[(&str, Value)]) -> Map<String, Value> {
        let mut variables = self.globals_map();
        variables.insert("params".into(), (*self.frames[frame].params).clone());
        variables.insert("steps".into(), Value::Object(self.visible_steps(frame)));
        let mut current = Some(frame);
        while let Some(index) = current {
            for (name, value) in &self.frames[index].locals {
                variables
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
            current = if self.frames[index].call_boundary {
                None
            } else {
                self.frames[index].parent
            };
        }
        for (name, value) in extra {
            variables.insert((*name).to_string(), value.clone());
        }
        variables
    }

    /// The globals as JSON; they were serialized from a map, so they parse back into one.
    fn globals_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.globals).unwrap_or_default()
    }

    fn globals_context(&self) -> &minijinja::Value {
        self.globals_context
            .get_or_init(|| minijinja::Value::from_serialize(self.globals_map()))
    }

    /// The template context: the same names as [`Machine::variables`], with the globals shared
    /// instead of copied for each rendering.
    fn context(&self, frame: usize, extra: &[(&str, Value)]) -> minijinja::Value {
        let mut variables = Map::new();
        variables.insert("params".into(), (*self.frames[frame].params).clone());
        variables.insert("steps".into(), Value::Object(self.visible_steps(frame)));
        let mut current = Some(frame);
        while let Some(index) = current {
            for (name, value) in &self.frames[index].locals {
                // As in `variables`: a local never hides a global or an outer local.
                let global = self
                    .globals_context()
                    .get_attr(name)
                    .is_ok_and(|value| !value.is_undefined());
                if !global && !variables.contains_key(name) {
                    variables.insert(name.clone(), value.clone());
                }
            }
            current = if self.frames[index].call_boundary {
                None
            } else {
                self.frames[index].parent
            };
        }
        for (name, value) in extra {
            variables.insert((*name).to_string(), value.clone());
        }
        // The last map wins a lookup, as `variables` lets these names override the globals.
        minijinja::value::merge_maps([
            self.globals_context().clone(),
            minijinja::Value::from_serialize(variables),
        ])
    }

    fn render_outputs(
        &self,
        outputs: &[(String, crate::template::Template)],
        context: &minijinja::Value,
    ) -> Result<Value, String> {
        let mut rendered = Map::new();
        for (name, template) in outputs {
            let text = self
                .program
                .templates
                .render(template, context)
                .map_err(|error| format!("output `{name}`: {error}"))?;
            rendered.insert(name.clone(), Value::String(text));
        }
        Ok(Value::Object(rendered))
    }

    // ----- the scheduler -----

    /// Advances frames until nothing more can start now.
    fn pump(&mut self, mut work: Vec<usize>, now: DateTime<Utc>, out: &mut Transition) {
        while let Some(frame) = work.pop() {
            self.advance(frame, now, out, &mut work);
        }
        self.maybe_end(now, out);
    }

    fn advance(
        &mut self,
        frame: usize,
        now: DateTime<Utc>,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        loop {
            let state = &self.frames[frame];
            if state.done || state.current.is_some() {
                return;
            }
            let stopping = state.failed || self.cancelled.is_some();
            if stopping || state.next >= self.block(frame).steps.len() {
                self.finish_frame(frame, out, work);
                return;
            }
            let index = state.next;
            self.start_step(frame, index, now, out, work);
        }
    }

    fn start_step(
        &mut self,
        frame: usize,
        index: usize,
        now: DateTime<Utc>,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        let path = format!(
            "{}{}",
            self.frames[frame].prefix,
            self.node(frame, index).name
        );
        let name = self.node(frame, index).name.clone();
        self.frames[frame].current = Some(path.clone());
        let mut condition_note = None;
        if let Some(when) = &self.node(frame, index).when {
            match when.evaluate_bool(&self.variables(frame, &[])) {
                Ok(true) => {}
                Ok(false) => {
                    out.records.push(Record::StepSkipped {
                        step: path.clone(),
                        name: name.clone(),
                        reason: format!("`{}` is false", when.source_text),
                    });
                    self.end_step(
                        frame,
                        index,
                        &path,
                        StepStatus::Skipped,
                        json!({}),
                        None,
                        out,
                        work,
                    );
                    return;
                }
                Err(message) if self.dry_run => {
                    condition_note = Some(format!(
                        "condition not known before the run ({message}); assumed true"
                    ));
                }
                Err(message) => {
                    self.fail_without_outcome(
                        frame,
                        index,
                        &path,
                        format!("when: {message}"),
                        out,
                        work,
                    );
                    return;
                }
            }
        }
        let program = Arc::clone(&self.program);
        let node = &program.blocks[self.frames[frame].block].steps[index];
        match &node.kind {
            Kind::Action { .. } | Kind::Assert(_) => {
                self.issue(frame, index, &path, 1, false, condition_note, out, work);
            }
            Kind::Wait {
                duration_secs,
                until,
                ..
            } => {
                let inputs = match (duration_secs, until) {
                    (Some(seconds), _) => json!({ "duration_secs": seconds }),
                    (None, Some(check)) => {
                        match check.render(&program.templates, &self.context(frame, &[])) {
                            Ok(check) => json!({
                                "until": check,
                                "timeout_secs": node.timeout_secs,
                                "deadline": now + secs(node.timeout_secs),
                            }),
                            Err(error) if self.dry_run => {
                                json!({ "unrendered": error.to_string() })
                            }
                            Err(error) => {
                                self.fail_without_outcome(
                                    frame,
                                    index,
                                    &path,
                                    error.to_string(),
                                    out,
                                    work,
                                );
                                return;
                            }
                        }
                    }
                    (None, None) => json!({}),
                };
                out.records.push(started(
                    &path,
                    &name,
                    "wait",
                    with_note(inputs, condition_note),
                ));
                if self.dry_run {
                    self.end_step(
                        frame,
                        index,
                        &path,
                        StepStatus::DryRun,
                        json!({}),
                        None,
                        out,
                        work,
                    );
                    return;
                }
                match duration_secs {
                    Some(seconds) => {
                        let at = now + secs(*seconds);
                        self.active.insert(
                            path.clone(),
                            Active {
                                frame,
                                index,
                                state: State::Sleep { at },
                            },
                        );
                        out.effects.push(timer(&path, 1, TimerKind::Sleep, at));
                    }
                    None => {
                        let deadline = now + secs(node.timeout_secs);
                        self.active.insert(
                            path.clone(),
                            Active {
                                frame,
                                index,
                                state: State::Poll {
                                    attempt: 1,
                                    checking: false,
                                    next_at: None,
                                    deadline,
                                },
                            },
                        );
                        out.effects
                            .push(timer(&path, 0, TimerKind::Deadline, deadline));
                        self.poll(&path, 1, out, work);
                    }
                }
            }
            Kind::Approval {
                approvers,
                message,
                notify,
                distinct_from_starter,
            } => {
                let message = match message {
                    Some(template) => match program.templates.render(
                        template,
                        &if template.is_literal() {
                            minijinja::Value::UNDEFINED
                        } else {
                            self.context(frame, &[])
                        },
                    ) {
                        Ok(text) => Some(text),
                        Err(error) if self.dry_run => Some(format!("(not rendered: {error})")),
                        Err(error) => {
                            self.fail_without_outcome(
                                frame,
                                index,
                                &path,
                                error.to_string(),
                                out,
                                work,
                            );
                            return;
                        }
                    },
                    None => None,
                };
                let deadline = now + secs(node.timeout_secs);
                let mut inputs =
                    json!({ "approvers": approvers, "message": message, "deadline": deadline });
                if *distinct_from_starter {
                    inputs["distinct_from_starter"] = Value::Bool(true);
                    inputs["started_by"] = json!(self.started_by());
                }
                out.records.push(started(
                    &path,
                    &name,
                    "approval",
                    with_note(inputs, condition_note),
                ));
                if self.dry_run {
                    self.end_step(
                        frame,
                        index,
                        &path,
                        StepStatus::DryRun,
                        json!({}),
                        None,
                        out,
                        work,
                    );
                    return;
                }
                if let Some(notifier) = notify {
                    out.effects.push(Effect::Notify {
                        notifier: notifier.clone(),
                        summary: format!(
                            "approval needed for step `{path}` of runbook `{}`: {}",
                            program.name(),
                            message.clone().unwrap_or_default()
                        ),
                    });
                }
                self.active.insert(
                    path.clone(),
                    Active {
                        frame,
                        index,
                        state: State::Approval { deadline, message },
                    },
                );
                out.effects
                    .push(timer(&path, 0, TimerKind::Deadline, deadline));
            }
            Kind::Parallel(branches) => {
                out.records.push(started(&path, &name, "parallel", with_note(json!({ "branches": branches.iter().map(|(name, _)| name).collect::<Vec<_>>() }), condition_note)));
                let mut frames = Vec::with_capacity(branches.len());
                for (branch, block) in branches {
                    let child = self.child_frame(
                        frame,
                        *block,
                        format!("{path}.{branch}."),
                        &path,
                        None,
                        false,
                        None,
                    );
                    frames.push(child);
                }
                self.active.insert(
                    path.clone(),
                    Active {
                        frame,
                        index,
                        state: State::Children {
                            running: frames.len(),
                            frames: frames.clone(),
                            items: Vec::new(),
                            next_item: 0,
                            failed: false,
                        },
                    },
                );
                work.extend(frames.into_iter().rev());
            }
            Kind::ForEach {
                items,
                concurrency,
                block,
            } => {
                let items = match items.evaluate(&self.variables(frame, &[])) {
                    Ok(Value::Array(items)) => items,
                    Ok(other) => {
                        self.fail_without_outcome(
                            frame,
                            index,
                            &path,
                            format!("for_each: `{}` gave {other}, not a list", items.source_text),
                            out,
                            work,
                        );
                        return;
                    }
                    Err(message) if self.dry_run => {
                        out.records.push(started(
                            &path,
                            &name,
                            "for_each",
                            json!({ "unrendered": message }),
                        ));
                        self.end_step(
                            frame,
                            index,
                            &path,
                            StepStatus::DryRun,
                            json!({}),
                            None,
                            out,
                            work,
                        );
                        return;
                    }
                    Err(message) => {
                        self.fail_without_outcome(
                            frame,
                            index,
                            &path,
                            format!("for_each: {message}"),
                            out,
                            work,
                        );
                        return;
                    }
                };
                out.records.push(started(
                    &path,
                    &name,
                    "for_each",
                    with_note(
                        json!({ "items": items, "concurrency": concurrency }),
                        condition_note,
                    ),
                ));
                let start = (*concurrency).min(items.len());
                let mut frames = Vec::with_capacity(items.len());
                for item_index in 0..start {
                    frames.push(self.item_frame(frame, *block, &path, &items, item_index));
                }
                let started = frames.clone();
                self.active.insert(
                    path.clone(),
                    Active {
                        frame,
                        index,
                        state: State::Children {
                            running: start,
                            frames,
                            items,
                            next_item: start,
                            failed: false,
                        },
                    },
                );
                if started.is_empty() {
                    self.end_step(
                        frame,
                        index,
                        &path,
                        StepStatus::Succeeded,
                        json!({ "items": [] }),
                        None,
                        out,
                        work,
                    );
                    return;
                }
                work.extend(started.into_iter().rev());
            }
            Kind::Call {
                runbook,
                params,
                specs,
                block,
                ..
            } => {
                let context = self.context(frame, &[]);
                let mut given = BTreeMap::new();
                for (name, inputs) in params {
                    match program.templates.render_inputs(inputs, &context) {
                        Ok(value) => {
                            given.insert(name.clone(), value);
                        }
                        Err(error) if self.dry_run => {
                            given.insert(
                                name.clone(),
                                Value::String(format!("(not rendered: {error})")),
                            );
                        }
                        Err(error) => {
                            self.fail_without_outcome(
                                frame,
                                index,
                                &path,
                                format!("params.{name}: {error}"),
                                out,
                                work,
                            );
                            return;
                        }
                    }
                }
                let checked = match coerce_params(specs, &given) {
                    Ok(checked) => checked,
                    Err(_) if self.dry_run => given.into_iter().collect(),
                    Err(error) => {
                        self.fail_without_outcome(
                            frame,
                            index,
                            &path,
                            format!("calling `{runbook}`: {error}"),
                            out,
                            work,
                        );
                        return;
                    }
                };
                out.records.push(started(
                    &path,
                    &name,
                    "runbook",
                    with_note(
                        json!({ "runbook": runbook, "params": checked }),
                        condition_note,
                    ),
                ));
                let child = self.child_frame(
                    frame,
                    *block,
                    format!("{path}."),
                    &path,
                    None,
                    true,
                    Some(Value::Object(checked)),
                );
                self.active.insert(
                    path.clone(),
                    Active {
                        frame,
                        index,
                        state: State::Children {
                            running: 1,
                            frames: vec![child],
                            items: Vec::new(),
                            next_item: 0,
                            failed: false,
                        },
                    },
                );
                work.push(child);
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // A frame id, a locals map and flags; a struct would only rename them.
    fn child_frame(
        &mut self,
        parent: usize,
        block: usize,
        prefix: String,
        owner: &str,
        locals: Option<Map<String, Value>>,
        call_boundary: bool,
        params: Option<Value>,
    ) -> usize {
        let params = match params {
            Some(params) => Arc::new(params),
            None => Arc::clone(&self.frames[parent].params),
        };
        self.frames.push(Frame {
            block,
            prefix,
            params,
            locals: locals.unwrap_or_default(),
            parent: Some(parent),
            owner: Some(owner.to_string()),
            call_boundary,
            next: 0,
            current: None,
            steps: Map::new(),
            failed: false,
            failure: None,
            done: false,
        });
        self.frames.len() - 1
    }

    fn item_frame(
        &mut self,
        parent: usize,
        block: usize,
        owner: &str,
        items: &[Value],
        item: usize,
    ) -> usize {
        let mut locals = Map::new();
        locals.insert("item".into(), items[item].clone());
        locals.insert("index".into(), Value::from(item));
        self.child_frame(
            parent,
            block,
            format!("{owner}[{item}]."),
            owner,
            Some(locals),
            false,
            None,
        )
    }

    /// Renders and issues attempt `attempt` of an action or assert step.
    #[allow(clippy::too_many_arguments)] // The step's coordinates and the transition's outputs.
    fn issue(
        &mut self,
        frame: usize,
        index: usize,
        path: &str,
        attempt: u32,
        resumed: bool,
        note: Option<String>,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        let program = Arc::clone(&self.program);
        let node = &program.blocks[self.frames[frame].block].steps[index];
        // Inputs with no template in them (the common `with` of constants) need no context.
        let context = match &node.kind {
            Kind::Action { inputs, .. } if inputs.is_literal() => minijinja::Value::UNDEFINED,
            _ => self.context(frame, &[]),
        };
        let (label, rendered) = match &node.kind {
            Kind::Action { action, inputs } => (
                action.clone(),
                program
                    .templates
                    .render_inputs(inputs, &context)
                    .map_err(|error| error.to_string())
                    .and_then(|with| {
                        action::parse(action, &with)
                            .map(|parsed| (with, Some(parsed), None))
                            .map_err(|error| format!("{}: {}", error.field, error.message))
                    }),
            ),
            Kind::Assert(check) => (
                "assert".to_string(),
                check
                    .render(&program.templates, &context)
                    .map(|check| (json!({ "check": check }), None, Some(check)))
                    .map_err(|error| error.to_string()),
            ),
            _ => return,
        };
        let (inputs, parsed, check) = match rendered {
            Ok(rendered) => rendered,
            Err(message) if self.dry_run => {
                out.records.push(Record::StepStarted {
                    step: path.to_string(),
                    name: node.name.clone(),
                    attempt,
                    action: label,
                    inputs: with_note(json!({ "unrendered": message }), note),
                    resumed,
                });
                self.end_step(
                    frame,
                    index,
                    path,
                    StepStatus::DryRun,
                    json!({}),
                    None,
                    out,
                    work,
                );
                return;
            }
            Err(message) => {
                self.fail_without_outcome(frame, index, path, message, out, work);
                return;
            }
        };
        out.records.push(Record::StepStarted {
            step: path.to_string(),
            name: node.name.clone(),
            attempt,
            action: label,
            inputs: with_note(inputs, note),
            resumed,
        });
        // A dry run executes nothing, except actions whose API can say what it would do without
        // doing it (Kubernetes' `dryRun=All`): those run, and their outcome comes back as `dry_run`.
        if self.dry_run && !parsed.as_ref().is_some_and(Action::server_dry_run) {
            self.end_step(
                frame,
                index,
                path,
                StepStatus::DryRun,
                json!({}),
                None,
                out,
                work,
            );
            return;
        }
        let is_check = check.is_some();
        out.effects.push(match (parsed, check) {
            (Some(action), _) => Effect::Execute {
                step: path.to_string(),
                attempt,
                action,
                timeout_secs: node.timeout_secs,
            },
            (None, Some(check)) => Effect::Check {
                step: path.to_string(),
                attempt,
                check,
                timeout_secs: node.timeout_secs.min(60.0),
            },
            (None, None) => return,
        });
        self.active.insert(
            path.to_string(),
            Active {
                frame,
                index,
                state: State::Effect {
                    attempt,
                    check: is_check,
                },
            },
        );
    }

    fn poll(&mut self, path: &str, attempt: u32, out: &mut Transition, work: &mut Vec<usize>) {
        let Some(active) = self.active.get(path) else {
            return;
        };
        let (frame, index) = (active.frame, active.index);
        let program = Arc::clone(&self.program);
        let node = &program.blocks[self.frames[frame].block].steps[index];
        let Kind::Wait {
            until: Some(check), ..
        } = &node.kind
        else {
            return;
        };
        match check.render(&program.templates, &self.context(frame, &[])) {
            Ok(check) => {
                out.effects.push(Effect::Check {
                    step: path.to_string(),
                    attempt,
                    check,
                    timeout_secs: node.timeout_secs.min(60.0),
                });
                if let Some(Active {
                    state:
                        State::Poll {
                            attempt: current,
                            checking,
                            next_at,
                            ..
                        },
                    ..
                }) = self.active.get_mut(path)
                {
                    *current = attempt;
                    *checking = true;
                    *next_at = None;
                }
            }
            Err(error) => {
                self.active.remove(path);
                self.fail_without_outcome(frame, index, path, error.to_string(), out, work);
            }
        }
    }

    // ----- step ends -----

    /// A step failed before any effect of its own: record why, then fail it.
    #[allow(clippy::too_many_arguments)] // The step's coordinates and the transition's outputs.
    fn fail_without_outcome(
        &mut self,
        frame: usize,
        index: usize,
        path: &str,
        message: String,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        self.end_step(
            frame,
            index,
            path,
            StepStatus::Failed,
            json!({}),
            Some(message),
            out,
            work,
        );
    }

    /// Ends a step: records it where templates see it, registers its rollback, applies `on_failure`.
    #[allow(clippy::too_many_arguments)] // The step's coordinates, its result and the transition's outputs.
    fn end_step(
        &mut self,
        frame: usize,
        index: usize,
        path: &str,
        status: StepStatus,
        outputs: Value,
        error: Option<String>,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        self.end_step_inner(
            frame, index, path, status, outputs, None, error, true, out, work,
        )
    }

    /// As `end_step`, plus the action's own output (`result`, which a declared rollback reads)
    /// and whether to record the end.
    #[allow(clippy::too_many_arguments)]
    fn end_step_inner(
        &mut self,
        frame: usize,
        index: usize,
        path: &str,
        status: StepStatus,
        outputs: Value,
        result: Option<&Value>,
        error: Option<String>,
        record: bool,
        out: &mut Transition,
        work: &mut Vec<usize>,
    ) {
        self.active.remove(path);
        let node = self.node(frame, index);
        let name = node.name.clone();
        let on_failure = node.on_failure;
        let has_rollback = node.rollback.is_some();
        if record && status != StepStatus::Skipped {
            out.records.push(Record::StepEnded {
                step: path.to_string(),
                name: name.clone(),
                status,
                outputs: outputs.clone(),
                error: error.clone(),
            });
        }
        let failed = !matches!(
            status,
            StepStatus::Succeeded | StepStatus::Skipped | StepStatus::DryRun
        );
        // An action that reports it changed nothing (`changed: false`) has nothing to undo.
        let changed = result
            .and_then(|result| result.get("changed"))
            .and_then(Value::as_bool)
            != Some(false);
        if !failed && has_rollback && status == StepStatus::Succeeded && changed {
            self.completed.push(Undo {
                path: path.to_string(),
                frame,
                block: self.frames[frame].block,
                index,
                outputs: outputs.clone(),
                result: result.cloned().unwrap_or(Value::Null),
            });
        }
        let state = &mut self.frames[frame];
        state
            .steps
            .insert(name, json!({ "status": status, "outputs": outputs }));
        state.current = None;
        state.next = index + 1;
        if failed && on_failure != OnFailure::Continue && status != StepStatus::Cancelled {
            state.failed = true;
            if state.failure.is_none() {
                // A rejection's error already says `rejected by ...`.
                let (message, rejection) = match status {
                    StepStatus::Rejected => (
                        format!("step `{path}` {}", error.unwrap_or_default()),
                        Some(Rejection {
                            step: path.to_string(),
                            by: outputs["by"].as_str().unwrap_or_default().to_string(),
                            comment: outputs["comment"].as_str().map(str::to_string),
                        }),
                    ),
                    _ => (
                        format!("step `{path}` {status}: {}", error.unwrap_or_default()),
                        None,
                    ),
                };
                state.failure = Some(Failure {
                    message,
                    on_failure,
                    rejection,
                });
            }
        }
        work.push(frame);
    }

    fn finish_frame(&mut self, frame: usize, out: &mut Transition, work: &mut Vec<usize>) {
        self.frames[frame].done = true;
        let Some(owner) = self.frames[frame].owner.clone() else {
            return; // The root frame: `maybe_end` ends the run.
        };
        let failed_child = self.frames[frame].failed;
        let Some(active) = self.active.get_mut(&owner) else {
            return;
        };
        let (owner_frame, owner_index) = (active.frame, active.index);
        let State::Children {
            frames,
            items,
            next_item,
            running,
            failed,
        } = &mut active.state
        else {
            return;
        };
        *running -= 1;
        *failed |= failed_child;
        let mut start = None;
        if !*failed && self.cancelled.is_none() && *next_item < items.len() {
            start = Some(*next_item);
            *next_item += 1;
            *running += 1;
        }
        if let Some(item) = start {
            let (items_copy, block) = {
                let items = items.clone();
                let Kind::ForEach { block, .. } =
                    &self.program.blocks[self.frames[owner_frame].block].steps[owner_index].kind
                else {
                    return;
                };
                (items, *block)
            };
            let child = self.item_frame(owner_frame, block, &owner, &items_copy, item);
            if let Some(Active {
                state: State::Children { frames, .. },
                ..
            }) = self.active.get_mut(&owner)
            {
                frames.push(child);
            }
            work.push(child);
            return;
        }
        if *running > 0 {
            return;
        }
        let any_failed = *failed;
        let children = frames.clone();
        let program = Arc::clone(&self.program);
        let node = &program.blocks[self.frames[owner_frame].block].steps[owner_index];
        let mut outputs = match &node.kind {
            Kind::Parallel(branches) => {
                let mut map = Map::new();
                for ((name, _), child) in branches.iter().zip(&children) {
                    map.insert(name.clone(), json!({ "steps": self.frames[*child].steps }));
                }
                json!({ "branches": map })
            }
            Kind::ForEach { .. } => json!({
                "items": children.iter().map(|child| json!({ "steps": self.frames[*child].steps })).collect::<Vec<_>>()
            }),
            Kind::Call { outputs, .. } if !any_failed && !self.dry_run => {
                let context = self.context(children[0], &[]);
                match self.render_outputs(outputs, &context) {
                    Ok(outputs) => outputs,
                    Err(message) => {
                        self.end_step(
                            owner_frame,
                            owner_index,
                            &owner,
                            StepStatus::Failed,
                            json!({}),
                            Some(message),
                            out,
                            work,
                        );
                        return;
                    }
                }
            }
            _ => json!({}),
        };
        if !any_failed && !self.dry_run && !node.outputs.is_empty() {
            let context = self.context(owner_frame, &[("result", outputs.clone())]);
            match self.render_outputs(&node.outputs, &context) {
                Ok(own) => outputs = merge(outputs, own),
                Err(message) => {
                    self.end_step(
                        owner_frame,
                        owner_index,
                        &owner,
                        StepStatus::Failed,
                        json!({}),
                        Some(message),
                        out,
                        work,
                    );
                    return;
                }
            }
        }
        let child_failure = children
            .iter()
            .find_map(|child| self.frames[*child].failure.clone());
        if any_failed && self.cancelled.is_none() && node.on_failure != OnFailure::Continue {
            // The run reports, and reacts to, the failure inside the composite step (its step and its
            // `on_failure`), not the composite step's own.
            let owner_state = &mut self.frames[owner_frame];
            if owner_state.failure.is_none() {
                owner_state.failure = child_failure.clone();
            }
        }
        let (status, error) = if self.cancelled.is_some() && any_failed {
            (StepStatus::Cancelled, None)
        } else if any_failed {
            (
                StepStatus::Failed,
                child_failure.map(|failure| failure.message),
            )
        } else if self.cancelled.is_some() {
            (StepStatus::Cancelled, None)
        } else if self.dry_run {
            (StepStatus::DryRun, None)
        } else {
            (StepStatus::Succeeded, None)
        };
        self.end_step(
            owner_frame,
            owner_index,
            &owner,
            status,
            outputs,
            error,
            out,
            work,
        );
    }

    // ----- inputs -----

    #[allow(clippy::too_many_arguments)] // One input's fields.
    fn outcome(
        &mut self,
        path: &str,
        attempt: u32,
        status: OutcomeStatus,
        output: &Value,
        error: Option<String>,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        if self.rollback.is_some() {
            self.rollback_outcome(path, attempt, status.step(), error, now, out);
            return;
        }
        let Some(active) = self.active.get(path) else {
            out.ignored = true;
            return;
        };
        let (frame, index) = (active.frame, active.index);
        let mut work = Vec::new();
        match active.state {
            State::Effect {
                attempt: current, ..
            } if current == attempt => {
                let node = self.node(frame, index);
                if status == OutcomeStatus::Succeeded
                    || (self.dry_run && status == OutcomeStatus::DryRun)
                {
                    let outputs = &self.node(frame, index).outputs;
                    // A step without outputs renders nothing, so it needs no context.
                    let context = if outputs.is_empty() {
                        minijinja::Value::UNDEFINED
                    } else {
                        self.context(frame, &[("result", output.clone())])
                    };
                    match self.render_outputs(outputs, &context) {
                        Ok(outputs) => {
                            out.outputs = Some(outputs.clone());
                            self.end_step_inner(
                                frame,
                                index,
                                path,
                                status.step(),
                                outputs,
                                Some(output),
                                None,
                                false,
                                out,
                                &mut work,
                            );
                        }
                        Err(message) => self.end_step(
                            frame,
                            index,
                            path,
                            StepStatus::Failed,
                            json!({}),
                            Some(message),
                            out,
                            &mut work,
                        ),
                    }
                } else if let Some(retries) = node
                    .retries
                    .as_ref()
                    .filter(|retries| attempt <= retries.count && self.cancelled.is_none())
                {
                    let at = now + secs(retries.backoff(attempt + 1));
                    self.active.get_mut(path).expect("checked above").state = State::Backoff {
                        attempt: attempt + 1,
                        at,
                    };
                    out.effects
                        .push(timer(path, attempt + 1, TimerKind::Retry, at));
                } else {
                    let status = if self.cancelled.is_some() {
                        StepStatus::Cancelled
                    } else {
                        status.step()
                    };
                    self.end_step_inner(
                        frame,
                        index,
                        path,
                        status,
                        json!({}),
                        None,
                        error,
                        false,
                        out,
                        &mut work,
                    );
                }
            }
            State::Poll {
                attempt: current,
                checking: true,
                deadline,
                ..
            } if current == attempt => {
                if status == OutcomeStatus::Succeeded {
                    self.end_step(
                        frame,
                        index,
                        path,
                        StepStatus::Succeeded,
                        json!({ "polls": attempt }),
                        None,
                        out,
                        &mut work,
                    );
                } else if self.cancelled.is_some() {
                    self.end_step(
                        frame,
                        index,
                        path,
                        StepStatus::Cancelled,
                        json!({}),
                        None,
                        out,
                        &mut work,
                    );
                } else {
                    let interval = match &self.node(frame, index).kind {
                        Kind::Wait { interval_secs, .. } => *interval_secs,
                        _ => 10.0,
                    };
                    let at = now + secs(interval);
                    if at >= deadline {
                        // The deadline timer ends the step; no poll after it.
                        if let Some(Active {
                            state: State::Poll { checking, .. },
                            ..
                        }) = self.active.get_mut(path)
                        {
                            *checking = false;
                        }
                    } else {
                        if let Some(Active {
                            state:
                                State::Poll {
                                    checking, next_at, ..
                                },
                            ..
                        }) = self.active.get_mut(path)
                        {
                            *checking = false;
                            *next_at = Some(at);
                        }
                        out.effects
                            .push(timer(path, attempt + 1, TimerKind::Poll, at));
                    }
                }
            }
            _ => {
                out.ignored = true;
                return;
            }
        }
        self.pump(work, now, out);
    }

    fn timer(
        &mut self,
        path: &str,
        attempt: u32,
        kind: TimerKind,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        if self.rollback.is_some() {
            self.rollback_timer(path, attempt, now, out);
            return;
        }
        let Some(active) = self.active.get(path) else {
            out.ignored = true;
            return;
        };
        let (frame, index) = (active.frame, active.index);
        let mut work = Vec::new();
        match (&active.state, kind) {
            (State::Backoff { attempt: next, .. }, TimerKind::Retry) if *next == attempt => {
                self.issue(frame, index, path, attempt, false, None, out, &mut work);
            }
            (State::Sleep { .. }, TimerKind::Sleep) => {
                self.end_step(
                    frame,
                    index,
                    path,
                    StepStatus::Succeeded,
                    json!({}),
                    None,
                    out,
                    &mut work,
                );
            }
            (
                State::Poll {
                    attempt: current,
                    checking: false,
                    ..
                },
                TimerKind::Poll,
            ) if attempt == current + 1 => {
                self.poll(path, attempt, out, &mut work);
            }
            (State::Poll { .. }, TimerKind::Deadline) => {
                let timeout = self.node(frame, index).timeout_secs;
                self.end_step(
                    frame,
                    index,
                    path,
                    StepStatus::TimedOut,
                    json!({}),
                    Some(format!("the check did not hold within {timeout} s")),
                    out,
                    &mut work,
                );
            }
            (State::Approval { .. }, TimerKind::Deadline) => {
                let timeout = self.node(frame, index).timeout_secs;
                self.end_step(
                    frame,
                    index,
                    path,
                    StepStatus::TimedOut,
                    json!({}),
                    Some(format!("no one approved within {timeout} s")),
                    out,
                    &mut work,
                );
            }
            _ => {
                out.ignored = true;
                return;
            }
        }
        self.pump(work, now, out);
    }

    fn approval(
        &mut self,
        path: &str,
        by: &str,
        approved: bool,
        comment: Option<&str>,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        let Some(active) = self.active.get(path) else {
            out.ignored = true;
            return;
        };
        let (frame, index) = (active.frame, active.index);
        if !matches!(active.state, State::Approval { .. }) {
            out.ignored = true;
            return;
        }
        // The engine refuses such answers before they reach the run; a journal written otherwise
        // still replays the same.
        let refused = self
            .pending_approvals()
            .iter()
            .find(|pending| pending.step == path)
            .is_some_and(|pending| pending.refuses(by).is_some());
        if refused {
            out.ignored = true;
            return;
        }
        let mut work = Vec::new();
        let outputs = json!({ "by": by, "approved": approved, "comment": comment });
        if approved {
            self.end_step(
                frame,
                index,
                path,
                StepStatus::Succeeded,
                outputs,
                None,
                out,
                &mut work,
            );
        } else {
            let reason = comment
                .map(|comment| format!(": {comment}"))
                .unwrap_or_default();
            self.end_step(
                frame,
                index,
                path,
                StepStatus::Rejected,
                outputs,
                Some(format!("rejected by `{by}`{reason}")),
                out,
                &mut work,
            );
        }
        self.pump(work, now, out);
    }

    fn cancel(&mut self, by: &str, now: DateTime<Utc>, out: &mut Transition) {
        if self.cancelled.is_some() {
            out.ignored = true;
            return;
        }
        self.cancelled = Some(by.to_string());
        if let Some(rollback) = &mut self.rollback {
            rollback.queue.clear();
            // An undo waiting to retry waits on nothing but time, so like such steps it ends now;
            // one in flight is awaited.
            if rollback.waiting_retry.take().is_some() {
                rollback.current = None;
            }
            if rollback.current.is_none() {
                self.maybe_end(now, out);
            }
            return;
        }
        // Steps that wait on nothing but time or people end now; effects in flight are awaited,
        // because what they did cannot be called back.
        let mut waiting: Vec<(String, usize, usize)> = self
            .active
            .iter()
            .filter(|(_, active)| {
                matches!(
                    active.state,
                    State::Backoff { .. }
                        | State::Sleep { .. }
                        | State::Approval { .. }
                        | State::Poll {
                            checking: false,
                            ..
                        }
                )
            })
            .map(|(path, active)| (path.clone(), active.frame, active.index))
            .collect();
        waiting.sort();
        let mut work: Vec<usize> = Vec::new();
        for (path, frame, index) in waiting {
            self.end_step(
                frame,
                index,
                &path,
                StepStatus::Cancelled,
                json!({}),
                Some(format!("cancelled by `{by}`")),
                out,
                &mut work,
            );
        }
        self.pump(work, now, out);
    }

    fn recover(&mut self, now: DateTime<Utc>, out: &mut Transition) {
        let mut unknown = Vec::new();
        let mut reissue = Vec::new();
        let mut paths: Vec<&String> = self.active.keys().collect();
        paths.sort();
        for path in paths {
            let active = &self.active[path];
            let node = self.node(active.frame, active.index);
            match &active.state {
                State::Effect { attempt, check } => {
                    if *check || node.idempotent || self.dry_run {
                        reissue.push((path.clone(), active.frame, active.index, *attempt));
                    } else {
                        unknown.push(format!("`{path}` (attempt {attempt})"));
                    }
                }
                State::Backoff { attempt, at } => {
                    out.effects
                        .push(timer(path, *attempt, TimerKind::Retry, *at))
                }
                State::Sleep { at } => out.effects.push(timer(path, 1, TimerKind::Sleep, *at)),
                State::Poll {
                    attempt,
                    checking,
                    next_at,
                    deadline,
                } => {
                    out.effects
                        .push(timer(path, 0, TimerKind::Deadline, *deadline));
                    if *checking {
                        reissue.push((path.clone(), active.frame, active.index, *attempt));
                    } else if let Some(at) = next_at {
                        out.effects
                            .push(timer(path, attempt + 1, TimerKind::Poll, *at));
                    }
                }
                State::Approval { deadline, .. } => {
                    out.effects
                        .push(timer(path, 0, TimerKind::Deadline, *deadline))
                }
                State::Children { .. } => {}
            }
        }
        if let Some(rollback) = &self.rollback {
            if let Some((undo, attempt)) = &rollback.current {
                let node = self.program.blocks[undo.block].steps[undo.index]
                    .rollback
                    .as_ref();
                match (rollback.waiting_retry, node) {
                    (Some(at), _) => out.effects.push(timer(
                        &format!("{}.rollback", undo.path),
                        *attempt,
                        TimerKind::Retry,
                        at,
                    )),
                    (None, Some(node)) if node.idempotent || self.dry_run => {
                        let (undo, attempt) = (undo.clone(), *attempt);
                        self.issue_rollback(&undo, attempt, true, now, out);
                    }
                    (None, _) => {
                        unknown.push(format!("`{}.rollback` (attempt {attempt})", undo.path))
                    }
                }
            }
        }
        if !unknown.is_empty() {
            out.effects.clear();
            let end = RunEnd {
                status: RunStatus::NeedsAttention,
                error: Some(format!(
                    "the daemon stopped while {} ran; whether it took effect is unknown and it is not marked `idempotent: true`, so homeostat will not run it again: check its target, then start a new run if needed",
                    unknown.join(", ")
                )),
                undone: self.rollback.as_ref().map(|r| r.undone.clone()).unwrap_or_default(),
                outputs: Value::Null,
                rejected: None,
            };
            out.records.push(Record::RunEnded(end.clone()));
            self.end = Some(end);
            return;
        }
        let mut work = Vec::new();
        for (path, frame, index, attempt) in reissue {
            if matches!(
                self.active.get(&path).map(|a| &a.state),
                Some(State::Poll { .. })
            ) {
                self.poll(&path, attempt, out, &mut work);
            } else {
                self.issue(frame, index, &path, attempt, true, None, out, &mut work);
            }
        }
        self.pump(work, now, out);
    }

    // ----- the end and rollback -----

    fn maybe_end(&mut self, now: DateTime<Utc>, out: &mut Transition) {
        if self.end.is_some() {
            return;
        }
        if let Some(rollback) = &self.rollback {
            if rollback.current.is_some() {
                return;
            }
            let rollback = self.rollback.take().unwrap_or_default();
            let (failure, rejection) = self.frames[0]
                .failure
                .as_ref()
                .map(|failure| (failure.message.clone(), failure.rejection.clone()))
                .unwrap_or_default();
            let end = if self.cancelled.is_some() {
                RunEnd {
                    status: RunStatus::Cancelled,
                    error: Some(format!("{failure}; rollback cancelled")),
                    undone: rollback.undone,
                    outputs: Value::Null,
                    rejected: None,
                }
            } else if rollback.failed.is_empty() {
                // A rejected run whose rollbacks all succeeded is still the rejection's.
                RunEnd {
                    status: if rejection.is_some() {
                        RunStatus::Rejected
                    } else {
                        RunStatus::RolledBack
                    },
                    error: Some(failure),
                    undone: rollback.undone,
                    outputs: Value::Null,
                    rejected: rejection,
                }
            } else {
                RunEnd {
                    status: RunStatus::Failed,
                    error: Some(format!(
                        "{failure}; the rollback of {} failed too",
                        rollback
                            .failed
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    undone: rollback.undone,
                    outputs: Value::Null,
                    rejected: rejection,
                }
            };
            self.finish(end, out);
            return;
        }
        if !self.frames[0].done {
            return;
        }
        if let Some(by) = &self.cancelled {
            let end = RunEnd {
                status: RunStatus::Cancelled,
                error: Some(format!("cancelled by `{by}`")),
                undone: Vec::new(),
                outputs: Value::Null,
                rejected: None,
            };
            self.finish(end, out);
            return;
        }
        if let Some(failure) = self.frames[0].failure.clone() {
            if self.frames[0].failed {
                if failure.on_failure == OnFailure::Rollback && !self.completed.is_empty() {
                    let mut queue = self.completed.clone();
                    queue.reverse();
                    out.records.push(Record::RollbackStarted {
                        steps: queue.iter().map(|undo| undo.path.clone()).collect(),
                    });
                    queue.reverse(); // popped from the end: newest first
                    self.rollback = Some(Rollback {
                        queue,
                        ..Rollback::default()
                    });
                    self.next_rollback(now, out);
                    return;
                }
                let end = RunEnd {
                    status: if failure.rejection.is_some() {
                        RunStatus::Rejected
                    } else {
                        RunStatus::Failed
                    },
                    error: Some(failure.message),
                    undone: Vec::new(),
                    outputs: Value::Null,
                    rejected: failure.rejection,
                };
                self.finish(end, out);
                return;
            }
        }
        let outputs = if self.dry_run || self.program.outputs.is_empty() {
            Value::Null
        } else {
            let context = self.context(0, &[]);
            match self.render_outputs(&self.program.outputs, &context) {
                Ok(outputs) => outputs,
                Err(message) => {
                    let end = RunEnd {
                        status: RunStatus::Failed,
                        error: Some(message),
                        undone: Vec::new(),
                        outputs: Value::Null,
                        rejected: None,
                    };
                    self.finish(end, out);
                    return;
                }
            }
        };
        let status = if self.dry_run {
            RunStatus::DryRun
        } else {
            RunStatus::Succeeded
        };
        self.finish(
            RunEnd {
                status,
                error: None,
                undone: Vec::new(),
                outputs,
                rejected: None,
            },
            out,
        );
    }

    fn finish(&mut self, end: RunEnd, out: &mut Transition) {
        out.records.push(Record::RunEnded(end.clone()));
        self.end = Some(end);
    }

    fn next_rollback(&mut self, now: DateTime<Utc>, out: &mut Transition) {
        let Some(rollback) = &mut self.rollback else {
            return;
        };
        match rollback.queue.pop() {
            Some(undo) => {
                rollback.current = Some((undo.clone(), 1));
                self.issue_rollback(&undo, 1, false, now, out);
            }
            None => {
                rollback.current = None;
                self.maybe_end(now, out);
            }
        }
    }

    fn issue_rollback(
        &mut self,
        undo: &Undo,
        attempt: u32,
        resumed: bool,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        let program = Arc::clone(&self.program);
        let Some(node) = program.blocks[undo.block].steps[undo.index]
            .rollback
            .as_deref()
        else {
            return;
        };
        let path = format!("{}.rollback", undo.path);
        // The attempt starts now, so a failure to render it counts as its outcome (with
        // `waiting_retry` still set, `rollback_outcome` would ignore it and the run would hang).
        if let Some(rollback) = &mut self.rollback {
            rollback.waiting_retry = None;
        }
        let context = self.context(
            undo.frame,
            &[
                ("outputs", undo.outputs.clone()),
                ("result", undo.result.clone()),
            ],
        );
        let Kind::Action { action, inputs } = &node.kind else {
            self.rollback_outcome(
                &path,
                attempt,
                StepStatus::Failed,
                Some("a rollback must be an action".into()),
                now,
                out,
            );
            return;
        };
        let parsed = program
            .templates
            .render_inputs(inputs, &context)
            .map_err(|error| error.to_string())
            .and_then(|with| {
                action::parse(action, &with)
                    .map(|parsed| (with, parsed))
                    .map_err(|error| format!("{}: {}", error.field, error.message))
            });
        match parsed {
            Ok((with, parsed)) => {
                out.records.push(Record::StepStarted {
                    step: path.clone(),
                    name: node.name.clone(),
                    attempt,
                    action: action.clone(),
                    inputs: with,
                    resumed,
                });
                out.effects.push(Effect::Execute {
                    step: path,
                    attempt,
                    action: parsed,
                    timeout_secs: node.timeout_secs,
                });
            }
            Err(message) => {
                out.records.push(Record::StepEnded {
                    step: path.clone(),
                    name: node.name.clone(),
                    status: StepStatus::Failed,
                    outputs: json!({}),
                    error: Some(message.clone()),
                });
                self.rollback_outcome(&path, attempt, StepStatus::Failed, Some(message), now, out);
            }
        }
    }

    fn rollback_outcome(
        &mut self,
        path: &str,
        attempt: u32,
        status: StepStatus,
        _error: Option<String>,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        let Some(rollback) = &mut self.rollback else {
            out.ignored = true;
            return;
        };
        let Some((undo, current)) = rollback.current.clone() else {
            out.ignored = true;
            return;
        };
        if format!("{}.rollback", undo.path) != path
            || current != attempt
            || rollback.waiting_retry.is_some()
        {
            out.ignored = true;
            return;
        }
        if status == StepStatus::Succeeded {
            rollback.undone.push(undo.path.clone());
            self.next_rollback(now, out);
            return;
        }
        let retries = self.program.blocks[undo.block].steps[undo.index]
            .rollback
            .as_ref()
            .and_then(|node| node.retries.clone());
        match retries.filter(|retries| attempt <= retries.count && self.cancelled.is_none()) {
            Some(retries) => {
                let at = now + secs(retries.backoff(attempt + 1));
                rollback.current = Some((undo, attempt + 1));
                rollback.waiting_retry = Some(at);
                out.effects
                    .push(timer(path, attempt + 1, TimerKind::Retry, at));
            }
            None => {
                rollback.failed.push(undo.path.clone());
                self.next_rollback(now, out);
            }
        }
    }

    fn rollback_timer(
        &mut self,
        path: &str,
        attempt: u32,
        now: DateTime<Utc>,
        out: &mut Transition,
    ) {
        let Some(rollback) = &self.rollback else {
            return;
        };
        match &rollback.current {
            Some((undo, current))
                if rollback.waiting_retry.is_some()
                    && *current == attempt
                    && format!("{}.rollback", undo.path) == path =>
            {
                let undo = undo.clone();
                self.issue_rollback(&undo, attempt, false, now, out);
            }
            _ => out.ignored = true,
        }
    }
}

/// The intent of a step's first attempt.
fn started(path: &str, name: &str, action: &str, inputs: Value) -> Record {
    Record::StepStarted {
        step: path.to_string(),
        name: name.to_string(),
        attempt: 1,
        action: action.to_string(),
        inputs,
        resumed: false,
    }
}

fn timer(path: &str, attempt: u32, timer: TimerKind, at: DateTime<Utc>) -> Effect {
    Effect::Timer {
        step: path.to_string(),
        attempt,
        timer,
        at,
    }
}

fn secs(seconds: f64) -> Duration {
    Duration::milliseconds((seconds.max(0.0) * 1000.0).min(1e15) as i64)
}

fn with_note(inputs: Value, note: Option<String>) -> Value {
    match (inputs, note) {
        (Value::Object(mut map), Some(note)) => {
            map.insert("condition".into(), Value::String(note));
            Value::Object(map)
        }
        (inputs, _) => inputs,
    }
}

fn merge(base: Value, extra: Value) -> Value {
    match (base, extra) {
        (Value::Object(mut base), Value::Object(extra)) => {
            base.extend(extra);
            Value::Object(base)
        }
        (_, extra) => extra,
    }
}
