//! `rekey run --metrics FILE`: the state of the rotations as Prometheus
//! text-format gauges, for a scheduled job to be watched (a node
//! exporter's textfile collector, a sidecar, a pushgateway script).

use crate::workflow::Stage;
use jiff::Timestamp;
use std::fmt::Write as _;

/// What one pass of `rekey run` saw and did.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauges {
    /// Unfinished rotations by stage (stages with none are written as 0).
    pub by_stage: Vec<(Stage, usize)>,
    pub blocked: usize,
    /// When the oldest unfinished rotation started.
    pub oldest_open: Option<Timestamp>,
    pub last_run: Timestamp,
    pub advanced: usize,
    pub errors: usize,
}

/// The exposition text: `# HELP`, `# TYPE` and samples, one gauge family
/// after another.
pub fn render(g: &Gauges) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let open_stages = Stage::ALL.into_iter().filter(|s| !s.is_terminal());
    let by_stage: Vec<_> = open_stages
        .map(|stage| {
            let n = g.by_stage.iter().find(|(s, _)| *s == stage).map_or(0, |(_, n)| *n);
            (format!("{{stage=\"{}\"}}", stage.as_str()), n as f64)
        })
        .collect();
    family("rekey_rotations", "Unfinished rotations by stage.", &by_stage);
    family("rekey_rotations_blocked", "Rotations waiting for a person (rekey status shows why).", &[(String::new(), g.blocked as f64)]);
    let oldest = g.oldest_open.map_or(0.0, |t| t.as_second() as f64);
    family("rekey_oldest_open_rotation_start_timestamp_seconds", "When the oldest unfinished rotation started (0: none).", &[(String::new(), oldest)]);
    family("rekey_last_run_timestamp_seconds", "When the last rekey run pass started.", &[(String::new(), g.last_run.as_second() as f64)]);
    family("rekey_last_run_advanced_rotations", "Rotations the last pass advanced.", &[(String::new(), g.advanced as f64)]);
    family("rekey_last_run_errors", "Rotations the last pass could not advance because of an error.", &[(String::new(), g.errors as f64)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_open_stage_has_a_sample_and_every_family_its_help_and_type() {
        let g = Gauges {
            by_stage: vec![(Stage::Draining, 3), (Stage::Blocked, 1)],
            blocked: 1,
            oldest_open: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            last_run: "2026-11-29T06:00:00Z".parse().unwrap(),
            advanced: 2,
            errors: 0,
        };
        let text = render(&g);
        assert!(text.contains("rekey_rotations{stage=\"draining\"} 3\n"), "{text}");
        assert!(text.contains("rekey_rotations{stage=\"blocked\"} 1\n"));
        assert!(text.contains("rekey_rotations{stage=\"planned\"} 0\n"));
        assert!(!text.contains("stage=\"completed\""), "finished stages are not gauges of work left");
        assert!(text.contains("rekey_oldest_open_rotation_start_timestamp_seconds 1793491200\n"));
        assert!(text.contains("rekey_last_run_timestamp_seconds 1795932000\n"));
        // Every sample line belongs to a family announced just before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.strip_suffix(" gauge").expect("a gauge").to_owned();
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
                line.rsplit(' ').next().unwrap().parse::<f64>().expect("a number");
            }
        }
    }
}
