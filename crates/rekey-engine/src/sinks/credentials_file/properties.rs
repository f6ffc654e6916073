//! Property tests of the editor ([`Doc`]) on generated credentials files
//! (`PROPTEST_CASES` cases each; bench/fuzz.sh runs 10⁶): editing one
//! profile changes no byte outside that profile's key lines, and botocore
//! (tests/fuzz/botocore_check.py) reads the result as meant. All keys are fake.

use super::doc::{valid_profile, Doc};
use rekey_core::{AccessKeyId, Credentials, Secret};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Section names as botocore reads them; "profile prod" is written
/// `[profile prod]`. Some files also get a `[DEFAULT]` section.
const NAMES: [&str; 7] = ["default", "app", "ci-1", "profile prod", "a b", "x.y", " spaced "];

/// Keys of a section: rekey's own (in two spellings) and others.
const ENTRY_KEYS: [&str; 8] =
    ["aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token", "AWS_Access_Key_ID", "region", "output", "s3"];

/// Where lines start: mostly nothing, sometimes odd whitespace.
const INDENTS: [&str; 6] = ["", "", "", " ", "\t", "\u{a0}"];

const DELIMITERS: [&str; 6] = ["=", " = ", "   =   ", ":", " : ", "= "];

/// Lines between entries: blank, comments of both styles, indented or not.
const FILLERS: [&str; 7] = ["", "   ", "# a comment", "; another", "  # indented = comment", "#", "; [not] a header"];

/// A value: key-like text, possibly with `=`, `:` or odd characters.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => "[A-Za-z0-9/+=]{0,24}",
        3 => "[A-Za-z0-9 :=#;\\[\\]]{0,12}",
        1 => select(["\r", "\u{1c}", "\u{a0}", "\u{e9}", " x "].as_slice()).prop_map(|odd| format!("v{odd}w")),
    ]
}

/// A key line, then its continuation lines (indented deeper), as texts.
fn entry() -> impl Strategy<Value = (String, Vec<String>)> {
    (select(INDENTS.as_slice()), select(ENTRY_KEYS.as_slice()), select(DELIMITERS.as_slice()), value(), prop::collection::vec(("[ \t]{1,4}", "[a-z_]{1,6}( = [a-z0-9]{1,4})?", any::<bool>()), 0..3))
        .prop_map(|(indent, key, delimiter, value, more)| {
            let continuations = more
                .into_iter()
                .map(|(extra, text, blank_before)| format!("{}{indent}{extra}{text}", if blank_before { "\n" } else { "" }))
                .collect();
            (format!("{indent}{key}{delimiter}{value}"), continuations)
        })
}

/// A section: its header line and body lines. Keys are unique, as
/// botocore requires, unless `duplicate` repeats one.
fn section(name: &'static str) -> impl Strategy<Value = Vec<String>> {
    let header = match name.strip_prefix("profile ") {
        Some(_) => select(vec![format!("[{name}]"), format!("[{name}]  ; prod")]),
        None => select(vec![format!("[{name}]"), format!("  [{name}]"), format!("[{name}]\t")]),
    };
    let body = prop::collection::vec(prop_oneof![3 => entry(), 1 => select(FILLERS.as_slice()).prop_map(|f| (f.to_owned(), vec![]))], 0..7);
    (header, body, prop::bool::weighted(0.03)).prop_map(|(header, body, duplicate)| {
        let mut seen = Vec::new();
        let mut lines = vec![header];
        for (line, continuations) in body {
            let key = line.split(['=', ':']).next().unwrap_or("").trim().to_lowercase();
            let is_entry = !line.trim().is_empty() && !line.trim().starts_with(['#', ';']);
            if is_entry && seen.contains(&key) && !duplicate {
                continue;
            }
            seen.push(key);
            lines.push(line);
            lines.extend(continuations.iter().flat_map(|c| c.split('\n').map(str::to_owned)));
        }
        lines
    })
}

/// A generated edit: the file, the profile to edit and the new key.
#[derive(Debug, Clone)]
struct Case {
    before: String,
    profile: String,
    id: String,
    secret: String,
}

fn case() -> impl Strategy<Value = Case> {
    let names = (prop::sample::subsequence(NAMES.to_vec(), 0..5), prop::bool::weighted(0.1))
        .prop_map(|(mut names, default)| {
            names.extend(default.then_some("DEFAULT"));
            names
        })
        .prop_shuffle();
    let file = names.prop_flat_map(|names| {
        let sections: Vec<_> = names.iter().map(|&n| section(n)).collect();
        (Just(names), prop::collection::vec(select(FILLERS.as_slice()), 0..3), sections, select(["\n", "\r\n"].as_slice()), any::<bool>(), prop::bool::weighted(0.05))
    });
    let file = file.prop_map(|(names, preamble, sections, eol, final_eol, mixed)| {
        let lines: Vec<String> = preamble.into_iter().map(str::to_owned).chain(sections.into_iter().flatten()).collect();
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            text.push_str(line);
            // A few files mix line endings.
            let eol = if mixed && i % 2 == 1 { "\n" } else { eol };
            if i + 1 < lines.len() || final_eol {
                text.push_str(eol);
            }
        }
        (names, text)
    });
    (file, any::<prop::sample::Index>(), "AKIA[A-Z0-9]{16}", "[A-Za-z0-9/+]{30,40}[=:]?").prop_map(|((names, before), pick, id, secret)| {
        // Mostly a profile of the file; sometimes one to append.
        let choices: Vec<String> = names.iter().map(|n| n.to_string()).filter(|n| valid_profile(n).is_ok()).chain(["new-profile".to_owned()]).collect();
        let profile = choices[pick.index(choices.len())].clone();
        Case { before, profile, id, secret }
    })
}

