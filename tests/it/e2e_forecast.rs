//! End to end through a real Prometheus, for predictive scaling: a demand gauge climbs steadily;
//! the daemon's forecast sees it will reach the capacity within the horizon, raises
//! `CapacityForecast`, and a rule on it runs the scale step while the demand is still under the
//! capacity.

use std::sync::Arc;
use std::time::Duration;

use homeostat_core::Status;
use homeostat_store::{EventQuery, Store};

use crate::support::{base_config, scrape_config, wait_for, Daemon, Prometheus, ScrapeTarget};

/// The demand grows by this much per second.
const SLOPE: f64 = 2.0;
const CAPACITY: f64 = 100.0;

fn homeostat_config(
    dir: &std::path::Path,
    prometheus: &Prometheus,
    scaled: &std::path::Path,
) -> String {
    // The summary goes in as an argument, not into the script: it holds backticks and brackets.
    let script = format!("echo \"scaled checkout: $1\" >> '{}'", scaled.display());
    base_config(dir, "normal")
        + &format!(
            r#"prometheus: {{url: {url:?}}}
forecasts:
  - name: checkout-demand
    query: homeostat_e2e_up
    capacity: {CAPACITY}
    horizon_secs: 30
    history_secs: 60
    step_secs: 1
    interval_secs: 2
    labels: {{severity: ticket}}
rules:
  - name: scale-checkout-ahead
    match: ['alertname="CapacityForecast"', 'forecast="checkout-demand"']
    target: "{{{{ labels.service }}}}"
    steps:
      - name: scale
        action: exec
        with:
          command: ["/bin/sh", "-c", {script:?}, "scale", "{{{{ annotations.summary }}}}"]
          shell: false
        timeout_secs: 10
"#,
            url = prometheus.url("")
        )
}

#[tokio::test]
async fn a_rising_demand_is_scaled_for_before_it_reaches_the_capacity() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let scaled = dir.path().join("scaled.log");
    let target = Arc::new(ScrapeTarget::start(0.0).await);
    let prometheus = Prometheus::start(&scrape_config(target.port), "groups: []\n", &[]).await;
    // The demand climbs from 0, reaching the capacity after CAPACITY / SLOPE = 50 s.
    let climbing = {
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            let mut demand = 0.0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                demand += SLOPE / 10.0;
                target.set(demand);
            }
        })
    };
    let daemon = Daemon::start(
        dir.path(),
        "homeostat",
        &homeostat_config(dir.path(), &prometheus, &scaled),
    )
    .await;
    let context = || {
        format!(
            "scaled: {:?}\n--- homeostat stderr:\n{}\n--- prometheus stderr:\n{}",
            std::fs::read_to_string(&scaled).unwrap_or_default(),
            daemon.stderr_tail(),
            prometheus.stderr_tail()
        )
    };
    // The scale step runs, and when it does the demand is still under the capacity.
    let scaled_at = wait_for(
        "the scale step",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(&scaled)
                .ok()
                .filter(|text| !text.is_empty())
                .map(|_| current(&target))
        },
        &context,
    )
    .await;
    climbing.abort();
    assert!(
        scaled_at < CAPACITY,
        "scaled only at demand {scaled_at}, the capacity {CAPACITY} already reached\n{}",
        context()
    );
    let text = std::fs::read_to_string(&scaled).unwrap_or_default();
    assert!(
        text.contains("`checkout-demand` is forecast to reach its capacity 100"),
        "{text}"
    );
    eprintln!(
        "scaled at demand {scaled_at:.1}, {:.0} s before the capacity",
        (CAPACITY - scaled_at) / SLOPE
    );

    let store = homeostat_store::sqlite::SqliteStore::open(
        &dir.path().join("homeostat.db"),
        homeostat_core::config::Synchronous::Normal,
    )
    .await
    .expect("open the daemon's store");
    let events = store
        .events(&EventQuery {
            limit: 10,
            source: Some("forecast".into()),
            ..Default::default()
        })
        .await
        .expect("read the events");
    let fired = events
        .iter()
        .find(|record| record.event.status == Status::Firing)
        .expect("a firing forecast event");
    let data = fired.event.data.as_ref().expect("the forecast's numbers");
    assert!(data["lead_secs"].as_i64().unwrap() > 0, "{data}");
    assert_eq!(fired.event.labels["alertname"], "CapacityForecast");
}

fn current(target: &ScrapeTarget) -> f64 {
    target.value()
}
