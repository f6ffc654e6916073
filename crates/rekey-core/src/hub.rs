//! What rekey tells Security Hub about a user's IAM.3 finding: a workflow
//! status and a note. The rules here decide which status change applies to
//! a finding in which state, so a notice never reopens a suppressed finding
//! and an expired exemption never reopens a finding Security Hub resolved.

use serde::{Deserialize, Serialize};

/// Security Hub's workflow statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Workflow {
    New,
    Notified,
    Suppressed,
    Resolved,
}

impl Workflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::New => "NEW",
            Workflow::Notified => "NOTIFIED",
            Workflow::Suppressed => "SUPPRESSED",
            Workflow::Resolved => "RESOLVED",
        }
    }

    /// Whether setting `self` on a finding now in `current` is rekey's to
    /// do; when it is not, only the note is added.
    /// - NOTIFIED marks a NEW finding: a suppressed or resolved one stays so.
    /// - NEW (an exemption ended) reopens only a SUPPRESSED finding.
    /// - SUPPRESSED is a person's decision and applies to any finding.
    pub fn applies_to(self, current: Workflow) -> bool {
        match self {
            Workflow::Notified => current == Workflow::New,
            Workflow::New => current == Workflow::Suppressed,
            Workflow::Suppressed => true,
            Workflow::Resolved => current != Workflow::Resolved,
        }
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Workflow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "NEW" => Ok(Workflow::New),
            "NOTIFIED" => Ok(Workflow::Notified),
            "SUPPRESSED" => Ok(Workflow::Suppressed),
            "RESOLVED" => Ok(Workflow::Resolved),
            other => Err(format!("unknown workflow status {other:?} (expected NEW, NOTIFIED, SUPPRESSED or RESOLVED)")),
        }
    }
}

/// Security Hub's limit on a note's text.
pub const NOTE_MAX_CHARS: usize = 512;

/// `text` cut to Security Hub's note limit on a character boundary, marked
/// with "…" when cut.
pub fn note_text(text: &str) -> String {
    crate::asff::truncate_chars(text, NOTE_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Workflow::*;

    #[test]
    fn status_changes_that_are_rekeys_to_make() {
        assert!(Notified.applies_to(New));
        assert!(!Notified.applies_to(Suppressed), "a notice never unsuppresses");
        assert!(!Notified.applies_to(Resolved));
        assert!(New.applies_to(Suppressed));
        assert!(!New.applies_to(Resolved), "an expired exemption leaves a resolved finding alone");
        assert!(!New.applies_to(Notified));
        for current in [New, Notified, Suppressed, Resolved] {
            assert!(Suppressed.applies_to(current));
        }
    }

    #[test]
    fn statuses_round_trip() {
        for w in [New, Notified, Suppressed, Resolved] {
            assert_eq!(w.as_str().parse::<Workflow>(), Ok(w));
        }
        assert!("OPEN".parse::<Workflow>().is_err());
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(note_text("short"), "short");
        let long = "é".repeat(600);
        let cut = note_text(&long);
        assert_eq!(cut.chars().count(), NOTE_MAX_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(NOTE_MAX_CHARS);
        assert_eq!(note_text(&exact), exact);
    }
}
