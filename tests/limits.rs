//! File descriptors: `run` raises the soft `RLIMIT_NOFILE` to the hard one,
//! a `smtp.max-connections` the hard limit cannot hold is refused (by `run`
//! and by `check-config`) naming both numbers, and while accept fails for
//! lack of descriptors the listener backs off instead of spinning.

mod common;

use std::time::{Duration, Instant};

use common::TempDir;
use common::client::SmtpClient;
use common::relay_process::{RelayCommand, RelayProcess, config_file};
use tokio::net::TcpStream;

/// A relay that wants 1000 sessions, 2064 descriptors with the reserve.
fn thousand_sessions(dir: &TempDir) -> std::path::PathBuf {
    config_file(dir, "max-connections = 1000", "")
}

fn assert_names_both_numbers(text: &str) {
    let line = text
        .lines()
        .find(|l| l.starts_with("smtp.max-connections:"))
        .unwrap_or_else(|| panic!("no smtp.max-connections problem in:\n{text}"));
    assert!(line.contains("1000 sessions"), "{line}");
    assert!(line.contains("limit is 256"), "{line}");
    assert!(line.contains("2064 file descriptors"), "{line}");
}

#[test]
fn under_a_hard_limit_of_256_a_thousand_sessions_are_refused_by_name() {
    let dir = TempDir::new("limits-refused");
    let config = thousand_sessions(&dir);
    // Soft and hard: nothing to raise to.
    let mut run = RelayCommand::shell(
        &dir,
        &config,
        "ulimit -n 256 && exec \"$RELAY\" run --config \"$CONFIG\"",
    )
    .spawn();
    assert_eq!(run.exit_code(), 1, "{}", run.log());
    assert_names_both_numbers(&run.log());

    let mut check = RelayCommand::shell(
        &dir,
        &config,
        "ulimit -n 256 && exec \"$RELAY\" check-config --config \"$CONFIG\"",
    )
    .spawn();
    assert_eq!(check.exit_code(), 1, "{}", check.log());
    assert_names_both_numbers(&check.log());
}

/// `Max open files` soft and hard of a running process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line["Max open files".len()..].split_whitespace();
    (
        numbers.next().unwrap().to_string(),
        numbers.next().unwrap().to_string(),
    )
}

#[test]
fn a_low_soft_limit_is_raised_to_the_hard_one() {
    let hard = open_files_limits(std::process::id()).1;
    let low = hard.parse::<u64>().is_ok_and(|hard| hard < 2064);
    let why = low.then(|| format!("the hard RLIMIT_NOFILE ({hard}) holds no 1000 sessions"));
    if !common::peers::run_or_skip("a_low_soft_limit_is_raised_to_the_hard_one", why) {
        return;
    }
    let dir = TempDir::new("limits-raised");
    let config = thousand_sessions(&dir);
    let relay = RelayCommand::shell(
        &dir,
        &config,
        "ulimit -Sn 256 && exec \"$RELAY\" run --config \"$CONFIG\"",
    )
    .start();
    assert_eq!(open_files_limits(relay.process.id()), (hard.clone(), hard));
}

/// Descriptors `pid` has open.
fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// User and system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends at the last ')'): utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_descriptors_the_listener_backs_off_and_recovers() {
    let dir = TempDir::new("limits-emfile");
    let config = config_file(&dir, "max-connections = 200", "");
    let relay = RelayProcess::start(&dir, &config);
    let pid = relay.process.id();
    // Room for a few sessions only.
    let room = 5;
    let soft = open_descriptors(pid) + room;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::prlimit(
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )
    .unwrap();

    let mut held = Vec::new();
    for _ in 0..room + 10 {
        held.push(TcpStream::connect(relay.smtp).await.unwrap());
    }
    relay.wait_for_log("accept failing with EMFILE", |log| {
        log.contains("accept failed") && log.contains("Too many open files")
    });
    // Three seconds out of descriptors: a listener that retried at once
    // would burn a core (300 ticks); backing off to 1 s it barely wakes.
    // The sleep is the interval under test.
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let ticks = cpu_ticks(pid) - before;
    assert!(ticks < 30, "{ticks} ticks in {:?}", started.elapsed());
    let failures = relay.log().matches("accept failed").count();
    assert!(failures <= 10, "{failures} lines:\n{}", relay.log());

    // Descriptors back: the connections waiting in the backlog get their greeting.
    let last = held.pop().unwrap();
    drop(held);
    let mut waiting = SmtpClient::over(last);
    let greeting = tokio::time::timeout(Duration::from_secs(10), waiting.reply())
        .await
        .expect("greeting once descriptors are free");
    assert!(greeting.starts_with("220"), "{greeting}");
}
