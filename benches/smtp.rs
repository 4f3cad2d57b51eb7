//! The SMTP layer: command parsing, and a whole session (EHLO, MAIL, RCPT,
//! DATA with a 4 KB message, QUIT) over an in-memory stream into an upstream
//! that accepts at once, without DKIM keys: the relay's own per-message cost
//! apart from signing and upstream.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ses_relay::config::{DkimConfig, SmtpConfig};
use ses_relay::connection::session::{Session, SessionContext};
use ses_relay::connection::smtp::{Command, Input};
use ses_relay::daemon::state::Reloadable;
use ses_relay::message::envelope::Envelope;
use ses_relay::message::forward::{Accepted, BoxFuture, Deliver, UpstreamError, Upstreams};
use ses_relay::message::prepare::Preparer;
use ses_relay::message::prepare::dkim::DkimKeys;
use ses_relay::message::route::{Percent, Router, Share};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Accept;

impl Deliver for Accept {
    fn deliver<'a>(
        &'a self,
        _: &'a Envelope,
        _: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        Box::pin(async { Ok(Accepted::queued("bench".into())) })
    }
}

fn context() -> Arc<SessionContext> {
    let smtp = SmtpConfig::default();
    let live = Reloadable {
        preparer: Preparer::new(
            "relay.bench",
            DkimKeys::load(&DkimConfig::default()).unwrap(),
            "cs",
            false,
        ),
        smtp,
        tls: None,
        rules: Vec::new(),
        admin_token: None,
        admin_read_token: None,
    };
    let router = Router::new(false, Vec::new(), Share::fixed(Percent::ALL));
    Arc::new(SessionContext::new(
        live,
        router,
        Upstreams::new(Arc::new(Accept), None),
    ))
}

fn bench(c: &mut Criterion) {
    let pipeline = b"EHLO mx1.goo.ne.jp\r\nMAIL FROM:<news@goo.ne.jp> SIZE=4096 BODY=8BITMIME\r\nRCPT TO:<user@example.com>\r\nRCPT TO:<other@example.org> NOTIFY=NEVER\r\nDATA\r\nRSET\r\nNOOP\r\nQUIT\r\n";
    let mut group = c.benchmark_group("smtp");
    group.throughput(Throughput::Elements(8));
    group.bench_function("parse_8_pipelined_commands", |b| {
        b.iter(|| {
            let mut input = Input::new();
            input.push(black_box(pipeline));
            let mut n = 0;
            while let Some(command) = input.next_command() {
                n += usize::from(matches!(command, Command::Request(_)));
            }
            assert_eq!(n, 8);
        })
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let context = context();
    let mut body =
        String::from("From: news@goo.ne.jp\r\nTo: user@example.com\r\nSubject: bench\r\n\r\n");
    while body.len() < 4096 {
        body.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n",
        );
    }
    let script = format!(
        "EHLO mx1.goo.ne.jp\r\nMAIL FROM:<news@goo.ne.jp>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n{body}.\r\nQUIT\r\n"
    );
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    group.bench_function("whole_session_4KB_in_memory", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (mut client, server) = tokio::io::duplex(64 * 1024);
                let peer = "10.99.1.11:40000".parse().unwrap();
                let session = tokio::spawn(
                    Session::new(context.clone(), Box::new(server), peer, false).run(),
                );
                client.write_all(script.as_bytes()).await.unwrap();
                let mut out = Vec::new();
                client.read_to_end(&mut out).await.unwrap();
                session.await.unwrap();
                assert!(out.ends_with(b"221 2.0.0 Bye\r\n"));
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
