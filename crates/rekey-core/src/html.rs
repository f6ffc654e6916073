//! `rekey scan --format html`: the report as one self-contained page.

use crate::report::ScanReport;

/// The whole page: no external fetch, every value escaped.
pub fn render(report: &ScanReport) -> String {
    let s = &report.summary;
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rekey scan</title></head><body>\n\
         <h1>IAM.3 access key scan</h1>\n<p id=\"summary\" data-failed=\"{}\" data-warning=\"{}\" data-suppressed=\"{}\" data-passed=\"{}\">{} keys</p>\n</body></html>\n",
        s.failed, s.warning, s.suppressed, s.passed, s.keys
    )
}
