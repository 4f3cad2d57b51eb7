//! Every structural problem of a config file in one pass: unknown keys, wrong
//! types, missing keys, unparsable values (sizes, durations, networks).
//!
//! serde stops at the first error, so the typed structs alone would report
//! one problem per run. Here the file is deserialized into [`Config`] through
//! `serde_path_to_error`, which names the key of the error; that key is then
//! taken out of the TOML tree and the deserialization tried again, until it
//! succeeds. What is left is a config of defaults where the file was wrong,
//! which [`Config::validate`] checks for bad values. The walk knows nothing of
//! the sections: a key added to a typed struct is covered without more work.

use std::collections::HashMap;

use super::{Config, Problem};

/// Most problems reported from one file (a wrong file given by mistake).
const MAX_PROBLEMS: usize = 100;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The config of `value` (the file with its environment overrides): the one
/// way a config is read. When it does not deserialize, every structural
/// problem, each with its key, then the value problems of what remains.
pub(super) fn deserialize(value: toml::Value) -> Result<Config, Vec<Problem>> {
    match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
        Ok(config) => Ok(config),
        Err(err) => {
            let found = problems(value);
            if found.is_empty() {
                // Not expected (the walk meets the same error first), but never an empty list.
                return Err(vec![Problem {
                    key: err.path().to_string(),
                    message: tidy(&err.inner().to_string()),
                }]);
            }
            Err(found)
        }
    }
}

/// Every structural problem of `value`, each with its key, then the value
/// problems of what remains. Empty when the file deserializes.
fn problems(mut value: toml::Value) -> Vec<Problem> {
    let mut out = Vec::new();
    // Array elements taken out shift the later ones: remember their indices in the file.
    let mut original_index: HashMap<String, Vec<usize>> = HashMap::new();
    loop {
        let deserializer = value.clone();
        match serde_path_to_error::deserialize::<_, Config>(deserializer) {
            Ok(config) => {
                if !out.is_empty()
                    && let Err(super::ConfigError::Invalid(more)) = config.validate()
                {
                    for problem in more {
                        if !out.contains(&problem) {
                            out.push(problem);
                        }
                    }
                }
                return out;
            }
            Err(err) => {
                let path = steps(err.path());
                let message = tidy(&err.inner().to_string());
                let mut key = display(&path, &original_index);
                let mut text = message.clone();
                // "missing field `selector`" at dkim.keys[0]: name the missing key itself.
                if let Some(field) = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.strip_suffix('`'))
                {
                    key = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                    text = "missing: this key is required".to_string();
                }
                if key.is_empty() {
                    key = "(top level)".to_string();
                }
                let problem = Problem { key, message: text };
                let repeated = out.contains(&problem);
                // A key of the wrong type, taken out, then shows as missing: said once.
                let already = out.iter().any(|p| p.key == problem.key);
                if !already {
                    out.push(problem);
                }
                if repeated
                    || out.len() >= MAX_PROBLEMS
                    || !remove(&mut value, &path, &mut original_index)
                {
                    return out;
                }
            }
        }
    }
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// The dotted key as written in the file: `dkim.keys[1].selector`.
fn display(path: &[Step], original_index: &HashMap<String, Vec<usize>>) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => {
                let i = original_index
                    .get(&out)
                    .and_then(|map| map.get(*i))
                    .copied()
                    .unwrap_or(*i);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

/// Takes the value at `path` out of the tree; for a missing key (the path
/// ends at its table) the table itself goes. False when nothing could be
/// taken out (the top level).
fn remove(
    value: &mut toml::Value,
    path: &[Step],
    original_index: &mut HashMap<String, Vec<usize>>,
) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = &mut *value;
    for step in parents {
        let next = match (step, node) {
            (Step::Key(key), toml::Value::Table(table)) => table.get_mut(key),
            (Step::Index(i), toml::Value::Array(array)) => array.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            // The path names a key the file does not have (a missing field):
            // take out its nearest existing parent instead.
            None => return false,
        }
    }
    match (last, node) {
        (Step::Key(key), toml::Value::Table(table)) if table.contains_key(key) => {
            table.remove(key);
            true
        }
        (Step::Index(i), toml::Value::Array(array)) if *i < array.len() => {
            array.remove(*i);
            let array_key = display(parents, original_index);
            let map = original_index
                .entry(array_key)
                .or_insert_with(|| (0..array.len() + 1).collect());
            if *i < map.len() {
                map.remove(*i);
            }
            true
        }
        // A missing key: the error's path is the table lacking it; take that out.
        _ => remove(value, parents, original_index),
    }
}

/// serde's wording, without the `for key ...` suffixes some sources add.
fn tidy(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// Merges `overlay` into `base` (overlay wins), as the `config` crate layers sources.
pub(super) fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
