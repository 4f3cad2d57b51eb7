use super::*;
use crate::config::{DkimConfig, DkimKeyConfig};
use crate::message::envelope::MailFrom;

fn preparer() -> Preparer {
    let config = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: "gooid-21-prod".into(),
            private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
            created: None,
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
        mail: MailFrom {
            address: "a@goo.ne.jp".into(),
            ..MailFrom::default()
        },
        rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
        route: Route::Ses,
        tags: Vec::new(),
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
fn every_earlier_signature_is_removed_on_the_ses_route() {
    // Ours, a foreign one, one with a non-UTF-8 byte, a folded one in odd
    // case, one with white space before the colon.
    let msg = b"DKIM-Signature: v=1; a=rsa-sha256; d=goo.ne.jp; s=old;\r\n b=AAAA\r\n\
DKIM-Signature: v=1; d=example.org; s=x; b=BBBB\r\n\
DKIM-Signature: v=1; d=goo.ne.jp; s=bin\xff; b=CCCC\r\n\
dkim-SIGNATURE:\r\n v=1; d=evil.example;\r\n\ts=folded; b=DDDD\r\n\
From: a@goo.ne.jp\r\n\
DKIM-Signature \t: v=1; d=spaced.example; s=y; b=EEEE\r\n\r\nx\r\n"
        .to_vec();
    let prepared = preparer()
        .prepare(&envelope(&["b@example.com"]), msg)
        .unwrap();
    let (fields, _) = headers::split(&prepared.message);
    let signatures: Vec<_> = fields.iter().filter(|f| f.is("DKIM-Signature")).collect();
    assert_eq!(
        signatures.len(),
        1,
        "{}",
        String::from_utf8_lossy(&prepared.message)
    );
    let ours = String::from_utf8_lossy(signatures[0].value()).replace(char::is_whitespace, "");
    assert!(
        ours.contains("d=goo.ne.jp;") && ours.contains("s=gooid-21-prod;"),
        "{ours}"
    );
    for gone in ["BBBB", "CCCC", "DDDD", "EEEE", "s=old"] {
        assert!(
            !String::from_utf8_lossy(&prepared.message).contains(gone),
            "{gone}"
        );
    }
}

#[test]
fn legacy_route_keeps_todays_rule_for_signatures() {
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    let msg = b"DKIM-Signature: v=1; a=rsa-sha256; d=goo.ne.jp; s=old;\r\n b=AAAA\r\nDKIM-Signature: v=1; d=example.org; s=x; b=BBBB\r\nFrom: a@goo.ne.jp\r\n\r\nx\r\n";
    let out = String::from_utf8(preparer().prepare(&env, msg.to_vec()).unwrap().message).unwrap();
    assert!(!out.contains("s=old"));
    assert!(out.contains("d=example.org"));
    assert_eq!(out.matches("d=goo.ne.jp").count(), 1);
}

#[test]
fn without_our_key_one_signature_stays_and_more_are_refused() {
    let one = "DKIM-Signature: v=1; d=example.com; s=x; b=AAAA\r\nFrom: x@example.com\r\n\r\nx\r\n";
    let (out, prepared) = prepare(one, &["b@example.com"]);
    assert!(prepared.signed_by.is_none());
    assert_eq!(out.matches("DKIM-Signature:").count(), 1);
    let two = "DKIM-Signature: v=1; d=example.com; s=x; b=AAAA\r\ndkim-signature : v=1; d=example.net; s=y; b=BBBB\r\nFrom: x@example.com\r\n\r\nx\r\n";
    let err = preparer()
        .prepare(&envelope(&["b@example.com"]), two.as_bytes().to_vec())
        .unwrap_err();
    let PrepareError::Refused(refusal) = err else {
        panic!("{err}")
    };
    assert_eq!(refusal, Refusal::Signatures(2));
    let reply = refusal.reply();
    assert_eq!((reply.code, reply.status), (554, Some([5, 6, 0])));
    assert!(reply.text.contains("DKIM-Signature"), "{}", reply.text);
    // The legacy route passes them on as before.
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    assert!(preparer().prepare(&env, two.as_bytes().to_vec()).is_ok());
}

#[test]
fn exactly_one_from_on_the_ses_route() {
    let refused = |msg: &str| match preparer()
        .prepare(&envelope(&["b@example.com"]), msg.as_bytes().to_vec())
    {
        Err(PrepareError::Refused(refusal)) => refusal,
        other => panic!("{msg:?}: {other:?}"),
    };
    // The attack of the issue: the key used to follow the last From.
    let two = "From: ceo@bank.example\r\nFrom: e@goo.ne.jp\r\n\r\nx\r\n";
    assert_eq!(refused(two), Refusal::FromCount(2));
    for variant in [
        "From: ceo@bank.example\r\nfrom: e@goo.ne.jp\r\n\r\nx\r\n",
        "FROM: ceo@bank.example\r\nFrom : e@goo.ne.jp\r\n\r\nx\r\n",
        "From:\r\n ceo@bank.example\r\nfRoM\t: e@goo.ne.jp\r\n\r\nx\r\n",
    ] {
        assert_eq!(refused(variant), Refusal::FromCount(2), "{variant:?}");
    }
    let none = refused("Subject: no from\r\nX-From: a@goo.ne.jp\r\n\r\nx\r\n");
    assert_eq!(none, Refusal::FromCount(0));
    let reply = none.reply();
    assert_eq!((reply.code, reply.status), (550, Some([5, 6, 0])));
    // One From, however written, is fine and chooses the key.
    let (_, prepared) = prepare("from :  <a@goo.ne.jp>\r\n\r\nx\r\n", &["b@example.com"]);
    assert_eq!(prepared.signed_by.unwrap().0, "goo.ne.jp");
    // Legacy: not refused, but two Froms get no signature of ours.
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    let legacy = preparer().prepare(&env, two.as_bytes().to_vec()).unwrap();
    assert!(legacy.signed_by.is_none());
}

#[test]
fn client_ses_headers_are_removed_and_tags_carried_over() {
    let msg = "X-SES-Configuration-Set: attacker-set\r\n\
x-ses-source-arn: arn:aws:ses:ap-northeast-1:1:identity/evil.example\r\n\
X-SES-FROM-ARN : arn:x\r\n\
X-Ses-Tenant-Name: other\r\n\
X-SES-LIST-MANAGEMENT-OPTIONS: list; topic=t\r\n\
x-SES-message-TAGS: campaign=winter, service=attacker,\r\n bad tag=x\r\n\
From: a@goo.ne.jp\r\n\
X-Sesame: stays\r\n\r\nx\r\n";
    let mut defaults = std::collections::BTreeMap::new();
    defaults.insert("service".to_string(), "goo-mail".to_string());
    let preparer = preparer().with_default_tags(&defaults);
    let prepared = preparer
        .prepare(&envelope(&["b@example.com"]), msg.as_bytes().to_vec())
        .unwrap();
    let out = String::from_utf8(prepared.message).unwrap();
    let names = header_names(out.as_bytes());
    let ses: Vec<_> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().starts_with("x-ses-"))
        .collect();
    assert_eq!(ses, ["X-SES-CONFIGURATION-SET"], "{out}");
    assert!(out.starts_with("X-SES-CONFIGURATION-SET: prod-set\r\n"));
    assert!(out.contains("X-Sesame: stays"));
    let tags: Vec<(&str, &str)> = prepared
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(tags, [("service", "goo-mail"), ("campaign", "winter")]);
    assert_eq!(
        prepared.dropped_tags.len(),
        2,
        "{:?}",
        prepared.dropped_tags
    );
}

