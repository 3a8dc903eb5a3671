//! Maps field paths such as `rules[2].steps[0].with.command` to line numbers in a YAML file.
//!
//! serde reports paths but not lines for most semantic errors (a bad matcher string is valid YAML), so
//! diagnostics look the line up here from the parser's event markers.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Receiver {
    frames: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Receiver {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.frames {
            match frame {
                Frame::Map { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    fn advance(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, line: usize) {
        let path = self.path();
        self.lines.entry(path).or_insert(line);
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        let in_key_position = matches!(self.frames.last(), Some(Frame::Map { key: None }));
        match event {
            Event::Scalar(value, ..) => {
                if in_key_position {
                    if let Some(Frame::Map { key }) = self.frames.last_mut() {
                        *key = Some(value.to_string());
                    }
                    self.record(line);
                } else {
                    self.record(line);
                    self.advance();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if !in_key_position {
                    self.record(line);
                }
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { key: None }
                } else {
                    Frame::Seq { index: 0 }
                };
                self.frames.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
                self.advance();
            }
            _ => {}
        }
    }
}

/// Line numbers (1-based) of every field path in a YAML document; empty if the text does not parse.
pub fn lines(text: &str) -> HashMap<String, usize> {
    let mut receiver = Receiver::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut receiver, false).is_err() {
        return HashMap::new();
    }
    receiver.lines
}

/// The line of `path`, or of its nearest ancestor that has one.
pub fn find(lines: &HashMap<String, usize>, path: &str) -> Option<usize> {
    let mut path = path.to_string();
    loop {
        if let Some(line) = lines.get(&path) {
            return Some(*line);
        }
        let cut = path.rfind(['.', '['])?;
        path.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_paths() {
        let text = "rules:\n  - name: a\n    match:\n      - 'x=\"1\"'\n      - bad\n    steps:\n      - name: s\n        with:\n          command: [a, b]\n";
        let lines = lines(text);
        assert_eq!(find(&lines, "rules[0].name"), Some(2));
        assert_eq!(find(&lines, "rules[0].match[1]"), Some(5));
        assert_eq!(find(&lines, "rules[0].steps[0].with.command"), Some(9));
        assert_eq!(find(&lines, "rules[0].steps[0].with.command[7]"), Some(9));
        assert_eq!(find(&lines, "rules[0].nope"), Some(2));
    }
}
