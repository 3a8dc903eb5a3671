//! `incidents:`: the correlator's settings compile (group labels, inhibition matchers, flapping).

use super::Report;
use crate::incident::correlate::Settings;

/// The settings, or `None` after reporting why they do not compile.
pub(crate) fn check(report: &mut Report) -> Option<Settings> {
    match Settings::compile(&report.config.incidents) {
        Ok(settings) => Some(settings),
        Err((field, message)) => {
            report.error("incidents", None, &field, message, None);
            None
        }
    }
}
