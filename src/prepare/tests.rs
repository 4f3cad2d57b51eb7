use super::*;
use crate::config::{DkimConfig, DkimKeyConfig};

fn preparer() -> Preparer {
    let config = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: "gooid-21-prod".into(),
            private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
        }],
        ..DkimConfig::default()
    };
    Preparer::new(
        "relay.test",
        DkimKeys::load(&config).unwrap(),
        "prod-set",
        true,
    )
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        id: "0123456789ABCDEF".into(),
        client: "[::ffff:10.99.1.11]:40000".parse().unwrap(),
        helo: "mx1.goo.ne.jp".into(),
        tls: true,
        esmtp: true,
        mail_from: "a@goo.ne.jp".into(),
        rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
        smtputf8: false,
        declared_size: 0,
        route: Route::Ses,
    }
}

fn header_names(message: &[u8]) -> Vec<String> {
    let (fields, _) = headers::split(message);
    fields
        .iter()
        .map(|f| String::from_utf8_lossy(f.name).into_owned())
        .collect()
}

fn prepare(msg: &str, rcpts: &[&str]) -> (String, Prepared) {
    let prepared = preparer()
        .prepare(&envelope(rcpts), msg.as_bytes().to_vec())
        .unwrap();
    (
        String::from_utf8(prepared.message.clone()).unwrap(),
        prepared,
    )
}

#[test]
fn header_order_and_body_untouched() {
    let msg = "From: A <a@goo.ne.jp>\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody line\r\n";
    let (out, prepared) = prepare(msg, &["b@example.com"]);
    assert_eq!(
        header_names(out.as_bytes()),
        [
            "X-SES-CONFIGURATION-SET",
            "DKIM-Signature",
            "Received",
            "From",
            "To",
            "Subject"
        ]
    );
    assert!(out.starts_with("X-SES-CONFIGURATION-SET: prod-set\r\n"));
    assert!(out.ends_with("\r\n\r\nbody line\r\n"));
    assert_eq!(
        prepared.signed_by,
        Some(("goo.ne.jp".into(), "gooid-21-prod".into()))
    );
}

#[test]
fn signature_tags() {
    let msg = "From: a@goo.ne.jp\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <x@y>\r\nDate: Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\nbody\r\n";
    let (out, _) = prepare(msg, &["b@example.com"]);
    let (fields, _) = headers::split(out.as_bytes());
    let sig = fields.iter().find(|f| f.is("DKIM-Signature")).unwrap();
    let value: String = String::from_utf8_lossy(sig.value())
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(value.contains("d=goo.ne.jp;"), "{value}");
    assert!(value.contains("s=gooid-21-prod;"), "{value}");
    assert!(value.contains("c=relaxed/relaxed;"), "{value}");
    let h = value.split(';').find_map(|t| t.strip_prefix("h=")).unwrap();
    // Present headers once, From twice; never Message-ID, Date, Received or X-SES-*.
    let mut names: Vec<String> = h.split(':').map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    assert_eq!(names, ["from", "from", "subject", "to"]);
}

#[test]
fn client_configuration_set_is_replaced() {
    let msg = "X-SES-Configuration-Set: attacker-set\r\nFrom: a@goo.ne.jp\r\n\r\nx\r\n";
    let (out, _) = prepare(msg, &["b@example.com"]);
    assert!(!out.contains("attacker-set"));
    assert_eq!(out.matches("X-SES-CONFIGURATION-SET:").count(), 1);
}

#[test]
fn earlier_signature_of_our_domain_is_removed_others_kept() {
    let msg = "DKIM-Signature: v=1; a=rsa-sha256; d=goo.ne.jp; s=old;\r\n b=AAAA\r\nDKIM-Signature: v=1; d=example.org; s=x; b=BBBB\r\nFrom: a@goo.ne.jp\r\n\r\nx\r\n";
    let (out, _) = prepare(msg, &["b@example.com"]);
    assert!(!out.contains("s=old"));
    assert!(out.contains("d=example.org"));
    assert_eq!(out.matches("d=goo.ne.jp").count(), 1);
}

#[test]
fn unsigned_when_no_key_for_the_from_domain() {
    let msg = "From: x@example.com\r\n\r\nx\r\n";
    let (out, prepared) = prepare(msg, &["b@example.com"]);
    assert!(prepared.signed_by.is_none());
    assert!(!out.contains("DKIM-Signature"));
    let (out, prepared) = prepare("Subject: no from\r\n\r\nx\r\n", &["b@example.com"]);
    assert!(prepared.signed_by.is_none());
    assert!(out.contains("Received: from mx1.goo.ne.jp"));
}

#[test]
fn subdomain_from_is_signed_with_the_parent_key() {
    let (_, prepared) = prepare("From: news@News.goo.ne.jp\r\n\r\nx\r\n", &["b@example.com"]);
    assert_eq!(prepared.signed_by.unwrap().0, "goo.ne.jp");
}

#[test]
fn received_header_names_the_hop() {
    let (out, _) = prepare("From: a@goo.ne.jp\r\n\r\nx\r\n", &["only@example.com"]);
    assert!(out.contains("Received: from mx1.goo.ne.jp ([10.99.1.11])\r\n\tby relay.test (ses-relay) with ESMTPS id 0123456789ABCDEF\r\n\tfor <only@example.com>;"), "{out}");
    // Several recipients: none named (Bcc privacy).
    let (out, _) = prepare(
        "From: a@goo.ne.jp\r\n\r\nx\r\n",
        &["a@example.com", "b@example.com"],
    );
    assert!(!out.contains("for <"));
}

#[test]
fn from_domain_parsing() {
    assert_eq!(
        header_from_domain(b"From: \"=?UTF-8?B?5pel5pys?=\" <News@Goo.ne.jp>\r\n\r\n").as_deref(),
        Some("goo.ne.jp")
    );
    assert_eq!(header_from_domain(b"Subject: x\r\n\r\n"), None);
}

#[test]
fn legacy_route_gets_no_configuration_set_and_signs_per_setting() {
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    let msg = b"X-SES-CONFIGURATION-SET: client-set\r\nFrom: a@goo.ne.jp\r\n\r\nx\r\n".to_vec();
    let prepared = preparer().prepare(&env, msg.clone()).unwrap();
    let out = String::from_utf8(prepared.message).unwrap();
    assert!(!out.contains("prod-set"));
    assert!(out.contains("client-set"), "left alone on the legacy route");
    assert!(prepared.signed_by.is_some());
    let config = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: "s".into(),
            private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
        }],
        ..DkimConfig::default()
    };
    let unsigned = Preparer::new(
        "relay.test",
        DkimKeys::load(&config).unwrap(),
        "prod-set",
        false,
    );
    assert!(unsigned.prepare(&env, msg).unwrap().signed_by.is_none());
}
