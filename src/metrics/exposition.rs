//! The Prometheus text exposition format (version 0.0.4) of the [`Totals`].

use std::fmt::Write as _;

use super::shared::{Totals, LATENCY_BOUNDS_US};
use super::RestartReason;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `totals`, plus the number of live workers, as Prometheus text.
pub fn render(totals: &Totals, workers: usize) -> String {
    let mut out = String::with_capacity(4096);
    help(
        &mut out,
        "tidegate_requests_total",
        "counter",
        "Requests answered (by the application or a --static file), by status class.",
    );
    for (class, count) in totals.responses.iter().enumerate() {
        let _ = writeln!(
            out,
            "tidegate_requests_total{{code=\"{}xx\"}} {count}",
            class + 1
        );
    }
    help(
        &mut out,
        "tidegate_request_duration_seconds",
        "histogram",
        "Time from a request's head to the end of its response.",
    );
    let mut cumulative = 0;
    for (index, count) in totals.latency_buckets.iter().enumerate() {
        cumulative += count;
        let bound = LATENCY_BOUNDS_US
            .get(index)
            .map_or_else(|| "+Inf".to_string(), |&us| seconds(us));
        let _ = writeln!(
            out,
            "tidegate_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "tidegate_request_duration_seconds_sum {}\ntidegate_request_duration_seconds_count {cumulative}",
        seconds(totals.latency_sum_us)
    );
    sample(
        &mut out,
        "tidegate_requests_refused_total",
        "counter",
        "Requests refused before the application ran (malformed, over a limit, timed out).",
        totals.refused,
    );
    sample(
        &mut out,
        "tidegate_requests_in_flight",
        "gauge",
        "Requests handed to the application and not finished.",
        totals.in_flight.max(0),
    );
    sample(
        &mut out,
        "tidegate_connections_open",
        "gauge",
        "Open client connections.",
        totals.connections.max(0),
    );
    sample(
        &mut out,
        "tidegate_connections_total",
        "counter",
        "Client connections accepted.",
        totals.connections_total,
    );
    sample(
        &mut out,
        "tidegate_received_bytes_total",
        "counter",
        "Bytes read from clients (heads and bodies).",
        totals.bytes_in,
    );
    sample(
        &mut out,
        "tidegate_sent_bytes_total",
        "counter",
        "Bytes written to clients (heads and bodies).",
        totals.bytes_out,
    );
    help(
        &mut out,
        "tidegate_worker_restarts_total",
        "counter",
        "Workers replaced, by reason.",
    );
    for reason in RestartReason::ALL {
        let _ = writeln!(
            out,
            "tidegate_worker_restarts_total{{reason=\"{}\"}} {}",
            reason.label(),
            totals.restarts(reason)
        );
    }
    help(
        &mut out,
        "tidegate_gil_wait_seconds_total",
        "counter",
        "Time Python threads waited to take the GIL back to run a request.",
    );
    let _ = writeln!(
        out,
        "tidegate_gil_wait_seconds_total {}",
        nanos_as_seconds(totals.gil_wait_ns)
    );
    sample(
        &mut out,
        "tidegate_workers",
        "gauge",
        "Worker processes alive.",
        workers,
    );
    out
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, text: &str, value: impl std::fmt::Display) {
    help(out, name, kind, text);
    let _ = writeln!(out, "{name} {value}");
}

/// Microseconds as seconds, exactly (no float rounding: `0.0025`, not `0.0025000000000000001`).
fn seconds(micros: u64) -> String {
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        format!("{whole}.0")
    } else {
        let digits = format!("{fraction:06}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

fn nanos_as_seconds(nanos: u64) -> String {
    let (whole, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    format!("{whole}.{fraction:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimal_seconds() {
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1.0");
        assert_eq!(seconds(30_000_000), "30.0");
        assert_eq!(nanos_as_seconds(1_500_000_001), "1.500000001");
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut totals = Totals::default();
        totals.latency_buckets[0] = 2;
        totals.latency_buckets[3] = 1;
        totals.latency_buckets[LATENCY_BOUNDS_US.len()] = 1;
        totals.responses[1] = 4;
        let text = render(&totals, 2);
        assert!(text.contains("tidegate_request_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("tidegate_request_duration_seconds_bucket{le=\"0.01\"} 3\n"));
        assert!(text.contains("tidegate_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("tidegate_request_duration_seconds_count 4\n"));
        assert!(text.contains("tidegate_requests_total{code=\"2xx\"} 4\n"));
        assert!(text.contains("tidegate_workers 2\n"));
    }
}
