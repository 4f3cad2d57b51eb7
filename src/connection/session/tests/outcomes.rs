//! Session tests of how transactions are counted and cut: a client's own
//! mistake is `refused`, a legacy outage one deferred legacy transaction, the
//! session deadline says so.

use super::*;

/// Renders what the session counted: a recorder of this thread only, so
/// tests running side by side do not see each other's counts.
fn counted_metrics(recorder: &metrics_exporter_prometheus::PrometheusRecorder) -> String {
    recorder.handle().render()
}

fn local_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

#[tokio::test]
async fn client_mistakes_are_counted_refused_not_rejected() {
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data("Subject: x\r\n\r\nbare\nLF\r\n", "550 5.5.2").await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    let big = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(20_000));
    s.data(&big, "552 5.3.4").await;
    let text = counted_metrics(&recorder);
    assert!(
        text.contains(r#"ses_relay_transactions_total{route="ses",result="refused"} 2"#),
        "{text}"
    );
    assert!(!text.contains(r#"result="rejected""#), "{text}");
    assert!(!text.contains(r#"result="deferred""#), "{text}");
    assert_eq!(upstream.count(), 0);
}

/// A legacy route whose relay cannot be reached: every RCPT gets its 451.
struct Unreachable;

impl crate::message::forward::Upstream for Unreachable {
    fn begin<'a>(
        self: Arc<Self>,
        _mail: &'a crate::message::envelope::MailFrom,
    ) -> BoxFuture<'a, Result<Box<dyn crate::message::forward::Transaction>, UpstreamError>> {
        Box::pin(async {
            Err(UpstreamError::reply_of(
                crate::connection::smtp::Reply::new(
                    451,
                    [4, 4, 1],
                    "Legacy relay unreachable, try again later",
                ),
            ))
        })
    }
}

#[tokio::test]
async fn a_legacy_outage_is_one_deferred_legacy_transaction() {
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    // Every transaction to legacy: a fixed share of none to SES.
    let router = Router::new(true, Vec::new(), Share::fixed(Percent::ZERO));
    let upstreams = Upstreams::new(Upstream::new(), Some(Arc::new(Unreachable)));
    let context = Arc::new(SessionContext::new(live(smtp_config()), router, upstreams));
    let mut s = TestSession::start(context).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "451 4.4.1").await;
    s.rcpt_to("c@example.com", "451 4.4.1").await;
    s.cmd("RSET", "250").await;
    let text = counted_metrics(&recorder);
    // One per transaction, not per RCPT.
    assert!(
        text.contains(r#"ses_relay_transactions_total{route="legacy",result="deferred"} 1"#),
        "{text}"
    );
    // A second transaction is a second deferred one.
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "451 4.4.1").await;
    let text = counted_metrics(&recorder);
    assert!(
        text.contains(r#"ses_relay_transactions_total{route="legacy",result="deferred"} 2"#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_session_deadline_says_so() {
    let smtp = SmtpConfig {
        idle_timeout: HumanDuration(Duration::from_secs(300)),
        max_session_duration: HumanDuration(Duration::from_secs(60)),
        ..smtp_config()
    };
    let mut s = TestSession::start(context(smtp, Upstream::new())).await;
    s.ehlo().await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let reply = s.expect("421 4.4.2").await;
    assert!(reply.contains("Session time limit exceeded"), "{reply}");
    assert!(!reply.contains("Idle"), "{reply}");
    s.closed().await;
}

/// A relay with an armed rollback guard, an SES route and a legacy route
/// (taken by senders at legacy.example).
fn guarded(ses: Arc<Upstream>, legacy: Arc<Upstream>) -> Arc<SessionContext> {
    let rule = crate::message::route::Rule::new(
        Vec::new(),
        &["legacy.example".to_string()],
        &[],
        crate::message::route::Route::Legacy,
    );
    // The guard acts through a cutover, and the router reads the share it publishes.
    let cutover = Cutover::load(std::path::Path::new(""), 100.0).unwrap();
    let config = crate::config::GuardConfig {
        enabled: true,
        ..crate::config::GuardConfig::default()
    };
    let router = Router::new(true, vec![rule], cutover.share());
    let mut context = SessionContext::new(
        live(smtp_config()),
        router,
        Upstreams::new(ses, Some(legacy)),
    );
    context.guard = Arc::new(crate::control::guard::Guard::new(&config, cutover, true));
    Arc::new(context)
}

#[tokio::test]
async fn only_ses_answers_reach_the_guard_and_not_our_own_rate_limit() {
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (ses, legacy) = (Upstream::new(), Upstream::new());
    let context = guarded(ses.clone(), legacy.clone());
    let counted = || context.guard.snapshot().figures;
    let mut s = TestSession::start(context.clone()).await;
    s.ehlo().await;
    let message = "From: a@goo.ne.jp\r\nSubject: x\r\n\r\nbody\r\n";

    // The relay's own send-rate limit is no answer of SES's.
    ses.answer(Err(UpstreamError::local(
        crate::message::forward::Local::RateLimited,
    )));
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data(message, "451 4.7.0").await;
    assert_eq!((counted().outcomes, counted().failures), (0, 0));

    // SES throttling is.
    ses.answer(Err(UpstreamError::ses(
        "Throttling",
        "Maximum sending rate exceeded.",
    )));
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data(message, "451 4.4.5").await;
    assert_eq!((counted().outcomes, counted().failures), (1, 1));

    // A legacy failure says nothing about SES.
    legacy.answer(Err(UpstreamError::reply_of(
        crate::connection::smtp::Reply::new(550, [5, 1, 1], "No such user"),
    )));
    s.mail_from("a@legacy.example", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data(message, "550 5.1.1").await;
    assert_eq!(legacy.count(), 1);
    assert_eq!((counted().outcomes, counted().failures), (1, 1));
    // SES's error codes are counted, the legacy route's are not among them.
    let text = counted_metrics(&recorder);
    assert!(
        text.contains(r#"ses_relay_ses_errors_total{error="Throttling"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ses_relay_ses_errors_total{error="max-send-rate"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"error="smtp""#), "{text}");
}

#[tokio::test]
async fn the_messages_own_tags_reach_the_upstream() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    let message =
        "From: a@goo.ne.jp\r\nX-SES-MESSAGE-TAGS: campaign=winter\r\nSubject: x\r\n\r\nbody\r\n";
    s.data(message, "250 2.0.0").await;
    let (envelope, sent) = upstream.last();
    let tags: Vec<_> = envelope
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(tags, [("campaign", "winter")]);
    assert!(!sent.contains("X-SES-MESSAGE-TAGS"), "{sent}");
}
