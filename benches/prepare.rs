//! Message preparation (Received + DKIM + header injection) for 4 KB, 100 KB
//! and 10 MB messages, RSA-2048 and Ed25519, next to one bare RSA-2048
//! signature: the yardstick the relay's CPU cost per message is measured in.
//! Also the SES request made of a prepared message (JSON body + SigV4).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ses_relay::config::{DkimConfig, DkimKeyConfig};
use ses_relay::message::envelope::{Envelope, MailFrom};
use ses_relay::message::forward::ses::api::{self, Target};
use ses_relay::message::prepare::Preparer;
use ses_relay::message::prepare::dkim::DkimKeys;
use ses_relay::message::route::Route;

fn ed25519_key_file() -> PathBuf {
    use mail_auth::common::crypto::Ed25519Key;
    let der = Ed25519Key::generate_pkcs8().expect("ed25519 key");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64_encode(&der)
    );
    let path = std::env::temp_dir().join(format!(
        "ses-relay-bench-ed25519-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, pem).unwrap();
    path
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn preparer(key: &Path) -> Preparer {
    let config = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: "gooid-21-prod".into(),
            private_key: key.to_path_buf(),
            created: None,
        }],
        ..DkimConfig::default()
    };
    Preparer::new(
        "relay.bench",
        DkimKeys::load(&config).unwrap(),
        "bench-set",
        true,
    )
}

/// A message of about `size` bytes: realistic headers, 76-column body lines.
pub fn message(size: usize) -> Vec<u8> {
    let mut msg = b"From: Goo News <news@goo.ne.jp>\r\nTo: user@example.com\r\nSubject: =?UTF-8?B?5pel5pys6Kqe?=\r\nDate: Sun, 22 Nov 2026 08:00:00 +0900\r\nMessage-ID: <bench@goo.ne.jp>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n";
    while msg.len() < size {
        msg.extend_from_slice(line);
    }
    msg
}

fn envelope() -> Envelope {
    Envelope {
        id: "1A2027B3E7E00000".into(),
        client: "10.99.1.11:40000".parse().unwrap(),
        helo: "mx1.goo.ne.jp".into(),
        tls: false,
        esmtp: true,
        mail: MailFrom {
            address: "news@goo.ne.jp".into(),
            ..MailFrom::default()
        },
        rcpt_to: vec!["user@example.com".into()],
        route: Route::Ses,
        tags: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let rsa = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/dev/dkim-demo.pem");
    let ed = ed25519_key_file();
    let envelope = envelope();

    let rsa_preparer = preparer(&rsa);
    let key = &rsa_preparer.dkim().keys()[0];
    let tiny = b"From: a@goo.ne.jp\r\n\r\n".to_vec();
    let from = vec!["From".to_string()];
    c.bench_function("rsa2048_bare_signature", |b| {
        b.iter(|| key.sign(black_box(&tiny), &from).unwrap())
    });

    for (name, key_path) in [("rsa2048", &rsa), ("ed25519", &ed)] {
        let preparer = preparer(key_path);
        let mut group = c.benchmark_group(format!("prepare_{name}"));
        for (label, size) in [
            ("4KB", 4 * 1024),
            ("100KB", 100 * 1024),
            ("10MB", 10 * 1024 * 1024),
        ] {
            let msg = message(size);
            group.throughput(Throughput::Bytes(msg.len() as u64));
            if size > 1 << 20 {
                group.sample_size(10);
            }
            group.bench_function(label, |b| {
                b.iter_batched(
                    || msg.clone(),
                    |m| preparer.prepare(black_box(&envelope), m).unwrap(),
                    criterion::BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
    let _ = std::fs::remove_file(ed);

    let target = Target::new(
        "https://email.ap-northeast-1.amazonaws.com",
        "ap-northeast-1",
    )
    .unwrap();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new("AKIDBENCH", "secret", None, None, "bench").into();
    let mut group = c.benchmark_group("ses_request");
    for (label, size) in [("4KB", 4 * 1024), ("10MB", 10 * 1024 * 1024)] {
        let msg = message(size);
        group.throughput(Throughput::Bytes(msg.len() as u64));
        if size > 1 << 20 {
            group.sample_size(10);
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let fields = api::envelope_fields(&envelope, "bench-set");
                let body = api::send_email_body(&fields, black_box(&msg));
                target.signed_request(&identity, body).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
