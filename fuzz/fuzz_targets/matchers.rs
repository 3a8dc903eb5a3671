//! Fuzzes `homeostat_core::fuzzing::matchers`.
#![no_main]

// The init puts the default panic hook back in place of libFuzzer's, which aborts on every panic,
// even one that homeostat catches itself (the `cel` crate's, in `runbook::program`); a panic
// that escapes the harness still aborts the run and is reported as a crash.
libfuzzer_sys::fuzz_target!(init: drop(std::panic::take_hook()), |data: &[u8]| {
    homeostat_core::fuzzing::matchers(data)
});
