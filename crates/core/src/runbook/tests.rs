//! Tests of the run state machine on fake time: runbooks written as YAML, outcomes and timers fed by
//! hand, and crash recovery checked by replaying every prefix of a run's journal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::machine::{
    Effect, Input, Machine, PendingApproval, Record, Rejection, RunEnd, TimerKind, Transition,
};
use super::program::{coerce_params, Program};
use crate::action::{self, Action};
use crate::config::Runbook;
use crate::journal::{Entry, JournalEntry, StepRecord, StepStatus, Write};

// ----- the harness -----

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// Compiles the runbook `name` of a config file, with the file's other runbooks as its library.
fn compile(yaml: &str, name: &str) -> Arc<Program> {
    let config = crate::config::parse(&[(PathBuf::from("c.yaml"), yaml.into())])
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let library: BTreeMap<String, Runbook> = config
        .runbooks
        .iter()
        .map(|runbook| (runbook.name.clone(), runbook.clone()))
        .collect();
    let spec = &library[name];
    Arc::new(Program::compile(spec, &library).unwrap())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn log(message: &str) -> Action {
    action::parse("log", &json!({ "message": message })).unwrap()
}

fn exec(command: &[&str]) -> Action {
    action::parse("exec", &json!({ "command": command })).unwrap()
}

fn execute(step: &str, attempt: u32, action: Action) -> Effect {
    Effect::Execute {
        step: step.into(),
        attempt,
        action,
        timeout_secs: 60.0,
    }
}

fn timer(step: &str, attempt: u32, timer: TimerKind, at: DateTime<Utc>) -> Effect {
    Effect::Timer {
        step: step.into(),
        attempt,
        timer,
        at,
    }
}

fn started(step: &str, attempt: u32, action: &str, inputs: Value) -> Record {
    Record::StepStarted {
        step: step.into(),
        name: step.rsplit('.').next().unwrap().into(),
        attempt,
        action: action.into(),
        inputs,
        resumed: false,
    }
}

fn ended(step: &str, status: &str, outputs: Value, error: Option<&str>) -> Record {
    Record::StepEnded {
        step: step.into(),
        name: step.rsplit('.').next().unwrap().into(),
        status: status.parse().unwrap(),
        outputs,
        error: error.map(str::to_string),
    }
}

fn run_ended(status: &str, error: Option<&str>, undone: &[&str], outputs: Value) -> Record {
    Record::RunEnded(RunEnd {
        status: status.parse().unwrap(),
        error: error.map(str::to_string),
        undone: undone.iter().map(|step| step.to_string()).collect(),
        outputs,
        rejected: None,
    })
}

fn effect_step(effect: &Effect) -> Option<(&str, u32)> {
    match effect {
        Effect::Execute { step, attempt, .. }
        | Effect::Check { step, attempt, .. }
        | Effect::Timer { step, attempt, .. } => Some((step.as_str(), *attempt)),
        Effect::Notify { .. } => None,
    }
}

/// One run on fake time, with the effects it asked for and has not had answered yet.
struct Run {
    program: Arc<Program>,
    params: Map<String, Value>,
    globals: Map<String, Value>,
    dry_run: bool,
    machine: Machine,
    now: DateTime<Utc>,
    /// The inputs the engine would journal (those not ignored), with their times and effects.
    journal: Vec<(Input, DateTime<Utc>, Vec<Effect>)>,
    /// Execute, Check and Timer effects without an answering input yet, in the order asked.
    pending: Vec<Effect>,
    records: Vec<Record>,
    /// The journal rows the engine would write, read back as readers see them.
    entries: Vec<JournalEntry>,
}

impl Run {
    fn new(yaml: &str, name: &str, params: Value) -> Self {
        Self::build(compile(yaml, name), params, false)
    }

    fn build(program: Arc<Program>, params: Value, dry_run: bool) -> Self {
        let given: BTreeMap<String, Value> = object(params).into_iter().collect();
        let params = coerce_params(program.params(), &given).unwrap();
        let globals = object(json!({ "run": { "id": "run-1" } }));
        let machine = Machine::new(
            Arc::clone(&program),
            params.clone(),
            globals.clone(),
            dry_run,
        );
        Self {
            program,
            params,
            globals,
            dry_run,
            machine,
            now: t0(),
            journal: Vec::new(),
            pending: Vec::new(),
            records: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn apply(&mut self, input: Input) -> Transition {
        let transition = self.machine.apply(&input, self.now);
        // An input answers the effect it names, whether or not it changed anything.
        let answered = match &input {
            Input::Outcome { step, attempt, .. } => Some((step.clone(), *attempt, None)),
            Input::Timer {
                step,
                attempt,
                timer,
            } => Some((step.clone(), *attempt, Some(*timer))),
            _ => None,
        };
        if let Some((step, attempt, kind)) = answered {
            self.pending.retain(|effect| {
                let same_kind = match effect {
                    Effect::Timer { timer, .. } => kind == Some(*timer),
                    _ => kind.is_none(),
                };
                !(same_kind && effect_step(effect) == Some((step.as_str(), attempt)))
            });
        }
        if !transition.ignored {
            // As the engine journals a transition: its input (but `Start`), then its records.
            let mut writes = Vec::new();
            if !matches!(input, Input::Start) {
                writes.push(Write::RunInput {
                    run_id: "run-1".into(),
                    input: input.clone(),
                    outputs: transition.outputs.clone(),
                    at: self.now,
                });
            }
            for record in &transition.records {
                writes.push(crate::pipeline::record_write(
                    "run-1",
                    record.clone(),
                    self.now,
                ));
            }
            for write in writes {
                let row = write.row().expect("a run's write is a journal row");
                let body = serde_json::from_str(&row.body).expect("a JSON body");
                self.entries.push(JournalEntry {
                    seq: self.entries.len() as i64 + 1,
                    at: row.at,
                    event_id: row.event_id,
                    run_id: row.run_id,
                    incident_id: row.incident_id,
                    entry: Entry::from_row(row.kind, body).expect("the row reads back"),
                });
            }
            self.journal
                .push((input, self.now, transition.effects.clone()));
        }
        self.records.extend(transition.records.iter().cloned());
        self.pending.extend(
            transition
                .effects
                .iter()
                .filter(|effect| !matches!(effect, Effect::Notify { .. }))
                .cloned(),
        );
        transition
    }

    fn start(&mut self) -> Transition {
        self.apply(Input::Start)
    }

    fn outcome(&mut self, step: &str, attempt: u32, status: &str, output: Value) -> Transition {
        let error = (status != "succeeded").then(|| format!("exit 1 from {step}"));
        self.apply(Input::Outcome {
            step: step.into(),
            attempt,
            status: status.parse().unwrap(),
            output,
            error,
        })
    }

    /// The attempt of the pending Execute or Check effect of `step`.
    fn attempt_of(&self, step: &str) -> u32 {
        self.pending
            .iter()
            .find_map(|effect| match effect {
                Effect::Execute {
                    step: s, attempt, ..
                }
                | Effect::Check {
                    step: s, attempt, ..
                } if s == step => Some(*attempt),
                _ => None,
            })
            .unwrap_or_else(|| panic!("`{step}` is not in flight; pending: {:?}", self.pending))
    }

    fn succeed(&mut self, step: &str, output: Value) -> Transition {
        let attempt = self.attempt_of(step);
        self.outcome(step, attempt, "succeeded", output)
    }

    fn fail(&mut self, step: &str) -> Transition {
        let attempt = self.attempt_of(step);
        self.outcome(step, attempt, "failed", Value::Null)
    }

    /// Moves the clock to the earliest pending timer and fires it.
    fn fire_next_timer(&mut self) -> Transition {
        let (index, _) = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(index, effect)| match effect {
                Effect::Timer { at, .. } => Some((index, *at)),
                _ => None,
            })
            .min_by_key(|(_, at)| *at)
            .expect("a pending timer");
        let Effect::Timer {
            step,
            attempt,
            timer,
            at,
        } = self.pending[index].clone()
        else {
            unreachable!()
        };
        self.now = self.now.max(at);
        self.apply(Input::Timer {
            step,
            attempt,
            timer,
        })
    }

    fn approve(&mut self, step: &str, by: &str, approved: bool) -> Transition {
        self.apply(Input::Approval {
            step: step.into(),
            by: by.into(),
            approved,
            comment: None,
        })
    }

    /// The steps of the pending Execute effects, in the order asked.
    fn executing(&self) -> Vec<String> {
        self.pending
            .iter()
            .filter_map(|effect| match effect {
                Effect::Execute { step, .. } => Some(step.clone()),
                _ => None,
            })
            .collect()
    }

    fn end(&self) -> RunEnd {
        self.machine.end().cloned().expect("the run has ended")
    }

    /// A fresh machine fed the first `count` journaled inputs at their times, effects dropped, as the
    /// engine rebuilds a run after a crash; the caller applies `Input::Recover`.
    fn replay(&self, count: usize) -> Run {
        let machine = Machine::new(
            Arc::clone(&self.program),
            self.params.clone(),
            self.globals.clone(),
            self.dry_run,
        );
        let mut replayed = Run {
            program: Arc::clone(&self.program),
            params: self.params.clone(),
            globals: self.globals.clone(),
            dry_run: self.dry_run,
            machine,
            now: t0(),
            journal: Vec::new(),
            pending: Vec::new(),
            records: Vec::new(),
            entries: Vec::new(),
        };
        for (input, now, _) in &self.journal[..count] {
            replayed.now = *now;
            let transition = replayed.machine.apply(input, *now);
            assert!(!transition.ignored, "replaying {input:?} changed nothing");
            replayed.journal.push((input.clone(), *now, Vec::new()));
        }
        replayed
    }

    /// Answers pending effects as `world` would until the run ends: actions and checks first, in
    /// the order asked; then approvals; then the earliest timer.
    fn drive(&mut self, world: &World) -> RunEnd {
        for _ in 0..10_000 {
            if let Some(end) = self.machine.end() {
                return end.clone();
            }
            if world.cancel_at == Some(self.journal.len()) {
                self.apply(Input::Cancel { by: "carol".into() });
                continue;
            }
            let next = self.pending.iter().find_map(|effect| match effect {
                Effect::Execute { step, attempt, .. } | Effect::Check { step, attempt, .. } => {
                    Some((step.clone(), *attempt))
                }
                _ => None,
            });
            if let Some((step, attempt)) = next {
                let status = (world.status)(&step, attempt);
                self.outcome(&step, attempt, status, json!({ "stdout": step }));
                continue;
            }
            let waiting = self.machine.pending_approvals();
            if let (Some(pending), Some(approved)) = (waiting.first(), world.approve) {
                self.approve(&pending.step.clone(), "alice", approved);
                continue;
            }
            if self
                .pending
                .iter()
                .any(|effect| matches!(effect, Effect::Timer { .. }))
            {
                self.fire_next_timer();
                continue;
            }
            panic!(
                "the run is stuck: nothing pending and no end; records: {:#?}",
                self.records
            );
        }
        panic!("the run did not end");
    }
}

/// The status of an attempt of an action or check, by step path and attempt.
type Status<'a> = dyn Fn(&str, u32) -> &'static str + 'a;

/// How the world answers a run: the status of each attempt of an action or check, what approvers
/// decide, and when someone cancels.
struct World<'a> {
    status: &'a Status<'a>,
    /// `None`: nobody decides, and approvals time out.
    approve: Option<bool>,
    /// Cancels when the journal holds this many inputs.
    cancel_at: Option<usize>,
}

impl<'a> World<'a> {
    fn answering(status: &'a Status<'a>) -> Self {
        Self {
            status,
            approve: Some(true),
            cancel_at: None,
        }
    }
}

// ----- compiling -----

fn compile_error(yaml: &str, name: &str) -> super::program::Error {
    let config = crate::config::parse(&[(PathBuf::from("c.yaml"), yaml.into())]).unwrap();
    let library: BTreeMap<String, Runbook> = config
        .runbooks
        .iter()
        .map(|runbook| (runbook.name.clone(), runbook.clone()))
        .collect();
    Program::compile(&library[name], &library).unwrap_err()
}

#[test]
fn compiling_names_the_step_or_runbook_at_fault() {
    let yaml = r#"
runbooks:
  - name: calls-missing
    steps: [{ name: call, runbook: nope }]
  - name: loop
    steps: [{ name: again, runbook: loop }]
  - name: bad-template
    steps:
      - name: par
        parallel:
          - name: a
            steps: [{ name: one, action: log, with: { message: "{{ oops" } }]
  - name: bad-when
    steps: [{ name: a, when: "1 +", action: log, with: { message: a } }]
  - name: no-kind
    steps: [{ name: nothing }]
"#;
    assert_eq!(
        compile_error(yaml, "calls-missing"),
        super::program::Error::UnknownRunbook {
            runbook: "nope".into()
        }
    );
    assert_eq!(
        compile_error(yaml, "loop"),
        super::program::Error::TooDeep {
            runbook: "loop".into()
        }
    );
    for (name, step, message) in [
        (
            "bad-template",
            "par.a.one",
            "with.message: invalid template",
        ),
        ("bad-when", "a", "when: "),
        ("no-kind", "nothing", "a step needs one of"),
    ] {
        let super::program::Error::Step {
            step: at,
            message: text,
        } = compile_error(yaml, name)
        else {
            panic!("{name}")
        };
        assert_eq!(at, step, "{name}");
        assert!(text.starts_with(message), "{name}: {text}");
    }
}

#[test]
fn a_program_keeps_the_specs_of_the_runbooks_it_calls() {
    let program = compile(CALL, "parent");
    assert_eq!(program.name(), "parent");
    assert_eq!(program.library.keys().collect::<Vec<_>>(), ["child"]);
}

// ----- 1. sequential steps and outputs -----

const SEQUENTIAL: &str = r#"
runbooks:
  - name: restart
    params:
      service: { type: string, required: true }
    outputs:
      pod: "{{ steps.b.outputs.restarted }}"
    steps:
      - name: a
        action: exec
        with: { command: [kubectl, get, pod, "-l", "app={{ params.service }}"] }
        outputs: { pod: "{{ result.stdout }}" }
      - name: b
        action: log
        with: { message: "{{ run.id }}: restarting {{ steps.a.outputs.pod }}" }
        outputs: { restarted: "{{ steps.a.outputs.pod }}/{{ result.code }}" }
"#;

#[test]
fn sequential_steps_pass_outputs_on_and_the_run_returns_its_own() {
    let mut run = Run::new(SEQUENTIAL, "restart", json!({ "service": "api" }));
    let start = run.start();
    assert_eq!(
        start.records,
        [started(
            "a",
            1,
            "exec",
            json!({ "command": ["kubectl", "get", "pod", "-l", "app=api"] })
        )]
    );
    assert_eq!(
        start.effects,
        [execute(
            "a",
            1,
            exec(&["kubectl", "get", "pod", "-l", "app=api"])
        )]
    );

    let a = run.succeed("a", json!({ "stdout": "api-7f9" }));
    assert_eq!(a.outputs, Some(json!({ "pod": "api-7f9" })));
    assert_eq!(
        a.records,
        [started(
            "b",
            1,
            "log",
            json!({ "message": "run-1: restarting api-7f9" })
        )]
    );
    assert_eq!(
        a.effects,
        [execute("b", 1, log("run-1: restarting api-7f9"))]
    );

    let b = run.succeed("b", json!({ "code": 0 }));
    assert_eq!(b.outputs, Some(json!({ "restarted": "api-7f9/0" })));
    assert_eq!(
        b.records,
        [run_ended(
            "succeeded",
            None,
            &[],
            json!({ "pod": "api-7f9/0" })
        )]
    );
    assert!(b.effects.is_empty());
    assert_eq!(run.end().status, "succeeded");

    // Nothing changes a run that ended.
    assert!(run.outcome("b", 1, "succeeded", Value::Null).ignored);
}

#[test]
fn an_outcome_for_a_step_not_in_flight_is_ignored() {
    let mut run = Run::new(SEQUENTIAL, "restart", json!({ "service": "api" }));
    run.start();
    assert!(run.outcome("b", 1, "succeeded", Value::Null).ignored);
    assert!(run.outcome("a", 2, "succeeded", Value::Null).ignored);
    let transition = run.outcome("a", 1, "succeeded", json!({ "stdout": "p" }));
    assert!(!transition.ignored);
    assert!(
        run.outcome("a", 1, "succeeded", json!({ "stdout": "p" }))
            .ignored
    );
}

#[test]
fn an_output_template_that_fails_fails_its_step() {
    let mut run = Run::new(SEQUENTIAL, "restart", json!({ "service": "api" }));
    run.start();
    let a = run.succeed("a", json!({ "no_stdout": true }));
    assert!(a.effects.is_empty());
    let [Record::StepEnded {
        step,
        status,
        error,
        ..
    }, Record::RunEnded(end)] = &a.records[..]
    else {
        panic!("{:?}", a.records)
    };
    assert_eq!((step.as_str(), status.as_str()), ("a", "failed"));
    assert!(
        error.as_deref().unwrap().contains("output `pod`"),
        "{error:?}"
    );
    assert_eq!(end.status, "failed");
}

// ----- 2. retries -----

const RETRIES: &str = r#"
runbooks:
  - name: flaky
    steps:
      - name: restart
        action: exec
        with: { command: [restart] }
        retries: { count: 2 }
      - name: after
        action: log
        with: { message: done }
"#;

#[test]
fn retries_back_off_exponentially_and_number_attempts() {
    let mut run = Run::new(RETRIES, "flaky", json!({}));
    assert_eq!(
        run.start().effects,
        [execute("restart", 1, exec(&["restart"]))]
    );

    let first = run.fail("restart");
    assert!(first.records.is_empty());
    assert_eq!(
        first.effects,
        [timer("restart", 2, TimerKind::Retry, at(1))]
    );
    // A timer for another attempt is stale.
    assert!(
        run.apply(Input::Timer {
            step: "restart".into(),
            attempt: 3,
            timer: TimerKind::Retry
        })
        .ignored
    );

    let retry = run.fire_next_timer();
    assert_eq!(run.now, at(1));
    assert_eq!(
        retry.records,
        [started(
            "restart",
            2,
            "exec",
            json!({ "command": ["restart"] })
        )]
    );
    assert_eq!(retry.effects, [execute("restart", 2, exec(&["restart"]))]);
    // The outcome of an earlier attempt changes nothing.
    assert!(run.outcome("restart", 1, "succeeded", Value::Null).ignored);

    let second = run.fail("restart");
    assert_eq!(
        second.effects,
        [timer("restart", 3, TimerKind::Retry, at(3))]
    );
    let retry = run.fire_next_timer();
    assert_eq!(retry.effects, [execute("restart", 3, exec(&["restart"]))]);

    let third = run.succeed("restart", Value::Null);
    assert_eq!(third.effects, [execute("after", 1, log("done"))]);
    run.succeed("after", Value::Null);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_step_that_exhausts_its_retries_fails_the_run_and_timing_out_counts_as_failing() {
    let mut run = Run::new(RETRIES, "flaky", json!({}));
    run.start();
    run.fail("restart");
    run.fire_next_timer();
    run.outcome("restart", 2, "timed_out", Value::Null);
    run.fire_next_timer();
    let last = run.outcome("restart", 3, "timed_out", Value::Null);
    assert!(last.effects.is_empty());
    assert_eq!(
        last.records,
        [run_ended(
            "failed",
            Some("step `restart` timed_out: exit 1 from restart"),
            &[],
            Value::Null
        )]
    );
    assert!(!run
        .records
        .iter()
        .any(|record| matches!(record, Record::StepStarted { step, .. } if step == "after")));
}

// ----- 3. conditions -----

const CONDITIONS: &str = r#"
runbooks:
  - name: heal
    params:
      notify: { type: boolean, default: false }
    steps:
      - name: probe
        action: exec
        with: { command: [probe] }
        outputs: { healthy: "{{ result.healthy }}" }
      - name: restart
        when: 'steps.probe.outputs.healthy == "false"'
        action: exec
        with: { command: [restart] }
      - name: tell
        when: params.notify
        action: log
        with: { message: told }
      - name: report
        action: log
        with: { message: "restart {{ steps.restart.status }}" }
"#;

#[test]
fn a_false_condition_skips_its_step_and_the_next_one_runs() {
    let mut run = Run::new(CONDITIONS, "heal", json!({}));
    run.start();
    let probe = run.succeed("probe", json!({ "healthy": true }));
    assert_eq!(
        probe.records,
        [
            Record::StepSkipped {
                step: "restart".into(),
                name: "restart".into(),
                reason: r#"`steps.probe.outputs.healthy == "false"` is false"#.into(),
            },
            Record::StepSkipped {
                step: "tell".into(),
                name: "tell".into(),
                reason: "`params.notify` is false".into(),
            },
            started("report", 1, "log", json!({ "message": "restart skipped" })),
        ]
    );
    assert_eq!(
        probe.effects,
        [execute("report", 1, log("restart skipped"))]
    );
    run.succeed("report", Value::Null);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_condition_reads_earlier_outputs() {
    let mut run = Run::new(CONDITIONS, "heal", json!({ "notify": "yes" }));
    run.start();
    // Outputs are text: a boolean renders as `False`, so the probe reports text.
    let probe = run.succeed("probe", json!({ "healthy": "false" }));
    assert_eq!(probe.effects, [execute("restart", 1, exec(&["restart"]))]);
    let restart = run.succeed("restart", Value::Null);
    assert_eq!(restart.effects, [execute("tell", 1, log("told"))]);
    let tell = run.succeed("tell", Value::Null);
    assert_eq!(
        tell.effects,
        [execute("report", 1, log("restart succeeded"))]
    );
}

#[test]
fn a_condition_that_cannot_be_evaluated_fails_its_step() {
    let yaml = r#"
runbooks:
  - name: broken
    steps:
      - name: a
        when: steps.nope.outputs.x == "1"
        action: log
        with: { message: a }
"#;
    let mut run = Run::new(yaml, "broken", json!({}));
    let start = run.start();
    assert!(start.effects.is_empty());
    let [Record::StepEnded { status, error, .. }, Record::RunEnded(end)] = &start.records[..]
    else {
        panic!("{:?}", start.records)
    };
    assert_eq!(status, "failed");
    assert!(error.as_deref().unwrap().starts_with("when: "), "{error:?}");
    assert_eq!(end.status, "failed");
}

// ----- 4. parallel -----

const PARALLEL: &str = r#"
runbooks:
  - name: fan
    steps:
      - name: par
        parallel:
          - name: a
            steps:
              - { name: one, action: log, with: { message: a1 } }
              - { name: two, action: log, with: { message: a2 } }
          - name: b
            steps:
              - { name: one, action: log, with: { message: b1 } }
      - name: after
        action: log
        with: { message: "{{ steps.par.status }}" }
"#;

#[test]
fn parallel_branches_start_together_and_join() {
    let mut run = Run::new(PARALLEL, "fan", json!({}));
    let start = run.start();
    assert_eq!(
        start.records,
        [
            started("par", 1, "parallel", json!({ "branches": ["a", "b"] })),
            started("par.a.one", 1, "log", json!({ "message": "a1" })),
            started("par.b.one", 1, "log", json!({ "message": "b1" })),
        ]
    );
    assert_eq!(
        start.effects,
        [
            execute("par.a.one", 1, log("a1")),
            execute("par.b.one", 1, log("b1"))
        ]
    );

    let b = run.succeed("par.b.one", Value::Null);
    assert!(b.records.is_empty() && b.effects.is_empty(), "{b:?}");
    let a1 = run.succeed("par.a.one", Value::Null);
    assert_eq!(a1.effects, [execute("par.a.two", 1, log("a2"))]);
    let a2 = run.succeed("par.a.two", Value::Null);
    let [Record::StepEnded {
        step,
        status,
        outputs,
        ..
    }, _] = &a2.records[..]
    else {
        panic!("{:?}", a2.records)
    };
    assert_eq!((step.as_str(), status.as_str()), ("par", "succeeded"));
    assert_eq!(
        outputs["branches"]["a"]["steps"]["two"]["status"],
        json!("succeeded")
    );
    assert_eq!(
        outputs["branches"]["b"]["steps"]["one"]["status"],
        json!("succeeded")
    );
    assert_eq!(a2.effects, [execute("after", 1, log("succeeded"))]);
}

#[test]
fn a_failing_branch_lets_the_other_finish_then_fails_the_run() {
    let mut run = Run::new(PARALLEL, "fan", json!({}));
    run.start();
    let a = run.fail("par.a.one");
    assert!(a.effects.is_empty() && a.records.is_empty(), "{a:?}");
    assert_eq!(run.executing(), ["par.b.one"]);
    let b = run.succeed("par.b.one", Value::Null);
    let error = "step `par.a.one` failed: exit 1 from par.a.one";
    assert_eq!(b.effects, []);
    let [Record::StepEnded {
        step,
        status,
        error: step_error,
        ..
    }, Record::RunEnded(end)] = &b.records[..]
    else {
        panic!("{:?}", b.records)
    };
    assert_eq!((step.as_str(), status.as_str()), ("par", "failed"));
    assert_eq!(step_error.as_deref(), Some(error));
    assert_eq!(end.status, "failed");
    assert_eq!(end.error.as_deref(), Some(error));
    assert!(!run
        .records
        .iter()
        .any(|record| matches!(record, Record::StepStarted { step, .. } if step == "par.a.two")));
}

// ----- 5. for_each -----

const FOR_EACH: &str = r#"
runbooks:
  - name: drain
    params:
      pods: { type: list, required: true }
    steps:
      - name: each
        for_each: params.pods
        concurrency: 2
        steps:
          - name: restart
            action: log
            with: { message: "{{ index }}:{{ item }}" }
"#;

#[test]
fn for_each_runs_every_item_at_most_concurrency_at_a_time() {
    let mut run = Run::new(FOR_EACH, "drain", json!({ "pods": "p0,p1,p2,p3,p4" }));
    let start = run.start();
    assert_eq!(
        start.records[0],
        started(
            "each",
            1,
            "for_each",
            json!({ "items": ["p0", "p1", "p2", "p3", "p4"], "concurrency": 2 })
        )
    );
    assert_eq!(
        start.effects,
        [
            execute("each[0].restart", 1, log("0:p0")),
            execute("each[1].restart", 1, log("1:p1")),
        ]
    );
    let mut done = Vec::new();
    // Finish the newest item first, so items also end out of order.
    while let Some(step) = run.executing().last().cloned() {
        assert!(run.executing().len() <= 2, "{:?}", run.executing());
        run.succeed(&step, Value::Null);
        done.push(step);
    }
    assert_eq!(done.len(), 5);
    let messages: BTreeSet<String> = run
        .journal
        .iter()
        .flat_map(|(_, _, effects)| effects)
        .filter_map(|effect| match effect {
            Effect::Execute {
                action: Action::Log(log),
                ..
            } => Some(log.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        ["0:p0", "1:p1", "2:p2", "3:p3", "4:p4"]
            .map(String::from)
            .into()
    );
    let Some(Record::StepEnded {
        step,
        status,
        outputs,
        ..
    }) = run.records.iter().rev().nth(1)
    else {
        panic!("{:?}", run.records)
    };
    assert_eq!((step.as_str(), status.as_str()), ("each", "succeeded"));
    assert_eq!(outputs["items"].as_array().unwrap().len(), 5);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_failed_item_stops_new_items_from_starting() {
    let mut run = Run::new(
        FOR_EACH,
        "drain",
        json!({ "pods": ["p0", "p1", "p2", "p3", "p4"] }),
    );
    run.start();
    let failed = run.fail("each[0].restart");
    assert!(failed.effects.is_empty(), "{failed:?}");
    assert_eq!(run.executing(), ["each[1].restart"]);
    let last = run.succeed("each[1].restart", Value::Null);
    assert!(last.effects.is_empty());
    assert_eq!(run.end().status, "failed");
    let started_items = run
        .records
        .iter()
        .filter(|record| matches!(record, Record::StepStarted { step, .. } if step.starts_with("each[")))
        .count();
    assert_eq!(started_items, 2);
}

#[test]
fn for_each_over_no_items_succeeds_at_once() {
    let mut run = Run::new(FOR_EACH, "drain", json!({ "pods": [] }));
    let start = run.start();
    assert!(start.effects.is_empty());
    assert_eq!(run.end().status, "succeeded");
}

// ----- 6. rollback -----

const ROLLBACK: &str = r#"
runbooks:
  - name: deploy
    params:
      mode: { type: string, default: rollback, allowed: [rollback, abort, continue] }
    steps:
      - name: a
        action: exec
        with: { command: [scale, up] }
        outputs: { replicas: "{{ result.replicas }}" }
        rollback:
          name: undo-a
          action: exec
          with: { command: [scale, "{{ outputs.replicas }}"] }
      - name: b
        action: log
        with: { message: b }
        rollback: { name: undo-b, action: log, with: { message: "undo b" } }
      - name: c
        action: exec
        with: { command: [c] }
        on_failure: rollback
      - name: d
        action: log
        with: { message: d }
  - name: abort
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo-a, action: log, with: { message: "undo a" } }
      - name: c
        action: exec
        with: { command: [c] }
        on_failure: abort
  - name: continue
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo-a, action: log, with: { message: "undo a" } }
      - name: c
        action: exec
        with: { command: [c] }
        on_failure: continue
      - name: d
        action: log
        with: { message: "c {{ steps.c.status }}" }
"#;

fn rollback_started(step: &str, name: &str, inputs: Value) -> Record {
    Record::StepStarted {
        step: step.into(),
        name: name.into(),
        attempt: 1,
        action: if inputs.get("command").is_some() {
            "exec"
        } else {
            "log"
        }
        .into(),
        inputs,
        resumed: false,
    }
}

#[test]
fn a_failure_rolls_back_completed_steps_newest_first() {
    let mut run = Run::new(ROLLBACK, "deploy", json!({}));
    run.start();
    run.succeed("a", json!({ "replicas": 3 }));
    run.succeed("b", Value::Null);
    let failed = run.fail("c");
    assert_eq!(
        failed.records,
        [
            Record::RollbackStarted {
                steps: vec!["b".into(), "a".into()]
            },
            rollback_started("b.rollback", "undo-b", json!({ "message": "undo b" })),
        ]
    );
    assert_eq!(failed.effects, [execute("b.rollback", 1, log("undo b"))]);

    let undo_b = run.succeed("b.rollback", Value::Null);
    assert_eq!(
        undo_b.records,
        [rollback_started(
            "a.rollback",
            "undo-a",
            json!({ "command": ["scale", "3"] })
        )]
    );
    assert_eq!(
        undo_b.effects,
        [execute("a.rollback", 1, exec(&["scale", "3"]))]
    );

    let undo_a = run.succeed("a.rollback", Value::Null);
    assert!(undo_a.effects.is_empty());
    assert_eq!(
        undo_a.records,
        [run_ended(
            "rolled_back",
            Some("step `c` failed: exit 1 from c"),
            &["b", "a"],
            Value::Null
        )]
    );
}

#[test]
fn a_failed_rollback_fails_the_run_and_names_it() {
    let mut run = Run::new(ROLLBACK, "deploy", json!({}));
    run.start();
    run.succeed("a", json!({ "replicas": 3 }));
    run.succeed("b", Value::Null);
    run.fail("c");
    let undo_b = run.fail("b.rollback");
    // The other rollbacks still run.
    assert_eq!(
        undo_b.effects,
        [execute("a.rollback", 1, exec(&["scale", "3"]))]
    );
    run.succeed("a.rollback", Value::Null);
    let end = run.end();
    assert_eq!(end.status, "failed");
    assert_eq!(end.undone, ["a"]);
    let error = end.error.unwrap();
    assert!(error.contains("step `c` failed"), "{error}");
    assert!(error.contains("`b`"), "{error}");
}

#[test]
fn on_failure_abort_stops_without_rolling_back() {
    let mut run = Run::new(ROLLBACK, "abort", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    let failed = run.fail("c");
    assert!(failed.effects.is_empty());
    assert_eq!(
        failed.records,
        [run_ended(
            "failed",
            Some("step `c` failed: exit 1 from c"),
            &[],
            Value::Null
        )]
    );
}

#[test]
fn on_failure_continue_goes_on_and_succeeds() {
    let mut run = Run::new(ROLLBACK, "continue", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    let failed = run.fail("c");
    assert_eq!(failed.effects, [execute("d", 1, log("c failed"))]);
    run.succeed("d", Value::Null);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_rollback_is_retried_like_a_step() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback:
          name: undo
          action: log
          with: { message: undo }
          retries: { count: 1, backoff_secs: 5 }
      - name: c
        action: log
        with: { message: c }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.fail("c");
    let first = run.fail("a.rollback");
    assert_eq!(
        first.effects,
        [timer("a.rollback", 2, TimerKind::Retry, at(5))]
    );
    let retry = run.fire_next_timer();
    assert_eq!(retry.effects, [execute("a.rollback", 2, log("undo"))]);
    run.succeed("a.rollback", Value::Null);
    assert_eq!(run.end().status, "rolled_back");
    assert_eq!(run.end().undone, ["a"]);
}

#[test]
fn a_rollback_that_cannot_render_fails_even_with_retries() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback:
          name: undo
          action: log
          with: { message: "{{ outputs.missing }}" }
          retries: { count: 2 }
      - name: c
        action: log
        with: { message: c }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.fail("c");
    let end = run.drive(&World::answering(&|_, _| "succeeded"));
    assert_eq!(end.status, "failed");
    assert!(end.error.unwrap().contains("`a`"));
}

#[test]
fn the_failure_of_a_step_whose_composite_continues_does_not_decide_the_run() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo, action: log, with: { message: undo } }
      - name: par
        on_failure: continue
        parallel:
          - name: x
            steps:
              - { name: inner, action: log, with: { message: inner } }
      - name: c
        action: log
        with: { message: c }
        on_failure: abort
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.fail("par.x.inner");
    let failed = run.fail("c");
    // `c` aborts: nothing is rolled back, and the error is about `c`, not the step `par` let go.
    assert_eq!(
        failed.records,
        [run_ended(
            "failed",
            Some("step `c` failed: exit 1 from c"),
            &[],
            Value::Null
        )]
    );
}

// ----- 7. approvals -----

const APPROVAL: &str = r#"
runbooks:
  - name: gated
    params:
      service: { type: string, default: api }
    steps:
      - name: prepare
        action: log
        with: { message: prepare }
        rollback: { name: unprepare, action: log, with: { message: unprepare } }
      - name: approve
        approval:
          approvers: [alice, bob]
          message: "restart {{ params.service }}?"
          notify: oncall
        timeout_secs: 600
      - name: go
        action: log
        with: { message: "approved by {{ steps.approve.outputs.by }}" }
"#;

#[test]
fn an_approval_waits_for_an_approver_and_passes_who_on() {
    let mut run = Run::new(APPROVAL, "gated", json!({}));
    run.start();
    let prepare = run.succeed("prepare", Value::Null);
    assert_eq!(
        prepare.records,
        [started(
            "approve",
            1,
            "approval",
            json!({
                "approvers": ["alice", "bob"],
                "message": "restart api?",
                "deadline": "2024-05-01T12:10:00Z",
            })
        )]
    );
    assert_eq!(
        prepare.effects,
        [
            Effect::Notify {
                notifier: "oncall".into(),
                summary: "approval needed for step `approve` of runbook `gated`: restart api?"
                    .into(),
            },
            timer("approve", 0, TimerKind::Deadline, at(600)),
        ]
    );
    assert_eq!(
        run.machine.pending_approvals(),
        [PendingApproval {
            step: "approve".into(),
            approvers: vec!["alice".into(), "bob".into()],
            message: Some("restart api?".into()),
            deadline: at(600),
            distinct_from_starter: false,
            started_by: None,
        }]
    );

    let stranger = run.approve("approve", "mallory", true);
    assert!(stranger.ignored && stranger.records.is_empty() && stranger.effects.is_empty());
    assert!(run.approve("prepare", "alice", true).ignored);

    let granted = run.approve("approve", "bob", true);
    assert_eq!(
        granted.records,
        [
            ended(
                "approve",
                "succeeded",
                json!({ "by": "bob", "approved": true, "comment": null }),
                None
            ),
            started("go", 1, "log", json!({ "message": "approved by bob" })),
        ]
    );
    assert_eq!(granted.effects, [execute("go", 1, log("approved by bob"))]);
    assert!(run.machine.pending_approvals().is_empty());
    // The deadline no longer matters.
    assert!(run.fire_next_timer().ignored);
    run.succeed("go", Value::Null);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_rejected_approval_rolls_back_and_ends_the_run_rejected_naming_who_and_why() {
    let mut run = Run::new(APPROVAL, "gated", json!({}));
    run.start();
    run.succeed("prepare", Value::Null);
    let rejected = run.apply(Input::Approval {
        step: "approve".into(),
        by: "alice".into(),
        approved: false,
        comment: Some("not now".into()),
    });
    assert_eq!(
        rejected.records[0],
        ended(
            "approve",
            "rejected",
            json!({ "by": "alice", "approved": false, "comment": "not now" }),
            Some("rejected by `alice`: not now")
        )
    );
    assert_eq!(
        rejected.effects,
        [execute("prepare.rollback", 1, log("unprepare"))]
    );
    run.succeed("prepare.rollback", Value::Null);
    // Rejected, not rolled back nor failed: a person decided, and the undo is listed.
    assert_eq!(
        run.end(),
        RunEnd {
            status: "rejected".parse().unwrap(),
            error: Some("step `approve` rejected by `alice`: not now".into()),
            undone: vec!["prepare".into()],
            outputs: Value::Null,
            rejected: Some(Rejection {
                step: "approve".into(),
                by: "alice".into(),
                comment: Some("not now".into()),
            }),
        }
    );
    let steps = crate::journal::steps(&run.entries);
    let approve = steps.iter().find(|step| step.step == "approve").unwrap();
    assert_eq!(approve.status, StepStatus::Rejected);
}

#[test]
fn a_rejection_with_nothing_to_undo_ends_rejected_and_one_in_a_branch_too() {
    let yaml = r#"
runbooks:
  - name: plain
    steps:
      - { name: approve, approval: {} }
      - { name: go, action: log, with: { message: go } }
  - name: fan
    steps:
      - name: both
        parallel:
          - name: ask
            steps: [{ name: approve, approval: {} }]
          - name: work
            steps: [{ name: one, action: log, with: { message: one } }]
      - { name: go, action: log, with: { message: go } }
  - name: optional
    steps:
      - { name: approve, approval: {}, on_failure: continue }
      - { name: go, action: log, with: { message: go } }
"#;
    let mut plain = Run::new(yaml, "plain", json!({}));
    plain.start();
    plain.approve("approve", "bob", false);
    let end = plain.end();
    assert_eq!(end.status, "rejected");
    assert_eq!(
        end.error.as_deref(),
        Some("step `approve` rejected by `bob`")
    );
    assert_eq!(
        end.rejected.map(|rejection| rejection.by),
        Some("bob".into())
    );
    assert!(plain.executing().is_empty());

    let mut fan = Run::new(yaml, "fan", json!({}));
    fan.start();
    fan.approve("both.ask.approve", "bob", false);
    fan.succeed("both.work.one", Value::Null);
    let end = fan.end();
    assert_eq!(end.status, "rejected");
    assert_eq!(
        end.rejected.map(|rejection| rejection.step),
        Some("both.ask.approve".into())
    );

    // A step that may fail (`on_failure: continue`) may be rejected: the run goes on.
    let mut optional = Run::new(yaml, "optional", json!({}));
    optional.start();
    optional.approve("approve", "bob", false);
    optional.succeed("go", Value::Null);
    assert_eq!(optional.end().status, "succeeded");
}

const FOUR_EYES: &str = r#"
runbooks:
  - name: risky
    steps:
      - name: approve
        approval: { approvers: [alice, bob], message: "go?", distinct_from_starter: true }
      - { name: go, action: log, with: { message: go } }
"#;

/// A run of `FOUR_EYES` with `run.started_by` as the API would set it.
fn started_by(starter: Option<&str>) -> Run {
    let mut run = Run::new(FOUR_EYES, "risky", json!({}));
    run.globals = object(json!({ "run": { "id": "run-1", "started_by": starter } }));
    run.machine = Machine::new(
        Arc::clone(&run.program),
        run.params.clone(),
        run.globals.clone(),
        false,
    );
    run
}

#[test]
fn an_approval_distinct_from_the_starter_refuses_the_starter_and_says_who_started() {
    let mut run = started_by(Some("alice"));
    let start = run.start();
    assert_eq!(
        start.records,
        [started(
            "approve",
            1,
            "approval",
            json!({
                "approvers": ["alice", "bob"],
                "message": "go?",
                "deadline": "2024-05-01T13:00:00Z",
                "distinct_from_starter": true,
                "started_by": "alice",
            })
        )]
    );
    let pending = run.machine.pending_approvals();
    assert_eq!(
        (
            pending[0].distinct_from_starter,
            pending[0].started_by.as_deref()
        ),
        (true, Some("alice"))
    );
    assert_eq!(
        pending[0].refuses("alice"),
        Some(super::machine::Refusal::Starter)
    );
    assert_eq!(
        pending[0].refuses("mallory"),
        Some(super::machine::Refusal::NotAnApprover)
    );
    assert_eq!(pending[0].refuses("bob"), None);
    // The starter's answer changes nothing, yes or no; another approver's does.
    assert!(run.approve("approve", "alice", true).ignored);
    assert!(run.approve("approve", "alice", false).ignored);
    run.approve("approve", "bob", true);
    run.succeed("go", Value::Null);
    assert_eq!(run.end().status, "succeeded");

    // A rule's run has no person as its starter: any approver may answer.
    let mut automated = started_by(None);
    automated.start();
    assert_eq!(
        automated.machine.pending_approvals()[0].refuses("alice"),
        None
    );
    assert!(!automated.approve("approve", "alice", true).ignored);
}

#[test]
fn an_approval_nobody_gives_times_out() {
    let mut run = Run::new(APPROVAL, "gated", json!({}));
    run.start();
    run.succeed("prepare", Value::Null);
    let deadline = run.fire_next_timer();
    assert_eq!(run.now, at(600));
    assert_eq!(
        deadline.records[0],
        ended(
            "approve",
            "timed_out",
            json!({}),
            Some("no one approved within 600 s")
        )
    );
    run.succeed("prepare.rollback", Value::Null);
    assert_eq!(run.end().status, "rolled_back");
    assert!(run.machine.pending_approvals().is_empty());
}

// ----- 8. runbook calls -----

const CALL: &str = r#"
runbooks:
  - name: child
    params:
      pod: { type: string, required: true }
      grace: { type: integer, default: 30 }
    outputs:
      deleted: "{{ steps.delete.outputs.name }}"
    steps:
      - name: delete
        action: exec
        with: { command: [kubectl, delete, pod, "{{ params.pod }}", "--grace-period={{ params.grace }}"] }
        outputs: { name: "{{ result.name }}" }
  - name: parent
    params:
      service: { type: string, default: api }
    steps:
      - name: call
        runbook: child
        params: { pod: "{{ params.service }}-1" }
      - name: report
        action: log
        with: { message: "deleted {{ steps.call.outputs.deleted }}" }
  - name: careless
    steps:
      - name: call
        runbook: child
"#;

#[test]
fn a_called_runbook_gets_its_params_and_returns_its_outputs() {
    let mut run = Run::new(CALL, "parent", json!({}));
    let start = run.start();
    let command = ["kubectl", "delete", "pod", "api-1", "--grace-period=30"];
    assert_eq!(
        start.records,
        [
            started(
                "call",
                1,
                "runbook",
                json!({ "runbook": "child", "params": { "pod": "api-1", "grace": 30 } })
            ),
            started("call.delete", 1, "exec", json!({ "command": command })),
        ]
    );
    assert_eq!(start.effects, [execute("call.delete", 1, exec(&command))]);
    let deleted = run.succeed("call.delete", json!({ "name": "api-1" }));
    assert_eq!(
        deleted.records,
        [
            ended("call", "succeeded", json!({ "deleted": "api-1" }), None),
            started("report", 1, "log", json!({ "message": "deleted api-1" })),
        ]
    );
    run.succeed("report", Value::Null);
    assert_eq!(run.end().status, "succeeded");
}

#[test]
fn a_call_without_a_required_param_fails_and_names_it() {
    let mut run = Run::new(CALL, "careless", json!({}));
    let start = run.start();
    assert!(start.effects.is_empty());
    let [Record::StepEnded {
        step,
        status,
        error,
        ..
    }, Record::RunEnded(end)] = &start.records[..]
    else {
        panic!("{:?}", start.records)
    };
    assert_eq!((step.as_str(), status.as_str()), ("call", "failed"));
    let error = error.as_deref().unwrap();
    assert!(
        error.contains("`child`") && error.contains("`pod`"),
        "{error}"
    );
    assert_eq!(end.status, "failed");
}

// ----- 9. waits -----

const WAIT: &str = r#"
runbooks:
  - name: settle
    params:
      host: { type: string, default: api }
    steps:
      - name: pause
        wait: { duration_secs: 30 }
      - name: healthy
        wait:
          until: { http: { url: "http://{{ params.host }}/health" } }
          interval_secs: 5
        timeout_secs: 12
      - name: after
        action: log
        with: { message: "after {{ steps.healthy.outputs.polls }} polls" }
"#;

fn health_check() -> crate::config::Check {
    crate::config::Check {
        promql: None,
        prometheus_url: None,
        http: Some(crate::config::HttpCheck {
            url: "http://api/health".into(),
            method: "GET".into(),
            expect_status: Vec::new(),
            body_contains: None,
        }),
    }
}

fn check(attempt: u32) -> Effect {
    Effect::Check {
        step: "healthy".into(),
        attempt,
        check: health_check(),
        timeout_secs: 12.0,
    }
}

#[test]
fn a_wait_sleeps_then_polls_until_its_check_holds() {
    let mut run = Run::new(WAIT, "settle", json!({}));
    let start = run.start();
    assert_eq!(
        start.records,
        [started(
            "pause",
            1,
            "wait",
            json!({ "duration_secs": 30.0 })
        )]
    );
    assert_eq!(start.effects, [timer("pause", 1, TimerKind::Sleep, at(30))]);

    let slept = run.fire_next_timer();
    assert_eq!(
        slept.records,
        [
            ended("pause", "succeeded", json!({}), None),
            started(
                "healthy",
                1,
                "wait",
                json!({ "until": health_check(), "timeout_secs": 12.0, "deadline": "2024-05-01T12:00:42Z" })
            ),
        ]
    );
    assert_eq!(
        slept.effects,
        [timer("healthy", 0, TimerKind::Deadline, at(42)), check(1)]
    );
    let first = run.fail("healthy");
    assert_eq!(
        first.effects,
        [timer("healthy", 2, TimerKind::Poll, at(35))]
    );
    assert_eq!(run.fire_next_timer().effects, [check(2)]);
    let second = run.fail("healthy");
    assert_eq!(
        second.effects,
        [timer("healthy", 3, TimerKind::Poll, at(40))]
    );
    assert_eq!(run.fire_next_timer().effects, [check(3)]);
    let held = run.succeed("healthy", Value::Null);
    assert_eq!(
        held.records,
        [
            ended("healthy", "succeeded", json!({ "polls": 3 }), None),
            started("after", 1, "log", json!({ "message": "after 3 polls" })),
        ]
    );
    assert_eq!(held.effects, [execute("after", 1, log("after 3 polls"))]);
    // The deadline of a step that ended changes nothing.
    assert!(run.fire_next_timer().ignored);
}

#[test]
fn a_wait_whose_check_never_holds_times_out() {
    let mut run = Run::new(WAIT, "settle", json!({}));
    run.start();
    run.fire_next_timer();
    run.fail("healthy");
    run.fire_next_timer();
    run.fail("healthy");
    run.fire_next_timer();
    // The next poll would come after the deadline, so none is armed.
    assert!(run.fail("healthy").effects.is_empty());
    let deadline = run.fire_next_timer();
    assert_eq!(run.now, at(42));
    assert_eq!(
        deadline.records,
        [
            ended(
                "healthy",
                "timed_out",
                json!({}),
                Some("the check did not hold within 12 s")
            ),
            run_ended(
                "failed",
                Some("step `healthy` timed_out: the check did not hold within 12 s"),
                &[],
                Value::Null
            ),
        ]
    );
    assert!(deadline.effects.is_empty());
}

// ----- 10. dry runs -----

const DRY: &str = r#"
runbooks:
  - name: child
    params:
      pod: { type: string, required: true }
    steps:
      - name: delete
        action: log
        with: { message: "delete {{ params.pod }}" }
  - name: plan
    params:
      service: { type: string, default: api }
      pods: { type: list, default: [p0, p1, p2] }
    outputs:
      pod: "{{ steps.find.outputs.pod }}"
    steps:
      - name: find
        action: exec
        with: { command: [find, "{{ params.service }}"] }
        outputs: { pod: "{{ result.stdout }}" }
      - name: restart
        action: exec
        with: { command: [kubectl, delete, "{{ steps.find.outputs.pod }}"] }
      - name: maybe
        when: steps.find.outputs.pod == "x"
        action: log
        with: { message: maybe }
      - name: each
        for_each: params.pods
        steps:
          - { name: drain, action: log, with: { message: "drain {{ item }}" } }
      - name: par
        parallel:
          - name: a
            steps: [{ name: one, action: log, with: { message: one } }]
      - name: call
        runbook: child
        params: { pod: "{{ params.service }}" }
      - name: approve
        approval: { message: "ok?" }
      - name: pause
        wait: { duration_secs: 60 }
      - name: healthy
        wait:
          until: { promql: "up{job=\"{{ params.service }}\"} == 1" }
"#;

#[test]
fn a_dry_run_records_every_step_and_executes_nothing() {
    let mut run = Run::build(compile(DRY, "plan"), json!({}), true);
    let start = run.start();
    assert!(start.effects.is_empty(), "{:?}", start.effects);
    let starts: Vec<(&str, &str, &Value)> = start
        .records
        .iter()
        .filter_map(|record| match record {
            Record::StepStarted {
                step,
                action,
                inputs,
                ..
            } => Some((step.as_str(), action.as_str(), inputs)),
            _ => None,
        })
        .collect();
    let steps: Vec<&str> = starts.iter().map(|(step, _, _)| *step).collect();
    assert_eq!(
        steps,
        [
            "find",
            "restart",
            "maybe",
            "each",
            "each[0].drain",
            "each[1].drain",
            "each[2].drain",
            "par",
            "par.a.one",
            "call",
            "call.delete",
            "approve",
            "pause",
            "healthy",
        ]
    );
    assert_eq!(starts[0].2, &json!({ "command": ["find", "api"] }));
    let unrendered = starts[1].2["unrendered"].as_str().unwrap();
    assert!(
        unrendered.contains("steps.find.outputs.pod"),
        "{unrendered}"
    );
    assert!(starts[2].2["condition"]
        .as_str()
        .unwrap()
        .contains("assumed true"));
    assert_eq!(starts[5].2, &json!({ "message": "drain p1" }));
    assert_eq!(starts[10].2, &json!({ "message": "delete api" }));
    assert_eq!(
        starts[13].2["until"]["promql"],
        json!("up{job=\"api\"} == 1")
    );
    let statuses: BTreeSet<&str> = start
        .records
        .iter()
        .filter_map(|record| match record {
            Record::StepEnded { status, .. } => Some(status.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["dry_run"].into());
    assert_eq!(
        start.records.last(),
        Some(&run_ended("dry_run", None, &[], Value::Null))
    );
    assert!(run.machine.pending_approvals().is_empty());
}

// ----- 11. crash recovery -----

const RECOVERY: &str = r#"
runbooks:
  - name: rb
    steps:
      - name: safe
        action: log
        with: { message: "idempotent safe" }
        idempotent: true
        retries: { count: 2 }
      - name: once
        action: exec
        with: { command: [once] }
      - name: approve
        approval: {}
        timeout_secs: 300
"#;

/// Replays the first `count` journaled inputs into a fresh machine and recovers at the same time.
fn crash(run: &Run, count: usize) -> (Run, Transition) {
    let mut replayed = run.replay(count);
    let recover = replayed.apply(Input::Recover);
    (replayed, recover)
}

#[test]
fn recovery_reissues_an_idempotent_step_with_the_same_attempt() {
    let mut run = Run::new(RECOVERY, "rb", json!({}));
    run.start();
    let (mut replayed, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.records,
        [Record::StepStarted {
            step: "safe".into(),
            name: "safe".into(),
            attempt: 1,
            action: "log".into(),
            inputs: json!({ "message": "idempotent safe" }),
            resumed: true,
        }]
    );
    assert_eq!(
        recover.effects,
        [execute("safe", 1, log("idempotent safe"))]
    );
    let safe = replayed.succeed("safe", Value::Null);
    assert_eq!(safe.effects, [execute("once", 1, exec(&["once"]))]);
}

#[test]
fn recovery_stops_a_run_whose_non_idempotent_step_was_in_flight() {
    let mut run = Run::new(RECOVERY, "rb", json!({}));
    run.start();
    run.succeed("safe", Value::Null);
    let (replayed, recover) = crash(&run, run.journal.len());
    assert!(recover.effects.is_empty());
    let [Record::RunEnded(end)] = &recover.records[..] else {
        panic!("{:?}", recover.records)
    };
    assert_eq!(end.status, "needs_attention");
    assert!(end.error.as_deref().unwrap().contains("`once`"), "{end:?}");
    assert_eq!(replayed.end(), *end);
}

#[test]
fn recovery_reruns_a_log_step_though_it_does_not_say_idempotent() {
    // `log` touches nothing outside homeostat: running it again cannot do anything twice.
    let yaml = r#"
runbooks:
  - name: rb
    params: { unit: { type: string } }
    steps:
      - { name: note, action: log, with: { message: "restarting {{ params.unit }}" } }
      - { name: wait-rollout, action: kubernetes.wait_rollout, with: { name: api } }
      - { name: once, action: exec, with: { command: [once] } }
"#;
    let mut run = Run::new(yaml, "rb", json!({"unit": "api"}));
    run.start();
    let (mut replayed, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.records,
        [Record::StepStarted {
            step: "note".into(),
            name: "note".into(),
            attempt: 1,
            action: "log".into(),
            inputs: json!({ "message": "restarting api" }),
            resumed: true,
        }]
    );
    assert_eq!(recover.effects, [execute("note", 1, log("restarting api"))]);
    // A read-only Kubernetes wait is as safe to repeat.
    let note = replayed.succeed("note", Value::Null);
    assert!(matches!(
        &note.effects[..],
        [Effect::Execute { step, .. }] if step == "wait-rollout"
    ));
    let (mut again, recover) = crash(&replayed, replayed.journal.len());
    assert!(matches!(
        &recover.effects[..],
        [Effect::Execute { step, attempt: 1, .. }] if step == "wait-rollout"
    ));
    again.succeed("wait-rollout", Value::Null);
    // What is not idempotent by nature still stops the run.
    let (stopped, recover) = crash(&again, again.journal.len());
    assert!(recover.effects.is_empty());
    assert_eq!(stopped.end().status, "needs_attention");
}

#[test]
fn recovery_rearms_retry_timers_and_approval_deadlines_at_their_original_times() {
    let mut run = Run::new(RECOVERY, "rb", json!({}));
    run.start();
    run.now = at(10);
    run.fail("safe");
    run.now = at(20);
    let (_, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.effects,
        [timer("safe", 2, TimerKind::Retry, at(11))]
    );
    assert!(recover.records.is_empty());

    run.fire_next_timer();
    run.succeed("safe", Value::Null);
    run.now = at(30);
    run.succeed("once", Value::Null);
    run.now = at(100);
    let (replayed, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.effects,
        [timer("approve", 0, TimerKind::Deadline, at(330))]
    );
    assert_eq!(replayed.machine.pending_approvals()[0].deadline, at(330));
}

#[test]
fn recovery_rearms_sleeps_and_polls_and_reissues_checks() {
    let mut run = Run::new(WAIT, "settle", json!({}));
    run.start();
    let (_, recover) = crash(&run, 1);
    assert_eq!(
        recover.effects,
        [timer("pause", 1, TimerKind::Sleep, at(30))]
    );

    run.fire_next_timer();
    let (_, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.effects,
        [timer("healthy", 0, TimerKind::Deadline, at(42)), check(1)]
    );

    run.fail("healthy");
    let (_, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.effects,
        [
            timer("healthy", 0, TimerKind::Deadline, at(42)),
            timer("healthy", 2, TimerKind::Poll, at(35)),
        ]
    );
}

#[test]
fn recovery_during_a_rollback_reissues_or_stops_it() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo-a, action: log, with: { message: "undo a" }, idempotent: true }
      - name: b
        action: log
        with: { message: b }
        rollback: { name: undo-b, action: exec, with: { command: [undo-b] } }
      - name: c
        action: log
        with: { message: c }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.succeed("b", Value::Null);
    run.fail("c");
    let (_, recover) = crash(&run, run.journal.len());
    assert_eq!(recover.effects, []);
    let [Record::RunEnded(end)] = &recover.records[..] else {
        panic!("{:?}", recover.records)
    };
    assert_eq!(end.status, "needs_attention");
    assert!(
        end.error.as_deref().unwrap().contains("`b.rollback`"),
        "{end:?}"
    );

    run.succeed("b.rollback", Value::Null);
    let (mut replayed, recover) = crash(&run, run.journal.len());
    assert_eq!(recover.effects, [execute("a.rollback", 1, log("undo a"))]);
    assert!(matches!(
        &recover.records[..],
        [Record::StepStarted { step, resumed: true, .. }] if step == "a.rollback"
    ));
    replayed.succeed("a.rollback", Value::Null);
    assert_eq!(replayed.end().status, "rolled_back");
    assert_eq!(replayed.end().undone, ["b", "a"]);
}

/// A runbook of every kind of step. Actions whose message starts with `idempotent` are marked so.
const MIXED: &str = r#"
runbooks:
  - name: child
    params:
      target: { type: string, required: true }
    outputs:
      done: "{{ steps.work.outputs.out }}"
    steps:
      - name: work
        action: log
        with: { message: "idempotent work {{ params.target }}" }
        idempotent: true
        outputs: { out: "{{ result.stdout }}" }
  - name: mixed
    params:
      items: { type: list, default: [i0, i1, i2] }
    outputs:
      child: "{{ steps.call.outputs.done }}"
    steps:
      - name: first
        action: exec
        with: { command: [first] }
        outputs: { out: "{{ result.stdout }}" }
        rollback: { name: undo-first, action: log, with: { message: "idempotent undo first" }, idempotent: true }
      - name: flaky
        action: log
        with: { message: "idempotent flaky" }
        idempotent: true
        retries: { count: 2, backoff_secs: 2 }
      - name: par
        parallel:
          - name: a
            steps:
              - { name: left, action: log, with: { message: "idempotent left" }, idempotent: true }
              - name: nap
                wait: { duration_secs: 5 }
          - name: b
            steps:
              - { name: right, action: exec, with: { command: [right] } }
      - name: each
        for_each: params.items
        concurrency: 2
        steps:
          - name: touch
            action: log
            with: { message: "idempotent touch {{ item }}" }
            idempotent: true
            rollback: { name: untouch, action: exec, with: { command: [untouch, "{{ item }}"] } }
      - name: approve
        approval: {}
        timeout_secs: 100
      - name: healthy
        wait:
          until: { promql: "up == 1" }
          interval_secs: 3
        timeout_secs: 30
      - name: call
        runbook: child
        params: { target: "{{ steps.first.outputs.out }}" }
      - name: last
        action: log
        with: { message: "idempotent last" }
        idempotent: true
"#;

fn is_idempotent(effect: &Effect) -> bool {
    match effect {
        Effect::Execute {
            action: Action::Log(log),
            ..
        } => log.message.starts_with("idempotent"),
        _ => false,
    }
}

/// How the crashes of one run went.
#[derive(Debug, Default)]
struct Crashes {
    /// Recovered and ended as the live run did.
    same_end: usize,
    /// Stopped in `needs_attention`, a non-idempotent action being in flight.
    needs_attention: usize,
}

/// Crashes `live` (driven by `world`) after every prefix of its journal and checks that replay and
/// recovery end the run as the live run ended, or in `needs_attention` exactly when a
/// non-idempotent action was in flight. A crash before a cancel is journaled is only checked to
/// end: the person who cancelled would cancel at another point of the recovered run.
fn check_every_crash(live: &Run, world: &World) -> Crashes {
    let live_end = live.end();
    let cancelled_at = live
        .journal
        .iter()
        .position(|(input, _, _)| matches!(input, Input::Cancel { .. }));
    let mut crashes = Crashes::default();
    for count in 1..=live.journal.len() {
        // What was asked for and not answered within the prefix.
        let mut in_flight: Vec<&Effect> = Vec::new();
        for (input, _, effects) in &live.journal[..count] {
            if let Input::Outcome { step, attempt, .. } = input {
                in_flight.retain(|effect| effect_step(effect) != Some((step.as_str(), *attempt)));
            }
            in_flight.extend(
                effects
                    .iter()
                    .filter(|effect| matches!(effect, Effect::Execute { .. })),
            );
        }
        let unsafe_steps: Vec<&str> = in_flight
            .iter()
            .filter(|effect| !is_idempotent(effect))
            .filter_map(|effect| effect_step(effect).map(|(step, _)| step))
            .collect();
        let (mut replayed, recover) = crash(live, count);
        if unsafe_steps.is_empty() {
            let cancel_replayed = cancelled_at.is_none_or(|index| index < count);
            let world = World {
                status: world.status,
                approve: world.approve,
                cancel_at: None,
            };
            // A second crash right after recovering: the journal now holds `Recover` too.
            let (mut twice, _) = crash(&replayed, replayed.journal.len());
            let end = replayed.drive(&world);
            let end_twice = twice.drive(&world);
            assert_eq!(
                end, end_twice,
                "after crashes at input {count} and after recovering"
            );
            if cancel_replayed {
                assert_eq!(end, live_end, "after a crash at input {count}");
                crashes.same_end += 1;
            }
        } else {
            assert!(recover.effects.is_empty(), "after a crash at input {count}");
            let end = replayed.end();
            assert_eq!(
                end.status, "needs_attention",
                "after a crash at input {count}"
            );
            for step in unsafe_steps {
                assert!(
                    end.error.as_deref().unwrap().contains(&format!("`{step}`")),
                    "after a crash at input {count}: {end:?}"
                );
            }
            crashes.needs_attention += 1;
        }
    }
    crashes
}

#[test]
fn a_run_recovered_after_any_crash_ends_as_the_live_run() {
    let policies: [(&str, &Status); 5] = [
        ("all succeed", &|_, _| "succeeded"),
        (
            "retries and polls",
            &|step, attempt| match (step, attempt) {
                ("flaky", 1 | 2) | ("healthy", 1 | 2) => "failed",
                _ => "succeeded",
            },
        ),
        ("a branch fails", &|step, _| match step {
            "par.b.right" => "failed",
            _ => "succeeded",
        }),
        ("an item fails", &|step, _| match step {
            "each[1].touch" => "failed",
            _ => "succeeded",
        }),
        ("the last step fails", &|step, _| match step {
            "last" => "failed",
            _ => "succeeded",
        }),
    ];
    for (name, policy) in policies {
        let world = World::answering(policy);
        let mut live = Run::new(MIXED, "mixed", json!({}));
        live.start();
        let end = live.drive(&world);
        match name {
            "all succeed" | "retries and polls" => {
                assert_eq!(end.status, "succeeded", "{name}: {end:?}");
                assert_eq!(end.outputs, json!({ "child": "call.work" }), "{name}");
            }
            "a branch fails" => assert_eq!(end.undone, ["first"], "{name}: {end:?}"),
            "an item fails" => {
                assert_eq!(
                    end.undone,
                    ["each[2].touch", "each[0].touch", "first"],
                    "{name}: {end:?}"
                )
            }
            _ => assert_eq!(
                end.undone,
                ["each[2].touch", "each[1].touch", "each[0].touch", "first"],
                "{name}: {end:?}"
            ),
        }
        let crashes = check_every_crash(&live, &world);
        assert_eq!(
            crashes.same_end + crashes.needs_attention,
            live.journal.len(),
            "{name}"
        );
        assert!(
            crashes.same_end > 0 && crashes.needs_attention > 0,
            "{name}: {crashes:?}"
        );
    }
}

/// The steps of `MIXED` whose attempts the property below makes fail.
const MIXED_STEPS: &[&str] = &[
    "first",
    "flaky",
    "par.a.left",
    "par.b.right",
    "each[0].touch",
    "each[1].touch",
    "each[2].touch",
    "healthy",
    "call.work",
    "last",
    "first.rollback",
    "each[0].touch.rollback",
    "each[1].touch.rollback",
    "each[2].touch.rollback",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Any mix of failures, approval decisions and a cancel: every crash recovers to the live end.
    #[test]
    fn any_run_recovered_after_any_crash_ends_as_the_live_run(
        // Mostly no failure, so that runs get far before one.
        failures in proptest::collection::vec(
            proptest::prop_oneof![8 => proptest::strategy::Just(0u32), 1 => 1u32..4],
            MIXED_STEPS.len(),
        ),
        approve in proptest::option::of(proptest::bool::ANY),
        cancel_at in proptest::option::of(1usize..40),
    ) {
        let status = |step: &str, attempt: u32| {
            let fails = MIXED_STEPS
                .iter()
                .position(|name| *name == step)
                .map_or(0, |index| failures[index]);
            if attempt <= fails { "failed" } else { "succeeded" }
        };
        let world = World { status: &status, approve, cancel_at };
        let mut live = Run::new(MIXED, "mixed", json!({}));
        live.start();
        live.drive(&world);
        check_every_crash(&live, &world);
    }
}

// ----- 12. cancel -----

#[test]
fn cancelling_during_an_approval_ends_the_run_cancelled() {
    let mut run = Run::new(APPROVAL, "gated", json!({}));
    run.start();
    run.succeed("prepare", Value::Null);
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert!(cancel.effects.is_empty());
    assert_eq!(
        cancel.records,
        [
            ended(
                "approve",
                "cancelled",
                json!({}),
                Some("cancelled by `carol`")
            ),
            run_ended("cancelled", Some("cancelled by `carol`"), &[], Value::Null),
        ]
    );
    assert!(run.machine.pending_approvals().is_empty());
    assert!(run.approve("approve", "alice", true).ignored);
}

#[test]
fn cancelling_during_an_action_waits_for_it_then_starts_nothing() {
    let mut run = Run::new(SEQUENTIAL, "restart", json!({ "service": "api" }));
    run.start();
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert!(!cancel.ignored);
    assert!(
        cancel.records.is_empty() && cancel.effects.is_empty(),
        "{cancel:?}"
    );
    assert!(run.machine.end().is_none());
    assert!(run.apply(Input::Cancel { by: "dave".into() }).ignored);

    let a = run.succeed("a", json!({ "stdout": "api-1" }));
    assert!(a.effects.is_empty());
    assert_eq!(
        a.records,
        [run_ended(
            "cancelled",
            Some("cancelled by `carol`"),
            &[],
            Value::Null
        )]
    );
}

#[test]
fn cancelling_during_a_retry_pause_ends_the_run_and_stales_the_timer() {
    let mut run = Run::new(RETRIES, "flaky", json!({}));
    run.start();
    run.fail("restart");
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert_eq!(
        cancel
            .records
            .last()
            .map(|record| matches!(record, Record::RunEnded(end) if end.status == "cancelled")),
        Some(true)
    );
    assert!(run.fire_next_timer().ignored);
}

#[test]
fn a_cancelled_run_recovers_as_cancelled() {
    let mut run = Run::new(RECOVERY, "rb", json!({}));
    run.start();
    run.succeed("safe", Value::Null);
    run.succeed("once", Value::Null);
    run.apply(Input::Cancel { by: "carol".into() });
    let (replayed, recover) = crash(&run, run.journal.len());
    assert!(recover.ignored);
    assert_eq!(replayed.end(), run.end());
}

#[test]
fn cancelling_during_a_rollback_lets_the_undo_in_flight_finish_and_skips_the_rest() {
    let mut run = Run::new(ROLLBACK, "deploy", json!({}));
    run.start();
    run.succeed("a", json!({ "replicas": 3 }));
    run.succeed("b", Value::Null);
    run.fail("c");
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert!(
        cancel.records.is_empty() && cancel.effects.is_empty(),
        "{cancel:?}"
    );
    let undo_b = run.succeed("b.rollback", Value::Null);
    assert!(undo_b.effects.is_empty());
    assert_eq!(
        undo_b.records,
        [run_ended(
            "cancelled",
            Some("step `c` failed: exit 1 from c; rollback cancelled"),
            &["b"],
            Value::Null
        )]
    );
}

const ROLLBACK_RETRY: &str = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo-a, action: log, with: { message: "undo a" } }
      - name: b
        action: log
        with: { message: b }
        rollback:
          name: undo-b
          action: log
          with: { message: "undo b" }
          retries: { count: 3, backoff_secs: 10 }
      - name: c
        action: log
        with: { message: c }
"#;

#[test]
fn cancelling_during_a_rollback_retry_pause_ends_the_run_at_once() {
    let mut run = Run::new(ROLLBACK_RETRY, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.succeed("b", Value::Null);
    run.fail("c");
    run.fail("b.rollback");
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert!(cancel.effects.is_empty());
    assert_eq!(
        cancel.records,
        [run_ended(
            "cancelled",
            Some("step `c` failed: exit 1 from c; rollback cancelled"),
            &[],
            Value::Null
        )]
    );
    assert!(run.fire_next_timer().ignored);
}

#[test]
fn recovery_during_a_rollback_retry_pause_rearms_its_timer() {
    let mut run = Run::new(ROLLBACK_RETRY, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    run.succeed("b", Value::Null);
    run.fail("c");
    run.now = at(1);
    run.fail("b.rollback");
    run.now = at(5);
    let (mut replayed, recover) = crash(&run, run.journal.len());
    assert_eq!(
        recover.effects,
        [timer("b.rollback", 2, TimerKind::Retry, at(11))]
    );
    let retry = replayed.fire_next_timer();
    assert_eq!(retry.effects, [execute("b.rollback", 2, log("undo b"))]);
    let end = replayed.drive(&World::answering(&|_, _| "succeeded"));
    assert_eq!(end.status, "rolled_back");
    assert_eq!(end.undone, ["b", "a"]);
}

#[test]
fn cancelling_a_fan_out_ends_waiting_steps_at_once_and_awaits_the_rest() {
    let yaml = r#"
runbooks:
  - name: rb
    params:
      pods: { type: list, default: [p0, p1, p2, p3] }
    steps:
      - name: par
        parallel:
          - name: a
            steps:
              - name: approve
                approval: {}
          - name: b
            steps:
              - name: each
                for_each: params.pods
                concurrency: 2
                steps:
                  - { name: drain, action: log, with: { message: "{{ item }}" } }
      - name: after
        action: log
        with: { message: after }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    assert_eq!(
        run.executing(),
        ["par.b.each[0].drain", "par.b.each[1].drain"]
    );
    assert_eq!(run.machine.pending_approvals()[0].step, "par.a.approve");
    let cancel = run.apply(Input::Cancel { by: "carol".into() });
    assert_eq!(
        cancel.records,
        [ended(
            "par.a.approve",
            "cancelled",
            json!({}),
            Some("cancelled by `carol`")
        )]
    );
    assert!(cancel.effects.is_empty());
    let first = run.succeed("par.b.each[0].drain", Value::Null);
    assert!(first.effects.is_empty(), "no new item starts: {first:?}");
    let second = run.succeed("par.b.each[1].drain", Value::Null);
    assert!(second.effects.is_empty());
    let statuses: Vec<(&str, &str)> = second
        .records
        .iter()
        .filter_map(|record| match record {
            Record::StepEnded { step, status, .. } => Some((step.as_str(), status.as_str())),
            Record::RunEnded(end) => Some(("run", end.status.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("par.b.each", "cancelled"),
            ("par", "cancelled"),
            ("run", "cancelled")
        ]
    );
}

#[test]
fn an_ended_run_waits_for_no_approval() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: par
        parallel:
          - name: a
            steps: [{ name: approve, approval: {} }]
          - name: b
            steps: [{ name: once, action: exec, with: { command: [once] } }]
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    let (replayed, recover) = crash(&run, run.journal.len());
    assert!(recover.effects.is_empty());
    assert_eq!(replayed.end().status, "needs_attention");
    assert!(replayed.machine.pending_approvals().is_empty());
}

#[test]
fn an_assert_checks_once_and_fails_the_run_when_it_does_not_hold() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: up
        assert: { promql: "up == 1", prometheus_url: "http://prom" }
        timeout_secs: 120
      - name: after
        action: log
        with: { message: after }
"#;
    let check = crate::config::Check {
        promql: Some("up == 1".into()),
        prometheus_url: Some("http://prom".into()),
        http: None,
    };
    let mut run = Run::new(yaml, "rb", json!({}));
    let start = run.start();
    assert_eq!(
        start.records,
        [started("up", 1, "assert", json!({ "check": check }))]
    );
    assert_eq!(
        start.effects,
        [Effect::Check {
            step: "up".into(),
            attempt: 1,
            check: check.clone(),
            timeout_secs: 60.0,
        }]
    );
    // A check is read-only, so recovery runs it again even though the step is not idempotent.
    let (_, recover) = crash(&run, 1);
    assert!(matches!(
        &recover.effects[..],
        [Effect::Check { attempt: 1, .. }]
    ));
    let failed = run.fail("up");
    assert_eq!(
        failed.records,
        [run_ended(
            "failed",
            Some("step `up` failed: exit 1 from up"),
            &[],
            Value::Null
        )]
    );
}

#[test]
fn nested_steps_are_named_by_their_path_and_see_their_own_scope() {
    let yaml = r#"
runbooks:
  - name: child
    params:
      pod: { type: string, required: true }
    steps:
      - name: delete
        action: log
        with: { message: "delete {{ params.pod }}" }
        rollback: { name: undelete, action: log, with: { message: "undelete {{ params.pod }}" } }
      - name: scope
        action: log
        with: { message: "{{ item | default('no item') }}" }
  - name: rb
    params:
      pods: { type: list, default: [p0, p1] }
    steps:
      - name: each
        for_each: params.pods
        steps:
          - name: call
            runbook: child
            params: { pod: "{{ item }}-{{ index }}" }
      - name: fail
        action: log
        with: { message: fail }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    let start = run.start();
    assert_eq!(
        start.effects,
        [execute("each[0].call.delete", 1, log("delete p0-0"))]
    );
    let deleted = run.succeed("each[0].call.delete", Value::Null);
    // A called runbook does not see the caller's `item`.
    assert_eq!(
        deleted.effects,
        [execute("each[0].call.scope", 1, log("no item"))]
    );
    run.succeed("each[0].call.scope", Value::Null);
    run.succeed("each[1].call.delete", Value::Null);
    run.succeed("each[1].call.scope", Value::Null);
    let failed = run.fail("fail");
    assert_eq!(
        failed.records[0],
        Record::RollbackStarted {
            steps: vec!["each[1].call.delete".into(), "each[0].call.delete".into()]
        }
    );
    assert_eq!(
        failed.effects,
        [execute(
            "each[1].call.delete.rollback",
            1,
            log("undelete p1-1")
        )]
    );
    run.succeed("each[1].call.delete.rollback", Value::Null);
    run.succeed("each[0].call.delete.rollback", Value::Null);
    assert_eq!(
        run.end().undone,
        ["each[1].call.delete", "each[0].call.delete"]
    );
}

#[test]
fn an_abort_inside_a_composite_step_is_not_rolled_back() {
    let yaml = r#"
runbooks:
  - name: rb
    steps:
      - name: a
        action: log
        with: { message: a }
        rollback: { name: undo, action: log, with: { message: undo } }
      - name: par
        parallel:
          - name: x
            steps:
              - { name: inner, action: log, with: { message: inner }, on_failure: abort }
"#;
    let mut run = Run::new(yaml, "rb", json!({}));
    run.start();
    run.succeed("a", Value::Null);
    let failed = run.fail("par.x.inner");
    assert_eq!(
        failed.records.last(),
        Some(&run_ended(
            "failed",
            Some("step `par.x.inner` failed: exit 1 from par.x.inner"),
            &[],
            Value::Null
        ))
    );
}

#[test]
fn a_step_failing_after_a_cancel_is_not_retried() {
    let mut run = Run::new(RETRIES, "flaky", json!({}));
    run.start();
    run.apply(Input::Cancel { by: "carol".into() });
    let failed = run.fail("restart");
    assert!(failed.effects.is_empty(), "{failed:?}");
    assert_eq!(
        failed.records,
        [run_ended(
            "cancelled",
            Some("cancelled by `carol`"),
            &[],
            Value::Null
        )]
    );
}

// ----- rollbacks that actions declare, and dry runs that ask the server -----

const KUBE: &str = r#"
runbooks:
  - name: scale-then-check
    steps:
      - name: up
        action: kubernetes.scale
        with: {namespace: shop, name: checkout, replicas: 6, max: 10}
      - name: cordon
        action: kubernetes.cordon
        with: {node: n1}
      - name: check
        action: exec
        with: {command: [check]}
"#;

#[test]
fn a_kubernetes_step_is_undone_by_the_rollback_its_action_declares() {
    let mut run = Run::new(KUBE, "scale-then-check", json!({}));
    run.start();
    run.succeed(
        "up",
        json!({"kind": "Deployment", "namespace": "shop", "name": "checkout",
               "previous_replicas": 3, "replicas": 6, "changed": true}),
    );
    // The node was cordoned already: nothing to undo there.
    run.succeed("cordon", json!({"node": "n1", "changed": false}));
    let failed = run.fail("check");
    assert_eq!(
        failed.records[0],
        Record::RollbackStarted {
            steps: vec!["up".into()]
        }
    );
    let Effect::Execute { step, action, .. } = &failed.effects[0] else {
        panic!("{:?}", failed.effects)
    };
    assert_eq!(step, "up.rollback");
    assert_eq!(
        serde_json::to_value(action).unwrap(),
        json!({"action": "kubernetes.scale", "with": {
            "kind": "Deployment", "namespace": "shop", "name": "checkout",
            "replicas": 3, "min": 3, "max": 3}})
    );
    run.succeed("up.rollback", json!({"changed": true}));
    assert_eq!(run.end().status, "rolled_back");
    assert_eq!(run.end().undone, ["up"]);
}

#[test]
fn a_dry_run_executes_kubernetes_actions_as_server_dry_runs_and_nothing_else() {
    let mut run = Run::build(compile(KUBE, "scale-then-check"), json!({}), true);
    let started = run.start();
    assert_eq!(run.executing(), ["up"], "{:?}", started.records);
    let attempt = run.attempt_of("up");
    let answered = run.outcome("up", attempt, "dry_run", json!({"replicas": 6}));
    assert!(
        answered.records.is_empty()
            || !answered
                .records
                .iter()
                .any(|r| matches!(r, Record::RollbackStarted { .. }))
    );
    run.outcome("cordon", run.attempt_of("cordon"), "dry_run", json!({}));
    // `exec` cannot be asked what it would do: it completes as a dry run without executing.
    assert!(run.executing().is_empty());
    assert_eq!(run.end().status, "dry_run");
}

// ----- what people read: the steps folded from the journal -----

fn step_record<'a>(steps: &'a [StepRecord], path: &str) -> &'a StepRecord {
    steps
        .iter()
        .rev()
        .find(|step| step.step == path)
        .unwrap_or_else(|| panic!("no step `{path}` in {steps:#?}"))
}

#[test]
fn a_polling_wait_reads_as_waiting_with_its_polls_until_its_check_holds() {
    let mut run = Run::new(WAIT, "settle", json!({}));
    run.start();
    run.fire_next_timer();
    let healthy = || json!({ "status": 503 });
    let attempt = run.attempt_of("healthy");
    run.outcome("healthy", attempt, "failed", healthy());
    let steps = crate::journal::steps(&run.entries);
    let record = step_record(&steps, "healthy");
    assert_eq!(record.status, StepStatus::Waiting);
    assert_eq!(record.polls, Some(1));
    let poll = record.last_poll.as_ref().expect("a poll");
    assert_eq!(poll.output, healthy());
    assert_eq!(poll.error.as_deref(), Some("exit 1 from healthy"));
    assert_eq!(
        record.summary.as_deref(),
        Some("wait until GET http://api/health answers 2xx, for up to 12 s")
    );

    run.fire_next_timer();
    run.fail("healthy");
    run.fire_next_timer();
    let steps = crate::journal::steps(&run.entries);
    // One record for the step however many polls: the later polls are not steps of their own.
    assert_eq!(
        steps.iter().filter(|step| step.step == "healthy").count(),
        1
    );
    assert_eq!(step_record(&steps, "healthy").status, StepStatus::Waiting);
    assert_eq!(step_record(&steps, "healthy").polls, Some(2));

    run.succeed("healthy", json!({ "status": 200 }));
    let steps = crate::journal::steps(&run.entries);
    let record = step_record(&steps, "healthy");
    assert_eq!(record.status, StepStatus::Succeeded);
    assert_eq!(record.polls, Some(3));
    assert_eq!(record.outputs, Some(json!({ "polls": 3 })));
}

#[test]
fn a_polling_wait_that_never_holds_reads_as_timed_out_after_its_polls() {
    let mut run = Run::new(WAIT, "settle", json!({}));
    run.start();
    run.fire_next_timer();
    for _ in 0..2 {
        run.fail("healthy");
        run.fire_next_timer();
    }
    run.fail("healthy");
    let steps = crate::journal::steps(&run.entries);
    assert_eq!(step_record(&steps, "healthy").status, StepStatus::Waiting);
    assert_eq!(step_record(&steps, "healthy").polls, Some(3));
    run.fire_next_timer();
    let steps = crate::journal::steps(&run.entries);
    let record = step_record(&steps, "healthy");
    assert_eq!(record.status, StepStatus::TimedOut);
    assert_eq!(record.polls, Some(3));
    assert_eq!(
        record.error.as_deref(),
        Some("the check did not hold within 12 s")
    );
}

#[test]
fn a_dry_run_reads_as_what_would_have_run() {
    let mut run = Run::build(compile(DRY, "plan"), json!({}), true);
    run.start();
    assert_eq!(run.end().status, "dry_run");
    let steps = crate::journal::steps(&run.entries);
    let summaries: Vec<(&str, StepStatus, Option<&str>)> = steps
        .iter()
        .map(|step| (step.step.as_str(), step.status, step.summary.as_deref()))
        .collect();
    let dry = StepStatus::DryRun;
    assert_eq!(
        summaries,
        [
            ("find", dry, Some("run `find api`")),
            (
                "restart",
                dry,
                Some(
                    "exec, not rendered before the run: template `{{ steps.find.outputs.pod }}` \
                     failed: undefined value; consider `| default(\"...\")` for values that may \
                     be missing"
                )
            ),
            ("maybe", dry, Some("log: maybe")),
            ("each", dry, Some("run its steps for 3 items, 1 at a time")),
            ("each[0].drain", dry, Some("log: drain p0")),
            ("each[1].drain", dry, Some("log: drain p1")),
            ("each[2].drain", dry, Some("log: drain p2")),
            ("par", dry, Some("run branches `a` at once")),
            ("par.a.one", dry, Some("log: one")),
            ("call", dry, Some("call runbook `child` with pod=api")),
            ("call.delete", dry, Some("log: delete api")),
            (
                "approve",
                dry,
                Some("ask any token with the `write` scope to approve: ok?")
            ),
            ("pause", dry, Some("wait 60 s")),
            (
                "healthy",
                dry,
                Some("wait until `up{job=\"api\"} == 1` holds, for up to 3600 s")
            ),
        ]
    );
}