/// What an edit did: `None` when the editor refused the file or the edit.
struct Edit {
    rust: Vec<(String, [Option<String>; 4])>,
    after: Option<String>,
}

/// The edit, checked on rekey's side: no other line changed, and rekey
/// reads every other profile as before and the edited one as meant.
fn edit(case: &Case) -> Result<Edit, TestCaseError> {
    let path = Path::new("credentials");
    let Ok(doc) = Doc::new(path, case.before.clone()) else {
        return Ok(Edit { rust: Vec::new(), after: None });
    };
    let names: Vec<String> = NAMES.iter().chain(&["DEFAULT"]).map(|n| n.to_string()).chain([case.profile.clone()]).collect();
    let rust: Vec<_> = names.iter().filter_map(|n| Some((n.clone(), doc.values(n).ok()?))).collect();
    let creds = Credentials { access_key_id: AccessKeyId::new(&case.id), secret_access_key: Secret::new(&case.secret) };
    let mut edited = doc.clone();
    if edited.set_credentials(&case.profile, &creds).is_err() {
        return Ok(Edit { rust, after: None });
    }
    let after = edited.text();
    let reread = Doc::new(path, after.clone()).map_err(|e| TestCaseError::fail(format!("the edited file does not parse: {e}")))?;
    prop_assert_eq!(reread.values(&case.profile).ok(), Some([Some(case.id.clone()), Some(case.secret.clone()), None, None]));
    for (name, values) in &rust {
        if *name != case.profile {
            prop_assert_eq!(reread.values(name).ok(), Some(values.clone()), "profile [{}] changed", name);
        }
    }
    let mut kept_after = kept_lines(&reread, &after, &case.profile);
    if doc.entries(&case.profile).ok().flatten().is_none() {
        let header = kept_after.pop().unwrap_or_default();
        prop_assert_eq!(header.trim_end_matches(['\n', '\r']), format!("[{}]", case.profile), "a new profile goes at the end");
    }
    prop_assert_eq!(untouched(kept_lines(&doc, &case.before, &case.profile)), untouched(kept_after));
    Ok(Edit { rust, after: Some(after) })
}

/// The lines of `text`, with their line endings, that are not `profile`'s key lines.
fn kept_lines(doc: &Doc, text: &str, profile: &str) -> Vec<String> {
    let keys: Vec<usize> = doc.entries(profile).ok().flatten().map(|e| e.concat()).unwrap_or_default();
    text.split_inclusive('\n').enumerate().filter(|(i, _)| !keys.contains(i)).map(|(_, l)| l.to_owned()).collect()
}

/// Kept lines as an edit must keep them: byte for byte, except at the
/// end of the file, where the last line may gain a line ending (a line added
/// after it) or lose it (the lines after it removed, and the file still
/// ends without one).
fn untouched(kept: Vec<String>) -> String {
    kept.concat().trim_end_matches(['\n', '\r']).to_owned()
}

proptest! {
    #[test]
    fn editing_one_profile_changes_nothing_else(case in case()) {
        edit(&case)?;
    }
}

/// The same edits, each also read by botocore in one Python process
/// (REKEY_PYTHON, else python3; scripts/venv.sh sets it), which must find
/// no difference. Refusals are allowed, but must stay rare.
#[test]
fn botocore_reads_the_edits_as_meant() {
    let python = std::env::var("REKEY_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/botocore_check.py");
    let mut out = tempfile::tempfile().unwrap();
    let mut child = Command::new(&python).arg(&script).stdin(Stdio::piped()).stdout(out.try_clone().unwrap()).spawn().unwrap();
    let stdin = RefCell::new(std::io::BufWriter::new(child.stdin.take().unwrap()));
    let counts = RefCell::new((0u64, 0u64));
    let result = TestRunner::default().run(&case(), |case| {
        let edit = edit(&case)?;
        let rust: serde_json::Map<_, _> = edit.rust.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
        let line = serde_json::json!({"before": case.before, "after": edit.after, "profile": case.profile, "id": case.id, "secret": case.secret, "rust": rust});
        writeln!(stdin.borrow_mut(), "{line}").map_err(|e| TestCaseError::fail(format!("{python} stopped reading: {e}")))?;
        let mut counts = counts.borrow_mut();
        counts.0 += 1;
        counts.1 += u64::from(edit.after.is_none());
        Ok(())
    });
    drop(stdin.into_inner().into_inner().unwrap());
    let status = child.wait().unwrap();
    result.unwrap();
    assert!(status.success(), "{python} {} failed (botocore installed? source scripts/venv.sh)", script.display());
    let mut summary = String::new();
    out.seek(SeekFrom::Start(0)).and_then(|_| out.read_to_string(&mut summary)).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap_or_default();
    let (cases, refused) = counts.into_inner();
    eprintln!("botocore check: {cases} edits, {refused} refused by rekey, {} files botocore cannot read", summary["botocore_unreadable"]);
    assert_eq!(summary["cases"], cases, "{summary}");
    assert_eq!(summary["mismatch_count"], 0, "botocore reads an edit differently: {:#}", summary["mismatches"]);
    assert!(refused * 4 < cases, "rekey refused {refused} of {cases} generated files: the generator needs fixing");
}
