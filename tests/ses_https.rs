//! The SES route over HTTPS, as in production: the `ses-relay` binary trusts
//! the system's roots (here a test CA through `SSL_CERT_FILE`, which the
//! platform verifier reads on Linux), checks the name, and sends SendEmail
//! through TLS to the SES fake.

mod common;

use std::time::Duration;

use common::client::smtp;
use common::relay_process::{RelayCommand, RelayProcess, write_config};
use common::ses_fake::SesFake;
use common::{TempDir, TestCa, demo_key};

const MESSAGE: &str = "From: a@goo.ne.jp\r\nSubject: over https\r\n\r\nbody";

/// The relay binary with SES at `endpoint`, trusting `ca_file` as the system roots.
struct Relay {
    process: RelayProcess,
    _dir: TempDir,
}

impl Relay {
    fn start(endpoint: &str, ca_file: &std::path::Path) -> Relay {
        let dir = TempDir::new("https");
        let config = format!(
            r#"
[smtp]
listen = ["127.0.0.1:0"]
allowed-clients = ["127.0.0.0/8"]
[[dkim.keys]]
domain = "goo.ne.jp"
selector = "gooid-21-prod"
private-key = "{key}"
[dkim]
dns-check-interval = "0s"
[ses]
region = "ap-northeast-1"
endpoint-url = "{endpoint}"
configuration-set = "cs"
timeout = "5s"
[admin]
listen = "127.0.0.1:0"
"#,
            key = demo_key().display(),
        );
        let process = RelayCommand::run(&dir, &write_config(&dir, &config))
            .env("SSL_CERT_FILE", ca_file)
            .env_remove("SSL_CERT_DIR")
            .start();
        Relay { process, _dir: dir }
    }

    async fn send(&self) -> String {
        let commands: Vec<String> = [
            "EHLO client.test",
            "MAIL FROM:<a@goo.ne.jp>",
            "RCPT TO:<b@example.com>",
            "DATA",
        ]
        .map(String::from)
        .to_vec();
        let replies = tokio::time::timeout(
            Duration::from_secs(30),
            smtp(self.process.smtp, &commands, Some(MESSAGE)),
        )
        .await
        .expect("the relay answers");
        replies.last().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_verified_tls_and_refuses_an_unknown_certificate() {
    let ca = TestCa::new();
    let acceptor = ses_relay::connection::tls::acceptor(&ca.tls_config()).unwrap();
    let ses = SesFake::start_tls(acceptor).await;
    let endpoint = format!("https://127.0.0.1:{}", ses.addr.port());
    std::fs::write(ca.dir.path("ca.pem"), &ca.ca_pem).unwrap();

    let trusted = Relay::start(&endpoint, &ca.dir.path("ca.pem"));
    let reply = trusted.send().await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let requests = ses.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].authorization, "SigV4-signed");
    assert_eq!(requests[0].to, ["b@example.com"]);
    drop(trusted);

    // The same endpoint with roots that do not include the test CA: the
    // certificate is refused and Postfix is told to retry.
    let other = TestCa::new();
    std::fs::write(other.dir.path("ca.pem"), &other.ca_pem).unwrap();
    let untrusting = Relay::start(&endpoint, &other.dir.path("ca.pem"));
    let reply = untrusting.send().await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
    assert_eq!(ses.requests().len(), 1, "nothing more reached SES");
}
