//! Replays the seed corpus, and any crash AFL left in `out/`, through every
//! target without AFL: `cargo test --lib` in `fuzz/` shows the assertion
//! that fails, with a backtrace, for an input AFL reported. (A unit test,
//! not one in `tests/`: those make cargo link the AFL binaries, which only
//! link under `cargo afl`.)

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let dirs = [
        root.join("corpus").join(target),
        root.join("out").join(target).join("default/crashes"),
    ];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "README.txt") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for path in files {
        let data = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        run(&data);
    }
}

#[test]
fn framing_corpus() {
    replay("framing", crate::framing::run);
}

#[test]
fn prepare_corpus() {
    replay("prepare", crate::prepare::run);
}

#[test]
fn config_corpus() {
    replay("config", crate::config::run);
}
