//! Process counters, exposed in the Prometheus text format on `/metrics`. Written by hand:
//! a handful of atomics needs no metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const BUCKETS_MS: [u64; 8] = [5, 10, 25, 50, 100, 250, 1000, 5000];

#[derive(Default)]
pub struct Metrics {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub duplicates: AtomicU64,
    pub failures: AtomicU64,
    pub sessions_started: AtomicU64,
    report_count: AtomicU64,
    report_micros: AtomicU64,
    report_buckets: [AtomicU64; 8],
}

impl Metrics {
    pub fn observe_report(&self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros() as u64;
        self.report_count.fetch_add(1, Relaxed);
        self.report_micros.fetch_add(us, Relaxed);
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if us <= b * 1000 {
                self.report_buckets[i].fetch_add(1, Relaxed);
            }
        }
    }

    pub fn render(&self, sessions_active: Option<u64>) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "koji_messages_recorded_total",
            "Inbound messages recorded.",
            self.messages_in.load(Relaxed),
        );
        counter(
            "koji_replies_total",
            "Replies recorded and delivered.",
            self.messages_out.load(Relaxed),
        );
        counter(
            "koji_duplicates_total",
            "Platform retries recognised and not answered again.",
            self.duplicates.load(Relaxed),
        );
        counter(
            "koji_failures_total",
            "Messages that could not be recorded (the channel was asked to retry).",
            self.failures.load(Relaxed),
        );
        counter(
            "koji_sessions_started_total",
            "Sessions started.",
            self.sessions_started.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP koji_report_duration_seconds Time to build a report.\n# TYPE koji_report_duration_seconds histogram"
        );
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                s,
                "koji_report_duration_seconds_bucket{{le=\"{}\"}} {}",
                *b as f64 / 1000.0,
                self.report_buckets[i].load(Relaxed)
            );
        }
        let count = self.report_count.load(Relaxed);
        let _ = writeln!(
            s,
            "koji_report_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "koji_report_duration_seconds_sum {}",
            self.report_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "koji_report_duration_seconds_count {count}");
        if let Some(n) = sessions_active {
            let _ = writeln!(
                s,
                "# HELP koji_sessions_active Sessions active now.\n# TYPE koji_sessions_active gauge\nkoji_sessions_active {n}"
            );
        }
        s
    }
}
