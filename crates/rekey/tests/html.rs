//! `rekey scan --format html` opened in a real browser: headless Chromium
//! (Debian's `/usr/bin/chromium`, installed by `scripts/install-test-deps.sh`)
//! loads the page from a file, runs its script, and the DOM it ends with is
//! checked against `rekey scan --format json` of the same keys.

mod support;

use rekey_emulator::{scenarios_dir, Emulator};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use support::{rekey, LONG};

const AS_OF: &str = "2026-11-28T12:00:00Z";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `rekey scan --format html --output` and `--format json` on the same
/// keys; returns the page's path (in `dir`) and the JSON.
fn scan(emu: &Emulator, dir: &Path) -> (PathBuf, Value) {
    let page = dir.join("scan.html");
    let common = ["scan", "--as-of", AS_OF, "--fail-on", "never"];
    let run = rekey(Some(emu), &[&common[..], &["--format", "html", "--output", page.to_str().unwrap()]].concat());
    assert_eq!(run.code, 0, "scan --format html: {}", run.stderr);
    let run = rekey(Some(emu), &[&common[..], &["--format", "json"]].concat());
    assert_eq!(run.code, 0, "scan --format json: {}", run.stderr);
    (page, run.json())
}

/// Fails, never skips, without Chromium: a test that silently passes
/// where the browser is missing checks nothing.
fn require_chromium() {
    assert!(Path::new(CHROMIUM).is_file(), "{CHROMIUM} is missing: run scripts/install-test-deps.sh (as root) to install it");
}

/// Headless Chromium on `url` with `args`, a fresh profile in `dir`; its
/// stdout. Its own process group, killed by that id if it outlives [`LONG`]
/// (a busy machine makes it slow; a hung one must not hang the tests).
fn chromium(dir: &Path, args: &[&str], url: &str) -> String {
    require_chromium();
    let profile = tempfile::tempdir_in(dir).expect("profile dir");
    let (stdout, stderr) = (dir.join("chromium.out"), dir.join("chromium.err"));
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll chromium") {
            break status;
        }
        if started.elapsed() > LONG {
            // The browser and its renderers, by the group's id.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!("chromium {args:?} still running after {LONG:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "chromium {args:?} {url}: {status}\n{err}");
    std::fs::read_to_string(&stdout).expect("chromium output")
}

/// The DOM after the page's script ran, as Chromium serialises it.
fn open(dir: &Path, page: &Path, fragment: &str) -> String {
    let dom = chromium(dir, &["--dump-dom"], &format!("file://{}{fragment}", page.display()));
    assert!(
        dom.contains("<html lang=\"en\" data-js=\"ready\">"),
        "the page's script did not run (is SCRIPT_SHA256 in html.rs the hash of SCRIPT?):\n{}",
        dom.chars().take(800).collect::<String>()
    );
    dom
}

/// The start tags named `<{name} ` whose attribute `class` starts with
/// `class`, in document order.
fn tags<'a>(html: &'a str, name: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<{name} class=\"{class}");
    html.match_indices(&open).map(|(at, _)| &html[at..at + html[at..].find('>').unwrap() + 1]).collect()
}

/// An attribute of a start tag, unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(value.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
}

/// The text of the element with `id` (up to its first child tag).
fn text_by_id(html: &str, id: &str) -> String {
    let at = html.find(&format!(" id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let text = &html[at..];
    let text = &text[text.find('>').unwrap() + 1..];
    text[..text.find('<').unwrap()].to_owned()
}

fn visible<'a>(rows: &[&'a str]) -> Vec<&'a str> {
    rows.iter().copied().filter(|r| attr(r, "hidden").is_none()).collect()
}

