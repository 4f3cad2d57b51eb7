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

#[tokio::test]
async fn later_recipients_stay_on_the_route_the_first_one_chose() {
    // A legacy route exists and SES takes everything: the first (ASCII)
    // recipient opens SES, so a later non-ASCII one is refused there, not
    // chosen a route of its own (the router would send it to legacy).
    let ses = Upstream::new();
    let legacy = Upstream::new();
    let router = Router::new(true, Vec::new(), Share::fixed(Percent::ALL));
    let upstreams = Upstreams::new(ses.clone(), Some(legacy.clone()));
    let context = Arc::new(SessionContext::new(live(smtp_config()), router, upstreams));
    let mut s = TestSession::start(context).await;
    s.ehlo().await;
    s.cmd("MAIL FROM:<a@goo.ne.jp> SMTPUTF8", "250").await;
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.cmd("RCPT TO:<\u{5c71}\u{7530}@example.jp>", "553 5.6.7")
        .await;
    s.data(MESSAGE, "250").await;
    assert_eq!(ses.last().0.rcpt_to, ["b@example.com"]);
    assert_eq!(legacy.count(), 0);
}

#[tokio::test]
async fn mail_from_parameters_reach_the_route_as_declared() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    let refused = s
        .cmd("MAIL FROM:<\u{5c71}\u{7530}@goo.ne.jp>", "553 5.6.7")
        .await;
    assert!(refused.contains("SMTPUTF8"), "{refused}");
    s.cmd("MAIL FROM:<a@goo.ne.jp>", "250").await;
    let refused = s
        .cmd("RCPT TO:<\u{5c71}\u{7530}@example.jp>", "553 5.6.7")
        .await;
    assert!(
        refused.contains("needs MAIL FROM with SMTPUTF8"),
        "{refused}"
    );
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.data(MESSAGE, "250").await;
    let mail = upstream.last().0.mail;
    assert_eq!((mail.smtputf8, mail.body_8bit), (false, false));
    s.cmd("MAIL FROM:<a@goo.ne.jp> BODY=8BITMIME", "250").await;
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.data(MESSAGE, "250").await;
    let mail = upstream.last().0.mail;
    assert_eq!((mail.smtputf8, mail.body_8bit), (false, true));
    s.cmd("MAIL FROM:<a@goo.ne.jp> SMTPUTF8", "250").await;
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.data(MESSAGE, "250").await;
    let mail = upstream.last().0.mail;
    assert_eq!((mail.smtputf8, mail.body_8bit), (true, false));
}
