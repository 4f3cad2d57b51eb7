//! The source tree's shape, checked: modules import one another one way only
//! (no import circles), the wiring (`daemon::server`) and the commands
//! (`tools::cli`) are imported by nobody, no file is over 500 lines and
//! `main.rs` stays thin, and SES error codes are spelled in one table only.
//! docs/architecture.md draws the same map.
//!
//! A module here is one concern: a top-level module (`config`, `metrics`), or
//! a module inside a group (`connection::session`, `control::guard`); a file
//! belongs to the concern whose directory or file holds it. Imports are the
//! `crate::` paths of non-test code; test files and `#[cfg(test)]` tails are
//! left out, since a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The directories that only group concerns (their `mod.rs` lists modules).
const GROUPS: &[&str] = &["connection", "message", "control", "tools", "daemon"];

/// Longest source file, in lines.
const MAX_LINES: usize = 500;

/// Longest `main.rs`: the command line and a call, nothing else.
const MAX_MAIN_LINES: usize = 200;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The concern a file (relative to src/) belongs to, or `None` for lib.rs,
/// main.rs and a group's own mod.rs.
fn concern_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let first = parts.first()?.as_str();
    if GROUPS.contains(&first) {
        let second = parts.get(1)?;
        (second != "mod").then(|| format!("{first}::{second}"))
    } else {
        (parts.len() > 1 || !matches!(first, "lib" | "main")).then(|| first.to_string())
    }
}

/// The concern a `crate::a::b` path names.
fn concern_named(first: &str, second: Option<&str>) -> String {
    match second {
        Some(second) if GROUPS.contains(&first) => format!("{first}::{second}"),
        _ => first.to_string(),
    }
}

fn is_test_file(relative: &Path) -> bool {
    let name = relative.file_name().unwrap().to_string_lossy();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || relative.components().any(|c| c.as_os_str() == "tests")
}

fn identifier(bytes: &[u8], at: usize) -> (&str, usize) {
    let end = bytes[at..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(bytes.len(), |n| at + n);
    (std::str::from_utf8(&bytes[at..end]).unwrap(), end)
}

/// Every concern a line's `crate::` paths name.
fn named_in(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            continue;
        }
        let (first, end) = identifier(bytes, from);
        if first.is_empty() {
            continue;
        }
        let second = line[end..]
            .strip_prefix("::")
            .map(|rest| identifier(rest.as_bytes(), 0).0)
            .filter(|s| !s.is_empty());
        found.push(concern_named(first, second));
    }
    found
}

/// Every line of the relay's own code (no test file, no inline test module,
/// no comment), with its file relative to src/ and its line number.
fn code_lines() -> Vec<(PathBuf, usize, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut out = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        if is_test_file(&relative) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (number, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            // An inline test module ends what the build of the relay reads.
            let next = lines.get(number + 1).map_or("", |l| l.trim_start());
            if code.starts_with("#[cfg(test)]") && next.starts_with("mod ") && next.ends_with('{') {
                break;
            }
            if !code.starts_with("//") {
                out.push((relative.clone(), number + 1, line.to_string()));
            }
        }
    }
    out
}

/// Edges `from → to` with the first place each is seen.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (relative, number, line) in code_lines() {
        let Some(from) = concern_of(&relative) else {
            continue;
        };
        for to in named_in(&line) {
            if to != from && !from.starts_with(&format!("{to}::")) {
                let place = format!("src/{}:{number}", relative.display());
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(place);
            }
        }
    }
    edges
}

/// A circle through `start`, if there is one, as the places of its imports.
fn circle_through(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    start: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), Vec::<String>::new())];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for (to, place) in edges.get(&at).into_iter().flatten() {
            let mut next = path.clone();
            next.push(format!("{at} → {to} ({place})"));
            if to == start {
                return Some(next);
            }
            if seen.insert(to.clone()) {
                stack.push((to.clone(), next));
            }
        }
    }
    None
}

#[test]
fn the_reader_sees_every_import_of_a_line() {
    assert_eq!(
        named_in("use crate::control::guard::Guard; x = crate::config::load(crate::net::a);"),
        ["control::guard", "config", "net"]
    );
    assert!(named_in("let s = \"$crate::x\"; not_crate::y").is_empty());
    assert_eq!(
        concern_of(Path::new("connection/session/data.rs")).unwrap(),
        "connection::session"
    );
    assert_eq!(
        concern_of(Path::new("metrics/window.rs")).unwrap(),
        "metrics"
    );
    assert_eq!(concern_of(Path::new("connection/mod.rs")), None);
}

#[test]
fn modules_import_one_another_one_way_only() {
    let edges = imports();
    assert!(
        edges.len() > 20,
        "the reader found too few modules to be reading the tree: {edges:?}"
    );
    let circles: Vec<String> = edges
        .keys()
        .filter_map(|start| circle_through(&edges, start))
        .map(|circle| circle.join("\n    "))
        .collect();
    // Each circle shows once per module on it; the first few say enough.
    let shown: Vec<&str> = circles.iter().take(3).map(String::as_str).collect();
    assert!(
        circles.is_empty(),
        "import circles:\n  {}",
        shown.join("\n  ")
    );
}

#[test]
fn the_wiring_and_the_commands_are_imported_by_nobody() {
    for (from, to) in imports() {
        for wired in ["daemon::server", "tools::cli"] {
            // The run command starts the server; nothing else may reach either.
            let allowed = wired == "daemon::server" && from == "tools::cli";
            assert!(
                allowed || !to.contains_key(wired),
                "{from} imports {wired} at {}",
                to[wired]
            );
        }
    }
}

#[test]
fn no_file_is_over_the_limit_and_main_stays_thin() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut long = Vec::new();
    for file in &files {
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        let limit = if file.ends_with("main.rs") {
            MAX_MAIN_LINES
        } else {
            MAX_LINES
        };
        if lines > limit {
            long.push(format!(
                "{} has {lines} lines (at most {limit})",
                file.display()
            ));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// Where SES's error codes are spelled: the one table that parses them.
const SES_CODE_TABLE: &str = "message/forward/ses/code.rs";

#[test]
fn each_ses_error_code_is_spelled_once_in_the_relay() {
    let table = std::fs::read_to_string(src().join(SES_CODE_TABLE)).unwrap();
    // The table's rows: `("Spelling", SesCode::Kind)`.
    let spellings: Vec<&str> = table
        .lines()
        .filter_map(|line| line.trim().strip_prefix("(\""))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name))
        .chain(
            // Rows rustfmt splits: the spelling alone on its line.
            table
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with('"') && l.ends_with("\","))
                .map(|l| l.trim_matches(|c| c == '"' || c == ',')),
        )
        .collect();
    assert!(
        spellings.len() > 20 && spellings.contains(&"MessageRejected"),
        "the table was not read: {spellings:?}"
    );
    let mut elsewhere = Vec::new();
    for (relative, number, line) in code_lines() {
        if relative == Path::new(SES_CODE_TABLE) {
            continue;
        }
        for spelling in &spellings {
            if line.contains(&format!("\"{spelling}\"")) {
                elsewhere.push(format!("src/{}:{number}: {spelling}", relative.display()));
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "SES codes are matched as strings outside {SES_CODE_TABLE} (parse them into SesCode):\n{}",
        elsewhere.join("\n")
    );
}
