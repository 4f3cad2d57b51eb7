//! The process's file descriptor budget: what `smtp.max-connections` sessions
//! need, and `RLIMIT_NOFILE` raised to meet it. Config validation and the
//! listener both ask, so it lives below both.

/// File descriptors one session can hold: the client's socket and one upstream socket.
pub const DESCRIPTORS_PER_SESSION: u64 = 2;

/// Descriptors kept aside from the sessions: listeners, the admin API and
/// its clients, the SES, SSM and SQS connection pools, the resolver, the
/// log, the runtime's own (epoll, eventfd). 64 leaves room to spare.
pub const DESCRIPTORS_RESERVED: u64 = 64;

/// Descriptors `max_connections` sessions need, with the reserve.
pub fn descriptors_needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(DESCRIPTORS_PER_SESSION)
        .saturating_add(DESCRIPTORS_RESERVED)
}

/// The most descriptors this process can have open: the hard
/// `RLIMIT_NOFILE`, which [`raise_descriptor_limit`] makes the soft one too.
/// `None`: unlimited.
pub fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one (systemd's `LimitNOFILE=`
/// or `ulimit -Hn`): the soft default, often 1024, would stop a relay at
/// about 500 sessions. Returns the limit now in force (`None`: unlimited).
pub fn raise_descriptor_limit() -> Result<Option<u64>, std::io::Error> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised)?;
    }
    Ok(getrlimit(Resource::Nofile).current)
}
