//! Session tests of the route a transaction takes at its first RCPT.

use super::*;

#[tokio::test]
async fn internationalized_addresses_are_refused_on_ses_and_routed_to_legacy() {
    // SES only: a non-ASCII recipient (or sender) is refused, ASCII ones pass.
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.cmd("MAIL FROM:<a@goo.ne.jp> SMTPUTF8", "250").await;
    let refused = s
        .cmd("RCPT TO:<\u{5c71}\u{7530}@example.jp>", "553 5.6.7")
        .await;
    assert!(refused.contains("SES does not deliver"), "{refused}");
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.cmd("RCPT TO:<b@\u{4f8b}\u{3048}.jp>", "553 5.6.7").await;
    s.data(MESSAGE, "250").await;
    assert_eq!(upstream.last().0.rcpt_to, ["b@example.com"]);
    s.cmd("MAIL FROM:<\u{5c71}\u{7530}@goo.ne.jp> SMTPUTF8", "250")
        .await;
    s.cmd("RCPT TO:<b@example.com>", "553 5.6.7").await;
    s.cmd("RSET", "250").await;

    // With a legacy route, at 100 % SES: the transaction goes to legacy.
    let ses = Upstream::new();
    let legacy = Upstream::new();
    // The router alone decides: at 100 % SES, the built-in rule sends it to legacy.
    let router = Router::new(true, Vec::new(), Share::fixed(Percent::ALL));
    let upstreams = Upstreams::new(ses.clone(), Some(legacy.clone()));
    let context = Arc::new(SessionContext::new(live(smtp_config()), router, upstreams));
    let mut s = TestSession::start(context).await;
    s.ehlo().await;
    for (from, to) in [
        ("a@goo.ne.jp", "\u{5c71}\u{7530}@example.jp"),
        ("\u{5c71}\u{7530}@goo.ne.jp", "b@example.com"),
    ] {
        s.cmd(&format!("MAIL FROM:<{from}> SMTPUTF8"), "250").await;
        s.cmd(&format!("RCPT TO:<{to}>"), "250").await;
        s.data(MESSAGE, "250").await;
        assert_eq!(legacy.last().0.route, crate::message::route::Route::Legacy);
    }
    assert_eq!((ses.count(), legacy.count()), (0, 2));
    s.mail_from("a@goo.ne.jp", "250").await;
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.data(MESSAGE, "250").await;
    assert_eq!((ses.count(), legacy.count()), (1, 2));
}
