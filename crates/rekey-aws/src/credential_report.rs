//! The parser of the IAM credential report: columns found by name, every
//! row read or set aside with its reason, never a panic.

use jiff::Timestamp;
use rekey_core::model::whole_seconds;
use rekey_core::{AccessKey, AccountId, KeyStatus, LastUsed, User, UserName};

/// AWS spells "unknown" in several ways; rekey spells it `None`.
pub(crate) fn known(value: &str) -> Option<String> {
    match value.trim() {
        "" | "N/A" | "not_supported" | "no_information" => None,
        v => Some(v.to_owned()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the credential report is malformed: {0}")]
pub struct ReportError(String);

/// What the credential report says about an account.
#[derive(Debug, Default)]
pub struct CredentialReport {
    /// Users and keys, without key ids (the report has none).
    pub users: Vec<User>,
    /// Rows that could not be read; the rest of the report still holds.
    pub unreadable: Vec<UnreadableRow>,
    /// Set when the root user's row shows an active access key (IAM.4).
    pub root_with_active_key: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRow {
    /// The line of the CSV.
    pub line: u64,
    /// The user the row is about, when at least that could be read.
    pub user: Option<UserName>,
    pub problem: String,
}

/// Parses the credential report CSV. Columns are found by name, not
/// position. A row that cannot be read is listed in
/// [`CredentialReport::unreadable`] instead of failing the report; only a
/// header without the needed columns is an error. `taken` is when IAM
/// generated the report: a row dated after it is unreadable.
pub fn parse_credential_report(csv: &[u8], taken: Option<Timestamp>) -> Result<CredentialReport, ReportError> {
    // Flexible: rows with unquoted commas have more fields than the header.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(csv);
    let headers = reader.headers().map_err(|e| ReportError(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ReportError(format!("no column {name}")))
    };
    let user_col = column("user")?;
    let arn_col = column("arn")?;
    let key_columns = |n: u8| -> Result<[usize; 5], ReportError> {
        Ok([
            column(&format!("access_key_{n}_active"))?,
            column(&format!("access_key_{n}_last_rotated"))?,
            column(&format!("access_key_{n}_last_used_date"))?,
            column(&format!("access_key_{n}_last_used_service"))?,
            column(&format!("access_key_{n}_last_used_region"))?,
        ])
    };
    let key_cols = [key_columns(1)?, key_columns(2)?];
    let anchored = user_col == 0 && arn_col == 1;

    let mut report = CredentialReport::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                report.unreadable.push(UnreadableRow { line, user: None, problem: e.to_string() });
                continue;
            }
        }
        let fields = match row_fields(&record, headers.len(), anchored) {
            Ok(fields) => fields,
            Err(problem) => {
                report.unreadable.push(UnreadableRow { line, user: None, problem });
                continue;
            }
        };
        let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
        let name = field(user_col);
        let arn = field(arn_col);
        let account_id = AccountId::from_arn(arn);
        if name == "<root_account>" {
            let active = key_cols.iter().any(|[active, ..]| field(*active) == "true");
            if active {
                report.root_with_active_key = account_id;
            }
            continue;
        }
        let user = name.parse::<UserName>().ok();
        let row = || -> Result<User, String> {
            let user = user.clone().ok_or_else(|| format!("bad user name {name:?}"))?;
            let account_id = account_id.clone().ok_or_else(|| format!("bad ARN {arn:?}"))?;
            // A row whose fields slid (a name or path with bare commas, cut
            // short) can still have as many fields as the header.
            if !arn.ends_with(&format!("/{name}")) {
                return Err(format!("ARN {arn:?} is not the ARN of user {name:?}"));
            }
            let mut keys = Vec::new();
            // A date after the report was taken, or a status IAM does not
            // have, is a broken row, not a fact to act on.
            let dated = |text: &str| -> Result<Timestamp, String> {
                let at = parse_time(text)?;
                match taken {
                    Some(taken) if at > taken => Err(format!("time {text:?} is after the report was generated ({taken})")),
                    _ => Ok(at),
                }
            };
            for [active, rotated, used_at, service, region] in key_cols {
                let Some(created) = known(field(rotated)) else { continue };
                keys.push(AccessKey {
                    id: None,
                    status: match field(active) {
                        "true" => KeyStatus::Active,
                        "false" => KeyStatus::Inactive,
                        other => return Err(format!("key status {other:?} is neither true nor false")),
                    },
                    created_at: dated(&created)?,
                    last_used: LastUsed {
                        at: known(field(used_at)).map(|t| dated(&t)).transpose()?,
                        service: known(field(service)),
                        region: known(field(region)),
                    },
                });
            }
            Ok(User { account_id, name: user, arn: arn.to_owned(), tags: None, groups: None, keys })
        };
        match row() {
            Ok(u) => report.users.push(u),
            Err(problem) => report.unreadable.push(UnreadableRow { line, user, problem }),
        }
    }
    Ok(report)
}

/// The row's fields, one per header column. IAM user names (and paths) may
/// hold `,`, which a writer that does not quote leaves bare; `user` and
/// `arn` are then the first two columns, the ARN starts with `arn:` (a name
/// cannot hold `:`), and every later column is comma-free, so the extra
/// fields are put back together around that anchor.
fn row_fields(record: &csv::StringRecord, columns: usize, anchored: bool) -> Result<Vec<String>, String> {
    let fields: Vec<&str> = record.iter().collect();
    if fields.len() == columns {
        return Ok(fields.into_iter().map(str::to_owned).collect());
    }
    let unreadable = || format!("{} fields where the header has {columns}", fields.len());
    if !anchored || fields.len() < columns {
        return Err(unreadable());
    }
    let rest = fields.len() - (columns - 2);
    let arn_at = fields.iter().position(|f| f.starts_with("arn:")).filter(|&a| a >= 1 && a < rest).ok_or_else(unreadable)?;
    let user = fields[..arn_at].join(",");
    let arn = fields[arn_at..rest].join(",");
    if !arn.ends_with(&format!("/{user}")) {
        return Err(unreadable());
    }
    Ok([user, arn].into_iter().chain(fields[rest..].iter().map(|f| (*f).to_owned())).collect())
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>()
        .map(whole_seconds)
        .map_err(|e| format!("bad time {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    #[test]
    fn parses_keys_and_unknowns() {
        let csv = format!(
            "{HEADER}\n\
<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,not_supported,not_supported,true,true,2020-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
ci,arn:aws:iam::123456789012:user/ci/ci,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-01-01T10:00:00+00:00,2026-11-27T08:00:00+00:00,us-east-1,s3,false,2026-02-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A\n\
nokeys,arn:aws:iam::123456789012:user/nokeys,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
moto,arn:aws:iam::123456789012:user/moto,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2026-03-01T00:00:00+00:00,2026-03-02T00:00:00+00:00,not_supported,not_supported,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
        );
        let report = parse_credential_report(csv.as_bytes(), None).unwrap();
        assert_eq!(report.root_with_active_key, Some(AccountId::new("123456789012")), "IAM.4");
        assert!(report.unreadable.is_empty());
        let users = report.users;
        assert_eq!(users.len(), 3, "root row skipped");
        let ci = &users[0];
        assert_eq!(ci.name.as_str(), "ci");
        assert_eq!(ci.account_id.as_str(), "123456789012");
        assert_eq!(ci.keys.len(), 2);
        assert_eq!(ci.keys[0].status, KeyStatus::Active);
        assert_eq!(ci.keys[0].created_at, "2026-01-01T10:00:00Z".parse().unwrap());
        assert_eq!(ci.keys[0].last_used.service.as_deref(), Some("s3"));
        assert_eq!(ci.keys[1].status, KeyStatus::Inactive);
        assert_eq!(ci.keys[1].last_used, LastUsed::default());
        assert!(users[1].keys.is_empty());
        let moto = &users[2].keys[0];
        assert_eq!(moto.last_used.at, Some("2026-03-02T00:00:00Z".parse().unwrap()));
        assert_eq!((moto.last_used.service.as_ref(), moto.last_used.region.as_ref()), (None, None));
    }

    #[test]
    fn columns_are_found_by_name() {
        let csv = "arn,user,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service\n\
arn:aws:iam::123456789012:user/x,x,false,N/A,N/A,N/A,N/A,true,2026-01-01T00:00:00+00:00,no_information,N/A,N/A\n";
        let users = parse_credential_report(csv.as_bytes(), None).unwrap().users;
        assert_eq!(users[0].name.as_str(), "x");
        assert_eq!(users[0].keys.len(), 1);
        assert_eq!(users[0].keys[0].last_used.at, None);
    }

    #[test]
    fn a_header_without_the_columns_is_an_error() {
        assert!(parse_credential_report(b"user,arn\nx,arn:aws:iam::123456789012:user/x\n", None).is_err());
    }

    fn row(name: &str, arn: &str, rotated: &str) -> String {
        format!("{name},{arn},2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,{rotated},N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n")
    }

    #[test]
    fn names_with_commas_read_quoted_or_not() {
        // Regression: moto writes `a,b` bare, and the whole report failed.
        let bare = row("a,b", "arn:aws:iam::123456789012:user/x,y/a,b", "2026-01-01T00:00:00+00:00");
        let quoted = row("\"a,b\"", "\"arn:aws:iam::123456789012:user/x,y/a,b\"", "2026-01-01T00:00:00+00:00");
        let plain = row("c", "arn:aws:iam::123456789012:user/c", "2026-02-01T00:00:00+00:00");
        for a_row in [bare, quoted] {
            let report = parse_credential_report(format!("{HEADER}\n{a_row}{plain}").as_bytes(), None).unwrap();
            assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
            let names: Vec<_> = report.users.iter().map(|u| u.name.as_str()).collect();
            assert_eq!(names, ["a,b", "c"]);
            assert_eq!(report.users[0].arn, "arn:aws:iam::123456789012:user/x,y/a,b");
            assert_eq!(report.users[0].keys[0].created_at, "2026-01-01T00:00:00Z".parse().unwrap());
        }
    }

    #[test]
    fn an_odd_row_is_set_aside_and_the_rest_read() {
        let csv = format!(
            "{HEADER}\n{}{}{}{}",
            row("bad-time", "arn:aws:iam::123456789012:user/bad-time", "yesterday"),
            row("a,b", "arn:aws:iam::123456789012:user/other", "2026-01-01T00:00:00+00:00"),
            "short,arn:aws:iam::123456789012:user/short,true\n",
            row("ok", "arn:aws:iam::123456789012:user/ok", "2026-01-01T00:00:00+00:00"),
        );
        let report = parse_credential_report(csv.as_bytes(), None).unwrap();
        assert_eq!(report.users.len(), 1);
        assert_eq!(report.users[0].name.as_str(), "ok");
        let odd: Vec<_> = report.unreadable.iter().map(|r| (r.line, r.user.as_ref().map(UserName::as_str))).collect();
        assert_eq!(odd, [(2, Some("bad-time")), (3, None), (4, None)]);
        assert!(report.unreadable[0].problem.contains("yesterday"), "{:?}", report.unreadable[0]);
    }

    #[test]
    fn a_row_dated_after_the_report_or_with_an_unknown_status_is_unreadable() {
        let key = |active: &str, rotated: &str, used: &str| {
            format!("{active},{rotated},{used},us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A")
        };
        let row = |name: &str, k: String| format!("{name},arn:aws:iam::123456789012:user/{name},2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,{k}\n");
        let csv = format!(
            "{HEADER}\n{}{}{}{}",
            row("future", key("true", "2999-01-01T00:00:00+00:00", "N/A")),
            row("used-later", key("true", "2026-01-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00")),
            row("perhaps", key("perhaps", "2026-01-01T00:00:00+00:00", "N/A")),
            row("ok", key("false", "2026-01-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")),
        );
        let taken: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let report = parse_credential_report(csv.as_bytes(), Some(taken)).unwrap();
        assert_eq!(report.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(report.users[0].keys[0].status, KeyStatus::Inactive);
        let problems: Vec<_> = report.unreadable.iter().map(|r| (r.user.as_ref().unwrap().as_str(), r.problem.as_str())).collect();
        assert!(problems[0].1.contains("after the report was generated"), "{problems:?}");
        assert!(problems[1].1.contains("after the report was generated"), "{problems:?}");
        assert!(problems[2].1.contains("\"perhaps\" is neither true nor false"), "{problems:?}");
        let without_taken = parse_credential_report(csv.as_bytes(), None).unwrap();
        assert_eq!(without_taken.users.len(), 3, "without the report's time, only the status is checked");
    }

    /// Property tests (`PROPTEST_CASES` cases each; bench/fuzz.sh runs 10⁶):
    /// hostile bytes never panic, generated reports in either of IAM's styles
    /// read back as built, and a report cut anywhere reads a correct prefix.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::{select, Index};

        /// How a report spells "unknown" (IAM, moto, or an empty field).
        const UNKNOWN: [&str; 4] = ["N/A", "not_supported", "no_information", ""];

        /// What rows are made of, to build odd ones from.
        const ROW_PIECES: [&str; 16] =
            [",", "\"", "\n", "\r", " ", "a", "0", "/", ":", "arn:", "arn:aws:iam::123456789012:user/", "true", "N/A", "<root_account>", "2026-01-01T00:00:00+00:00", "\u{e9}"];

        #[derive(Debug, Clone)]
        enum Cell<T> {
            Known(T),
            Unknown(&'static str),
        }

        impl<T: Clone> Cell<T> {
            fn known(&self) -> Option<T> {
                match self {
                    Cell::Known(v) => Some(v.clone()),
                    Cell::Unknown(_) => None,
                }
            }
        }

        fn cell<T: Clone + std::fmt::Debug>(known: impl Strategy<Value = T>) -> impl Strategy<Value = Cell<T>> {
            prop_oneof![3 => known.prop_map(Cell::Known), 1 => select(UNKNOWN.as_slice()).prop_map(Cell::Unknown)]
        }

        /// Year 1 to the last second jiff holds (in 9999), as IAM writes times: long past or far future.
        fn time() -> impl Strategy<Value = Timestamp> {
            (-62_135_596_800i64..=Timestamp::MAX.as_second()).prop_map(|s| Timestamp::from_second(s).unwrap())
        }

        fn time_text(cell: &Cell<Timestamp>) -> String {
            match cell {
                Cell::Known(t) => t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
                Cell::Unknown(u) => (*u).to_owned(),
            }
        }

        fn word_text(cell: &Cell<String>) -> String {
            match cell {
                Cell::Known(w) => w.clone(),
                Cell::Unknown(u) => (*u).to_owned(),
            }
        }

        /// One access-key slot of a row; no key when `rotated` is unknown.
        #[derive(Debug, Clone)]
        struct Slot {
            active: bool,
            rotated: Cell<Timestamp>,
            used_at: Cell<Timestamp>,
            service: Cell<String>,
            region: Cell<String>,
        }

        fn slot() -> impl Strategy<Value = Slot> {
            (any::<bool>(), cell(time()), cell(time()), cell("[a-z0-9-]{1,12}"), cell("[a-z0-9-]{1,14}"))
                .prop_map(|(active, rotated, used_at, service, region)| Slot { active, rotated, used_at, service, region })
        }

        #[derive(Debug, Clone)]
        struct Row {
            /// Any IAM user name, commas included.
            name: String,
            /// An IAM path, commas included.
            path: String,
            account: String,
            slots: [Slot; 2],
        }

        fn row() -> impl Strategy<Value = Row> {
            ("[A-Za-z0-9+=,.@_-]{1,64}", "/([A-Za-z0-9,._-]{1,8}/){0,2}", "[0-9]{12}", slot(), slot())
                .prop_map(|(name, path, account, a, b)| Row { name, path, account, slots: [a, b] })
        }

        impl Row {
            fn arn(&self) -> String {
                format!("arn:aws:iam::{}:user{}{}", self.account, self.path, self.name)
            }

            /// The 22 fields in the order of [`HEADER`].
            fn fields(&self) -> Vec<String> {
                let mut fields = vec![self.name.clone(), self.arn(), "2020-01-01T00:00:00+00:00".into()];
                fields.extend(["false", "N/A", "N/A", "N/A", "false"].map(String::from));
                for s in &self.slots {
                    fields.push(s.active.to_string());
                    fields.push(time_text(&s.rotated));
                    fields.push(time_text(&s.used_at));
                    fields.push(word_text(&s.region));
                    fields.push(word_text(&s.service));
                }
                fields.extend(["false", "N/A", "false", "N/A"].map(String::from));
                fields
            }

            fn user(&self) -> User {
                let keys = self
                    .slots
                    .iter()
                    .filter_map(|s| {
                        Some(AccessKey {
                            id: None,
                            status: if s.active { KeyStatus::Active } else { KeyStatus::Inactive },
                            created_at: s.rotated.known()?,
                            last_used: LastUsed { at: s.used_at.known(), service: s.service.known(), region: s.region.known() },
                        })
                    })
                    .collect();
                User { account_id: AccountId::new(&self.account), name: UserName::new(&self.name), arn: self.arn(), tags: None, groups: None, keys }
            }
        }

        #[derive(Debug, Clone)]
        struct Report {
            /// IAM sometimes quotes every field, sometimes none.
            quoted: bool,
            quoted_header: bool,
            eol: &'static str,
            final_eol: bool,
            /// The root user's row, if any: its account and whether its key is active.
            root: Option<(String, bool)>,
            rows: Vec<Row>,
        }

        fn report() -> impl Strategy<Value = Report> {
            (
                any::<bool>(),
                any::<bool>(),
                select(["\n", "\r\n"].as_slice()),
                any::<bool>(),
                proptest::option::of(("[0-9]{12}", any::<bool>())),
                prop::collection::vec(row(), 0..6),
            )
                .prop_map(|(quoted, quoted_header, eol, final_eol, root, rows)| Report { quoted, quoted_header, eol, final_eol, root, rows })
        }

        impl Report {
            fn text(&self) -> String {
                let line = |fields: Vec<String>, quoted: bool| {
                    let fields: Vec<String> = fields.into_iter().map(|f| if quoted { format!("\"{f}\"") } else { f }).collect();
                    fields.join(",")
                };
                let mut lines = vec![line(HEADER.split(',').map(String::from).collect(), self.quoted_header)];
                if let Some((account, active)) = &self.root {
                    let mut fields = Row { name: String::new(), path: String::new(), account: account.clone(), slots: Default::default() }.fields();
                    fields[0] = "<root_account>".into();
                    fields[1] = format!("arn:aws:iam::{account}:root");
                    fields[8] = active.to_string();
                    lines.push(line(fields, self.quoted));
                }
                lines.extend(self.rows.iter().map(|r| line(r.fields(), self.quoted)));
                let mut text = lines.join(self.eol);
                if self.final_eol {
                    text.push_str(self.eol);
                }
                text
            }

            fn users(&self) -> Vec<User> {
                self.rows.iter().map(Row::user).collect()
            }

            fn root_with_active_key(&self) -> Option<AccountId> {
                self.root.as_ref().filter(|(_, active)| *active).map(|(account, _)| AccountId::new(account))
            }
        }

        impl Default for Slot {
            fn default() -> Self {
                let (time, word) = (Cell::Unknown("N/A"), Cell::Unknown("N/A"));
                Slot { active: false, rotated: time.clone(), used_at: time, service: word.clone(), region: word }
            }
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse_credential_report(&bytes, None);
            }

            #[test]
            fn arbitrary_rows_under_a_good_header_never_panic(pieces in prop::collection::vec(select(ROW_PIECES.as_slice()), 0..200)) {
                let _ = parse_credential_report(format!("{HEADER}\n{}", pieces.concat()).as_bytes(), None);
            }

            #[test]
            fn mutated_reports_never_panic(report in report(), edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8)) {
                let mut bytes = report.text().into_bytes();
                for (at, byte) in edits {
                    let at = at.index(bytes.len() + 1);
                    match byte % 3 {
                        0 => bytes.insert(at, byte),
                        1 if at < bytes.len() => { bytes.remove(at); }
                        _ if at < bytes.len() => bytes[at] = byte,
                        _ => bytes.push(byte),
                    }
                }
                let _ = parse_credential_report(&bytes, None);
            }

            #[test]
            fn well_formed_reports_read_as_built(report in report()) {
                let parsed = parse_credential_report(report.text().as_bytes(), None).unwrap();
                prop_assert_eq!(&parsed.unreadable, &[]);
                prop_assert_eq!(parsed.users, report.users());
                prop_assert_eq!(parsed.root_with_active_key, report.root_with_active_key());
            }

            #[test]
            fn a_cut_report_reads_a_correct_prefix_or_fails(report in report(), cut in any::<Index>()) {
                let text = report.text();
                let cut = cut.index(text.len() + 1);
                if let Ok(parsed) = parse_credential_report(&text.as_bytes()[..cut], None) {
                    let users = report.users();
                    prop_assert!(users.starts_with(&parsed.users), "cut at {}: {:?}", cut, parsed.users);
                    prop_assert!(parsed.unreadable.len() <= 1, "only the cut row: {:?}", parsed.unreadable);
                    let root = parsed.root_with_active_key;
                    prop_assert!(root.is_none() || root == report.root_with_active_key());
                }
            }
        }
    }
}
