//! A child process that cannot outlive its test: killed and reaped when
//! dropped, so a failed assertion leaves no relay, moto or dnsmasq behind.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use super::wait::wait_until;

/// A child process, killed (if still running) and reaped on drop.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// The process id (for a signal, `/proc/<pid>`).
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` (`HUP`, `TERM`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.id());
    }

    /// Waits for the process to exit by itself; panics past `within`.
    pub fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let child = &mut self.0;
        wait_until(within, || match child.try_wait().unwrap() {
            Some(status) => Ok(status),
            None => Err("still running"),
        })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