/// The values of `src` and `href` attributes that name a network URL:
/// the CSP would block them, but the page should not even try.
fn network_urls(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    [" src=", " href="]
        .iter()
        .flat_map(|a| {
            lower.match_indices(a).map(|(at, _)| {
                let value = lower[at + a.len()..].trim_start_matches(['"', '\'']);
                value[..value.find(['"', '\'', ' ', '>']).unwrap_or(value.len())].to_owned()
            })
        })
        .filter(|v| v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//"))
        .collect()
}

#[test]
fn the_page_in_chromium_matches_the_json_scan() {
    let started = Instant::now();
    require_chromium();
    let emu = Emulator::with_scenario_file(&scenarios_dir().join("mixed.json"), Some(AS_OF));
    let dir = tempfile::tempdir().expect("temp dir");
    let (page, scan) = scan(&emu, dir.path());
    let summary = &scan["summary"];
    let keys = scan["keys"].as_array().expect("keys");

    // The file as written: everything is there without JavaScript.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"));
    assert_eq!(network_urls(&html), Vec::<String>::new(), "nothing fetched");
    let rows = tags(&html, "tr", "key ");
    assert_eq!((rows.len(), visible(&rows).len()), (keys.len(), keys.len()), "every key shown without JavaScript");
    assert!(html.contains("<div id=\"filters\" hidden>"), "no dead filters without JavaScript");

    // After the script: totals as in JSON, one row per key, worst first.
    let dom = open(dir.path(), &page, "");
    for (id, field) in [
        ("failed", "failed"), ("warning", "warning"), ("suppressed", "suppressed"), ("passed", "passed"),
        ("keys", "keys"), ("users", "users"), ("users-failed", "users_failed"), ("users-warning", "users_warning"),
    ] {
        assert_eq!(text_by_id(&dom, &format!("total-{id}")), summary[field].to_string(), "#total-{id} is summary.{field}");
    }
    let rows = tags(&dom, "tr", "key ");
    assert_eq!(rows.len(), keys.len(), "a row per key");
    assert_eq!(visible(&rows).len(), keys.len(), "no filter, nothing hidden");
    let mut in_page: Vec<_> = rows.iter().map(|r| (attr(r, "data-user").unwrap(), attr(r, "data-result").unwrap(), attr(r, "data-age").unwrap())).collect();
    let rank = |r: &str| ["FAILED", "WARNING", "SUPPRESSED", "PASSED"].iter().position(|x| *x == r).unwrap();
    let order: Vec<_> = in_page.iter().map(|(_, r, age)| (rank(r), -age.parse::<i64>().unwrap())).collect();
    assert!(order.is_sorted(), "worst first, then oldest: {in_page:?}");
    let mut in_json: Vec<_> = keys.iter().map(|k| (k["user_name"].as_str().unwrap().to_owned(), k["result"].as_str().unwrap().to_owned(), k["age_days"].to_string())).collect();
    in_page.sort();
    in_json.sort();
    assert_eq!(in_page, in_json);
    assert!(dom.contains(&format!(
        "<tr data-account=\"{}\"><th scope=\"row\">{}</th><td class=\"num\" data-col=\"keys\">{}</td><td class=\"num\" data-col=\"failed\">{}</td>",
        emu.account_id, emu.account_id, summary["keys"], summary["failed"]
    )));
    assert_eq!(text_by_id(&dom, "shown-keys"), summary["keys"].to_string());
    assert!(!dom.contains("<div id=\"filters\" hidden"), "the script shows the filters");
    assert_eq!(network_urls(&dom), Vec::<String>::new(), "nothing fetched after the script either");

    // Filtered by the URL fragment: only FAILED rows, and the counts follow.
    let filtered = open(dir.path(), &page, "#result=FAILED");
    let rows = tags(&filtered, "tr", "key ");
    let shown = visible(&rows);
    assert_eq!(shown.len().to_string(), summary["failed"].to_string());
    assert!(shown.iter().all(|r| attr(r, "data-result").as_deref() == Some("FAILED")), "{shown:?}");
    assert_eq!(rows.len(), keys.len(), "hidden, not removed");
    assert_eq!(text_by_id(&filtered, "shown-keys"), summary["failed"].to_string());
    assert_eq!(text_by_id(&filtered, "shown-failed"), summary["failed"].to_string());
    assert_eq!(text_by_id(&filtered, "shown-passed"), "0");
    assert_eq!(text_by_id(&filtered, "total-keys"), summary["keys"].to_string(), "totals are the whole report's");

    // Two filters at once, one of them the owner.
    let want = keys.iter().filter(|k| k["owner"] == "team-ci" && k["result"] == "FAILED").count();
    assert!(want > 0, "the scenario has FAILED keys of team-ci");
    let filtered = open(dir.path(), &page, "#owner=team-ci&result=FAILED");
    assert_eq!(visible(&tags(&filtered, "tr", "key ")).len(), want);

    // What a person sees: a full-page screenshot.
    let png = dir.path().join("scan.png");
    chromium(dir.path(), &["--hide-scrollbars", "--window-size=1280,2000", &format!("--screenshot={}", png.display())], &format!("file://{}", page.display()));
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (width, height) = (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((width, height), (1280, 2000));
    // A blank page of that size compresses to a few kilobytes.
    assert!(bytes.len() > 40_000, "a screenshot of {} bytes is too small to show the report", bytes.len());
    eprintln!("page {} bytes, screenshot {} bytes, {:?}", html.len(), bytes.len(), started.elapsed());
}

#[test]
fn hostile_tags_stay_text_in_the_browser() {
    require_chromium();
    // IAM allows few characters in names, but tag values come from anyone
    // who may tag a user; the emulator stores them as given.
    let owner = "<img src=x onerror=\"document.title='pwned'\">'&";
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [
        {"name": "victim", "tags": {"Owner": owner}, "keys": [{"status": "Active", "age": "100d"}]},
        {"name": "bystander", "tags": {"Owner": "team-a"}, "keys": [{"status": "Active", "age": "10d"}]},
    ]}));
    let dir = tempfile::tempdir().expect("temp dir");
    let (page, scan) = scan(&emu, dir.path());
    let owners: Vec<_> = scan["keys"].as_array().unwrap().iter().map(|k| k["owner"].clone()).collect();
    assert!(owners.contains(&json!(owner)), "the emulator kept the tag as given: {owners:?}");

    let dom = open(dir.path(), &page, "");
    assert!(!dom.contains("<img") && !dom.contains("pwned</title>"), "the tag became markup:\n{dom}");
    let rows = tags(&dom, "tr", "key ");
    let victim = rows.iter().find(|r| attr(r, "data-user").as_deref() == Some("victim")).expect("victim's row");
    assert_eq!(attr(victim, "data-owner").as_deref(), Some(owner), "the attribute holds the value exactly");

    // The filter matches the exact value, read back from the attribute.
    let fragment: String = owner.bytes().map(|b| format!("%{b:02X}")).collect();
    let filtered = open(dir.path(), &page, &format!("#owner={fragment}"));
    let rows = tags(&filtered, "tr", "key ");
    let shown = visible(&rows);
    assert_eq!(shown.len(), 1, "{rows:?}");
    assert_eq!(attr(shown[0], "data-user").as_deref(), Some("victim"));
}