#[test]
fn unsigned_when_no_key_for_the_from_domain() {
    let msg = "From: x@example.com\r\n\r\nx\r\n";
    let (out, prepared) = prepare(msg, &["b@example.com"]);
    assert!(prepared.signed_by.is_none());
    assert!(!out.contains("DKIM-Signature"));
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    let prepared = preparer()
        .prepare(&env, b"Subject: no from\r\n\r\nx\r\n".to_vec())
        .unwrap();
    assert!(prepared.signed_by.is_none());
    assert!(String::from_utf8_lossy(&prepared.message).contains("Received: from mx1.goo.ne.jp"));
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
            created: None,
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

#[test]
fn the_helo_name_stands_in_received_only_as_printable_ascii() {
    assert_eq!(super::printable("mx1.goo.ne.jp"), "mx1.goo.ne.jp");
    assert_eq!(super::printable("[10.0.0.1]"), "[10.0.0.1]");
    assert_eq!(super::printable("mx\u{85}evil"), "mx?evil");
    assert_eq!(super::printable("a(b)c;Tue, 1"), "a?b?c?Tue,?1");
    assert_eq!(super::printable("\u{5c71}.example"), "?.example");
}

/// A client's own signature for our domain whose first tag is `d=` is
/// recognised as ours and replaced: exactly one DKIM-Signature leaves, ours,
/// on the legacy route (which keeps only signatures for other domains) and on
/// the SES route.
#[test]
fn a_client_signature_for_our_domain_with_d_first_is_replaced() {
    for raw in [
        &b"DKIM-Signature: d=goo.ne.jp; v=1; a=rsa-sha256; s=client; b=CLIENTSIG\r\n"[..],
        b"DKIM-Signature:d=goo.ne.jp;v=1;s=client;b=CLIENTSIG\r\n",
        b"dkim-signature : d=Goo.NE.jp; s=client;\r\n b=CLIENTSIG\r\n",
    ] {
        for route in [Route::Legacy, Route::Ses] {
            let mut env = envelope(&["b@example.com"]);
            env.route = route;
            let msg = [raw, b"From: a@goo.ne.jp\r\nSubject: x\r\n\r\nbody\r\n"].concat();
            let prepared = preparer().prepare(&env, msg).unwrap();
            let text = String::from_utf8_lossy(&prepared.message).into_owned();
            let (fields, _) = headers::split(&prepared.message);
            let signatures: Vec<_> = fields.iter().filter(|f| f.is("DKIM-Signature")).collect();
            assert_eq!(signatures.len(), 1, "{route:?} {raw:?}:\n{text}");
            let ours =
                String::from_utf8_lossy(signatures[0].value()).replace(char::is_whitespace, "");
            assert!(
                ours.contains("d=goo.ne.jp;") && ours.contains("s=gooid-21-prod;"),
                "{route:?}: {ours}"
            );
            assert!(!text.contains("CLIENTSIG"), "{route:?} {raw:?}:\n{text}");
            assert_eq!(
                prepared.signed_by,
                Some(("goo.ne.jp".into(), "gooid-21-prod".into()))
            );
        }
    }
    // A signature for another domain with d= first stays beside ours on the legacy route.
    let mut env = envelope(&["b@example.com"]);
    env.route = Route::Legacy;
    let msg = b"DKIM-Signature: d=example.org; s=x; b=OTHERSIG\r\nFrom: a@goo.ne.jp\r\n\r\nx\r\n";
    let out = String::from_utf8(preparer().prepare(&env, msg.to_vec()).unwrap().message).unwrap();
    assert_eq!(out.matches("DKIM-Signature:").count(), 2, "{out}");
    assert!(out.contains("OTHERSIG"), "{out}");
}
