//! The configuration reference (docs/configuration.md, rendered as
//! `ses-relay.toml(5)`) against the config structs, and both manual pages
//! against groff.
//!
//! The structs' keys are found by asking serde, not by a list kept here: every
//! config struct has `deny_unknown_fields`, so deserializing a table with an
//! unknown key fails with "unknown field `x`, expected one of `a`, `b`…", which
//! names all of that table's keys. A key whose value is itself such a table (or
//! an array of them) is walked the same way. A key added to any struct, in any
//! table, shows up here without touching this file.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use ses_relay::config::Config;

const PROBE: &str = "zz-probe";

/// One step of a key path: a table key, or "the tables of this array".
#[derive(Clone)]
enum Step {
    Key(String),
    Array,
}

/// A TOML document with `{ zz-probe = 1 }` at `path`.
fn probe_document(path: &[Step]) -> toml::Value {
    let mut value = toml::Value::Table(toml::Table::from_iter([(
        PROBE.to_string(),
        toml::Value::Integer(1),
    )]));
    for step in path.iter().rev() {
        value = match step {
            Step::Key(key) => toml::Value::Table(toml::Table::from_iter([(key.clone(), value)])),
            Step::Array => toml::Value::Array(vec![value]),
        };
    }
    value
}

/// The keys of the table at `path`, or None when `path` is not a table of a
/// config struct (a scalar, a list of values, a map such as `ses.tags`).
fn table_keys(path: &[Step]) -> Option<Vec<String>> {
    let err = serde_path_to_error::deserialize::<_, Config>(probe_document(path)).err()?;
    // toml adds "\nin `table`" lines: the first line is serde's.
    let message = err.inner().to_string();
    let message = message.lines().next().unwrap_or_default();
    let expected = message.strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    if expected.starts_with("there are no fields") {
        return Some(Vec::new());
    }
    // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`".
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every leaf key under `path`, dotted as docs/configuration.md names them:
/// `smtp.tls.cert`, `dkim.keys[].domain`.
fn walk(path: &mut Vec<Step>, prefix: &str, out: &mut BTreeSet<String>) {
    let keys = table_keys(path).expect("the walk only descends into tables");
    for key in keys {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        path.push(Step::Key(key));
        if table_keys(path).is_some() {
            walk(path, &name, out);
        } else {
            path.push(Step::Array);
            if table_keys(path).is_some() {
                walk(path, &format!("{name}[]"), out);
            } else {
                out.insert(name);
            }
            path.pop();
        }
        path.pop();
    }
}

/// Every key of the config structs.
fn struct_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    walk(&mut Vec::new(), "", &mut keys);
    keys
}

/// Every key docs/configuration.md documents: a `### \`key\`` under a
/// `## \`[table]\`` or `## \`[[array]]\`` heading.
fn documented_keys(md: &str) -> Vec<String> {
    let mut table: Option<String> = None;
    let mut keys = Vec::new();
    for line in md.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            let heading = heading.trim().trim_matches('`');
            table = if let Some(array) = heading.strip_prefix("[[") {
                Some(format!("{}[]", array.trim_end_matches("]]")))
            } else {
                heading
                    .strip_prefix('[')
                    .map(|t| t.trim_end_matches(']').to_string())
            };
        } else if let Some(key) = line.strip_prefix("### ") {
            let key = key.trim().trim_matches('`');
            match &table {
                Some(table) => keys.push(format!("{table}.{key}")),
                None => keys.push(format!("(outside any table).{key}")),
            }
        }
    }
    keys
}

const DOCS: &str = include_str!("../docs/configuration.md");

#[test]
fn the_walk_finds_the_keys_of_every_table() {
    let keys = struct_keys();
    // One of each shape: a plain key, an Option<struct> table, a nested table,
    // an array of tables, a map.
    for key in [
        "smtp.max-recipients",
        "legacy.relay",
        "smtp.tls.cert",
        "dkim.keys[].private-key",
        "cutover.rules[].route",
        "ses.tags",
        "admin.listen",
    ] {
        assert!(keys.contains(key), "{key} not found by the walk: {keys:?}");
    }
    assert!(!keys.contains("dev"), "a #[serde(skip)] field is not a key");
    assert!(!keys.contains("smtp.tls"), "a table is not a leaf key");
}

