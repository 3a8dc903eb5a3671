//! `--follow`: reads a run's log stream (Server-Sent Events) and prints one line per step event,
//! until the run finishes. On a terminal, steps in progress share one status line that is redrawn in
//! place; elsewhere every event is its own line.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use homeostat_core::journal::{Entry, JournalEntry, RunStatus};
use homeostat_core::runbook::{Input, Record};
use serde_json::Value;

use super::remote::{Failure, Remote};
use super::runbook::segment;
use super::{EXIT_ERROR, EXIT_FAILED};

/// How many times in a row the stream may fail to connect or drop before giving up; with the pause
/// below, long enough for a daemon restart.
const MAX_RECONNECTS: u32 = 60;
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Follows run `run_id` to its end: 0 if it succeeded (or was a dry run), 1 if it ended otherwise.
pub async fn follow(remote: &Remote, run_id: &str) -> u8 {
    let path = format!("/api/v1/runs/{}/logs", segment(run_id));
    let mut printer = Printer::new(run_id, std::io::stdout().is_terminal());
    let mut last_seq: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        let mut lost: Option<Failure> = None;
        match remote.stream(&path, last_seq).await {
            Ok(mut response) => {
                let mut parser = Parser::default();
                // Ends when the stream does before `run_finished`: the daemon stopped, or the
                // connection broke. The next connection resumes after the last entry printed.
                while let Ok(Some(bytes)) = response.chunk().await {
                    failures = 0;
                    for event in parser.push(&bytes) {
                        if let Some(seq) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                            last_seq = Some(seq);
                        }
                        if let Some(code) = printer.event(&event) {
                            return code;
                        }
                    }
                }
            }
            Err(failure @ Failure::Api { .. }) => {
                printer.clear_status();
                return failure.report();
            }
            Err(failure) => lost = Some(failure),
        }
        failures += 1;
        if failures >= MAX_RECONNECTS {
            printer.clear_status();
            let code = match lost {
                Some(failure) => failure.report(),
                None => {
                    eprintln!("error: lost the log stream of run `{run_id}`");
                    EXIT_ERROR
                }
            };
            eprintln!("see where the run got with `homeostat runs show {run_id}`");
            return code;
        }
        if failures == 1 {
            printer.note("lost the log stream; reconnecting");
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// An incremental Server-Sent Events parser: bytes in, complete events out.
#[derive(Default)]
pub struct Parser {
    buffer: Vec<u8>,
    current: Event,
    has_data: bool,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                } else {
                    self.current = Event::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                // A comment: the keep-alive.
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        events
    }
}

/// Turns journal entries into lines.
struct Printer {
    run_id: String,
    terminal: bool,
    /// Steps started and not yet ended, for the terminal's status line.
    running: BTreeSet<String>,
    /// Approval steps waiting, to say which `--step` to approve when there are several.
    approvals: BTreeSet<String>,
    /// Each step's action or kind, as its start said.
    actions: HashMap<String, String>,
    status_shown: bool,
}

impl Printer {
    fn new(run_id: &str, terminal: bool) -> Self {
        Self {
            run_id: run_id.to_string(),
            terminal,
            running: BTreeSet::new(),
            approvals: BTreeSet::new(),
            actions: HashMap::new(),
            status_shown: false,
        }
    }

    /// Prints one entry; the exit code once the run finished.
    fn event(&mut self, event: &Event) -> Option<u8> {
        // An entry this version cannot read is skipped, not fatal: the run goes on either way.
        let Ok(entry) = serde_json::from_str::<JournalEntry>(&event.data) else {
            return None;
        };
        let at = entry.at.format("%H:%M:%S%.3f").to_string();
        match &entry.entry {
            Entry::RunStarted(plan) => {
                let mut detail = format!("runbook `{}` on `{}`", plan.runbook, plan.target);
                if let Some(by) = &plan.started_by {
                    detail.push_str(&format!(" by `{by}`"));
                }
                self.line(&at, "run", "started", &detail);
            }
            Entry::Step(Record::StepStarted {
                step,
                attempt,
                action,
                inputs,
                ..
            }) => {
                self.actions.insert(step.clone(), action.clone());
                if action == "approval" {
                    self.approvals.insert(step.clone());
                    let mut detail = String::from("approval");
                    if let Some(message) = inputs["message"].as_str() {
                        detail.push_str(&format!(": {message}"));
                    }
                    if let Some(approvers) = inputs["approvers"].as_array() {
                        let names: Vec<&str> = approvers.iter().filter_map(Value::as_str).collect();
                        if !names.is_empty() {
                            detail.push_str(&format!(" (approvers: {})", names.join(", ")));
                        }
                    }
                    self.line(&at, step, "waiting", &detail);
                    let step_flag = if self.approvals.len() > 1 {
                        format!(" --step {step}")
                    } else {
                        String::new()
                    };
                    self.note(&format!(
                        "approve with `homeostat approve {}{step_flag}` (or reject with --reject)",
                        self.run_id
                    ));
                } else if !self.terminal {
                    self.running.insert(step.clone());
                    let detail = if *attempt > 1 {
                        format!("{action}, attempt {attempt}")
                    } else {
                        action.clone()
                    };
                    self.line(&at, step, "started", &detail);
                } else {
                    self.running.insert(step.clone());
                    self.redraw();
                }
            }
            Entry::StepFinished {
                input:
                    Input::Outcome {
                        step,
                        attempt,
                        status,
                        error,
                        ..
                    },
                outputs,
            } => {
                let attempt = (*attempt > 1).then_some(*attempt);
                self.step_ended(
                    &at,
                    step,
                    status.as_str(),
                    attempt,
                    error.as_deref(),
                    outputs,
                );
            }
            Entry::Step(Record::StepEnded {
                step,
                status,
                error,
                outputs,
                ..
            }) => self.step_ended(&at, step, status.as_str(), None, error.as_deref(), outputs),
            Entry::Step(Record::StepSkipped { step, reason, .. }) => {
                self.line(&at, step, "skipped", reason)
            }
            Entry::Step(Record::RollbackStarted { steps }) => {
                self.line(&at, "rollback", "started", &steps.join(", "))
            }
            Entry::RunInput(Input::Cancel { by }) => {
                self.line(&at, "run", "cancel", &format!("asked by `{by}`"))
            }
            Entry::RunInput(Input::Recover) => {
                self.line(&at, "run", "resumed", "after a daemon restart")
            }
            Entry::RunFinished(end) | Entry::Step(Record::RunEnded(end)) => {
                self.running.clear();
                let mut detail = Vec::new();
                if let Some(error) = &end.error {
                    detail.push(error.clone());
                }
                if !end.undone.is_empty() {
                    detail.push(format!("undone: {}", end.undone.join(", ")));
                }
                self.line(&at, "run", end.status.as_str(), &detail.join("; "));
                return Some(match end.status {
                    RunStatus::Succeeded | RunStatus::DryRun => 0,
                    _ => EXIT_FAILED,
                });
            }
            _ => {}
        }
        None
    }