#[test]
fn configuration_md_documents_every_key_and_only_real_keys() {
    let real = struct_keys();
    let documented = documented_keys(DOCS);
    let mut problems = Vec::new();
    for key in &real {
        if !documented.contains(key) {
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            let heading = match table.strip_suffix("[]") {
                Some(array) => format!("[[{array}]]"),
                None => format!("[{table}]"),
            };
            problems.push(format!(
                "{key}: a key of the config structs, not in docs/configuration.md \
                 (add `### \\`{leaf}\\`` with its Type and Default under `## \\`{heading}\\``)"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for key in &documented {
        if !real.contains(key) {
            problems.push(format!(
                "{key}: documented in docs/configuration.md, but no config struct has it"
            ));
        }
        if !seen.insert(key) {
            problems.push(format!("{key}: documented twice"));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_documented_key_has_a_type_and_a_default() {
    let mut problems = Vec::new();
    let mut lines = DOCS.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(key) = line.strip_prefix("### ") else {
            continue;
        };
        let block: Vec<&str> =
            std::iter::from_fn(|| lines.next_if(|l| !l.starts_with('#')).map(|l| l.trim_end()))
                .collect();
        for field in ["- Type: ", "- Default: "] {
            if !block.iter().any(|l| l.starts_with(field)) {
                problems.push(format!("{key}: no `{field}` line"));
            }
        }
        if !block.iter().any(|l| !l.is_empty() && !l.starts_with("- ")) {
            problems.push(format!("{key}: no text saying what it means"));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The documented default of each key written as a TOML value equals what
/// `Config::default()` holds (for keys present in the defaults).
#[test]
fn documented_defaults_are_the_real_defaults() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut table: Option<String> = None;
    let mut key: Option<String> = None;
    let mut problems = Vec::new();
    let mut checked = 0;
    for line in DOCS.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            table = heading
                .trim()
                .trim_matches('`')
                .strip_prefix('[')
                .filter(|t| !t.starts_with('['))
                .map(|t| t.trim_end_matches(']').to_string());
        } else if let Some(k) = line.strip_prefix("### ") {
            key = Some(k.trim().trim_matches('`').to_string());
        } else if let (Some(table), Some(key), Some(default)) =
            (&table, &key, line.strip_prefix("- Default: `"))
        {
            let Some(literal) = default.strip_suffix('`') else {
                continue;
            };
            let Ok(doc) = toml::from_str::<toml::Table>(&format!("v = {literal}")) else {
                problems.push(format!(
                    "{table}.{key}: default `{literal}` is not a TOML value"
                ));
                continue;
            };
            let mut real = Some(&defaults);
            for part in table.split('.').chain([key.as_str()]) {
                real = real.and_then(|v| v.get(part));
            }
            let Some(real) = real else { continue };
            checked += 1;
            let doc = &doc["v"];
            let same = match (doc, real) {
                (toml::Value::Integer(a), toml::Value::Float(b)) => *a as f64 == *b,
                // Durations: "365d" is what humantime writes as "11months 30days 3h 50m 24s".
                (toml::Value::String(a), toml::Value::String(b)) if a != b => {
                    match (humantime::parse_duration(a), humantime::parse_duration(b)) {
                        (Ok(a), Ok(b)) => a == b,
                        _ => false,
                    }
                }
                (a, b) => a == b,
            };
            if !same {
                problems.push(format!(
                    "{table}.{key}: documented default {doc}, Config::default() has {real}"
                ));
            }
        }
    }
    assert!(checked > 40, "only {checked} defaults compared");
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The stdout of `ses-relay ARGS`, which must succeed.
fn ses_relay(args: &[&str]) -> String {
    let (code, stdout, stderr) = common::ses_relay(args);
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    stdout
}

#[test]
fn the_config_page_is_rendered_from_configuration_md() {
    let page = ses_relay(&["man", "--section", "5"]);
    assert!(page.starts_with(".TH ses-relay.toml 5 "), "{page:.200}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "\"[smtp]\"",
        "\"[[dkim.keys]]\"",
        "\"SEE ALSO\"",
    ] {
        assert!(
            page.contains(&format!("\n.SH {section}\n")),
            "no .SH {section}"
        );
    }
    for key in documented_keys(DOCS) {
        let leaf = key.rsplit('.').next().unwrap().replace('-', "\\-");
        assert!(
            page.contains(&format!(".SS \"{leaf}\"\n")),
            "{key} not in the page"
        );
    }
}

#[test]
fn the_command_page_has_the_sections_an_operator_looks_for() {
    let page = ses_relay(&["man"]);
    assert!(page.starts_with(".TH ses-relay 8 "), "{page:.200}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "SIGNALS",
        "FILES",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "\"SEE ALSO\"",
    ] {
        assert!(
            page.contains(&format!("\n.SH {section}\n")),
            "no .SH {section}"
        );
    }
    // One section per command.
    for command in [
        "run",
        "check\\-config",
        "preflight",
        "dkim",
        "healthcheck",
        "cutover",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("\n.SH \"ses\\-relay {command}\"\n")),
            "no section for {command}"
        );
    }
    for signal in ["HUP", "TERM", "INT"] {
        assert!(
            page.contains(&format!("\n.B {signal}\n")),
            "signal {signal}"
        );
    }
}

/// `man -l` shows both pages without a warning: groff at its strictest
/// (`-ww`) prints nothing on stderr. groff comes with man-db (Debian's
/// groff-base), which every system with manual pages has.
#[test]
fn groff_renders_both_pages_without_a_warning() {
    for args in [&["man"][..], &["man", "--section", "5"][..]] {
        let page = ses_relay(args);
        let mut groff = Command::new("groff")
            .args(["-ww", "-man", "-Tutf8"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("groff (Debian package groff-base) is needed to check the manual pages");
        std::io::Write::write_all(&mut groff.stdin.take().unwrap(), page.as_bytes()).unwrap();
        let out = groff.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{args:?}: {stderr}"
        );
        assert!(
            out.stdout.len() > 2000,
            "{args:?}: the page rendered almost empty"
        );
    }
}