    /// A step's end, from its outcome or its own record.
    fn step_ended(
        &mut self,
        at: &str,
        step: &str,
        status: &str,
        attempt: Option<u32>,
        error: Option<&str>,
        outputs: &Value,
    ) {
        self.running.remove(step);
        self.approvals.remove(step);
        let mut detail = Vec::new();
        if let Some(attempt) = attempt {
            detail.push(format!("attempt {attempt}"));
        }
        // A parallel or for_each step's outputs are its children's, already printed.
        let composite = matches!(
            self.actions.get(step).map(String::as_str),
            Some("parallel" | "for_each")
        );
        if let Some(error) = error {
            detail.push(error.to_string());
        } else if let Some(outputs) = summary(outputs).filter(|_| !composite) {
            detail.push(outputs);
        }
        self.line(at, step, status, &detail.join(": "));
    }

    /// A permanent line on stdout: time, step path, status, detail.
    fn line(&mut self, at: &str, step: &str, status: &str, detail: &str) {
        self.clear_status();
        let status_text = if self.terminal {
            let color = match status {
                "succeeded" | "dry_run" => "32",
                "failed" | "timed_out" | "rejected" | "needs_attention" => "31",
                "waiting" | "rolled_back" | "cancelled" | "cancel" | "skipped" => "33",
                _ => "0",
            };
            format!("\x1b[{color}m{status:<10}\x1b[0m")
        } else {
            format!("{status:<10}")
        };
        let line = format!("{at}  {step:<28}  {status_text}  {detail}");
        println!("{}", line.trim_end());
        self.redraw();
    }

    /// A message for the person watching, on stderr.
    fn note(&mut self, text: &str) {
        self.clear_status();
        eprintln!("{text}");
        self.redraw();
    }

    /// On a terminal: the steps in progress, on one line rewritten in place.
    fn redraw(&mut self) {
        self.clear_status();
        if !self.terminal || self.running.is_empty() {
            return;
        }
        let running: Vec<&str> = self.running.iter().map(String::as_str).collect();
        let mut text = format!("running: {}", running.join(", "));
        if text.chars().count() > 100 {
            text = text.chars().take(99).collect::<String>() + "…";
        }
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, "\x1b[2m{text}\x1b[0m");
        let _ = stdout.flush();
        self.status_shown = true;
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            let mut stdout = std::io::stdout();
            let _ = write!(stdout, "\r\x1b[2K");
            let _ = stdout.flush();
            self.status_shown = false;
        }
    }
}

/// A step's outputs on one short line, or `None` when it has none.
fn summary(outputs: &Value) -> Option<String> {
    let empty = match outputs {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    };
    if empty {
        return None;
    }
    let text = outputs.to_string();
    Some(if text.chars().count() > 120 {
        text.chars().take(119).collect::<String>() + "…"
    } else {
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_comments_are_skipped() {
        let mut parser = Parser::default();
        assert!(parser.push(b": keep-alive\n\nevent: step_sta").is_empty());
        let events = parser
            .push(b"rted\nid: 7\ndata: {\"a\":1}\n\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n");
        assert_eq!(
            events,
            vec![
                Event {
                    event: "step_started".into(),
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                Event {
                    event: "x".into(),
                    id: None,
                    data: "one\ntwo".into()
                },
            ]
        );
    }

    #[test]
    fn the_run_end_gives_the_exit_code() {
        let mut printer = Printer::new("r1", false);
        let finished = |status: &str| Event {
            event: "run_finished".into(),
            id: Some("9".into()),
            data:
                serde_json::json!({"seq": 9, "at": "2026-01-01T00:00:00Z", "kind": "run_finished",
                "run_id": "r1", "body": {"status": status}})
                .to_string(),
        };
        assert_eq!(printer.event(&finished("succeeded")), Some(0));
        assert_eq!(printer.event(&finished("rolled_back")), Some(EXIT_FAILED));
        assert_eq!(printer.event(&finished("cancelled")), Some(EXIT_FAILED));
    }
}
