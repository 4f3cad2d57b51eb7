//! Target (b): message preparation on arbitrary bytes: header splitting,
//! removal of the client's DKIM-Signature and X-SES-* headers, signing.
//!
//! Input layout: byte 0 picks the envelope (bit 0: legacy route instead of
//! SES; bit 1: SMTPUTF8; bit 2: TLS; bit 3: a preparer that signs the
//! legacy route too), the rest is the message as DATA delivered it. Seed
//! files start with a digit, `0` being a plain SES transaction.
//!
//! Two keys: Ed25519 for `goo.ne.jp` (fast, so most signing runs are cheap)
//! and the RSA demo key for `rsa.example`, both dev-only keys in the repo.
//!
//! Invariants, for every message `prepare` accepts:
//! - the body leaves byte for byte as it came;
//! - on the SES route the message starts with our `X-SES-CONFIGURATION-SET`
//!   and holds no other `X-SES-*` header, in any case;
//! - a message we sign on the SES route leaves with exactly one
//!   `DKIM-Signature`, ours (item 9);
//! - on the SES route a message has exactly one `From:` and we only sign
//!   with the key of its domain, so a second `From:` never borrows our
//!   signature (item 10);
//! - the `EmailTags` (item 11) are SES-valid, at most `MAX_TAGS`, one per
//!   name, the `[ses] tags` default winning over the message's own, and only
//!   on the SES route;
//! - nothing is signed on the legacy route unless the preparer says so.

use std::sync::LazyLock;

use ses_relay::config::{DkimConfig, DkimKeyConfig};
use ses_relay::message::envelope::{Envelope, MAX_TAGS, MailFrom, tag_text_problem};
use ses_relay::message::prepare::dkim::DkimKeys;
use ses_relay::message::prepare::{
    CONFIGURATION_SET_HEADER, Preparer, header_from_domain, headers,
};
use ses_relay::message::route::Route;

/// The configuration set the preparers write.
const CONFIGURATION_SET: &str = "fuzz-set";

/// The `[ses] tags` defaults the preparers carry.
const DEFAULT_TAG: (&str, &str) = ("campaign", "fuzz-default");

/// `[signs the SES route only, signs legacy too]`.
static PREPARERS: LazyLock<[Preparer; 2]> = LazyLock::new(|| [preparer(false), preparer(true)]);

fn preparer(sign_legacy: bool) -> Preparer {
    let key = |domain: &str, file: &str| DkimKeyConfig {
        domain: domain.into(),
        selector: "fuzz".into(),
        private_key: format!("{}/{file}", env!("CARGO_MANIFEST_DIR")).into(),
        created: None,
    };
    let config = DkimConfig {
        keys: vec![
            key("goo.ne.jp", "keys/ed25519-fuzz.pem"),
            key("rsa.example", "../etc/dev/dkim-demo.pem"),
        ],
        sign_subdomains: true,
        ..DkimConfig::default()
    };
    let keys = DkimKeys::load(&config).expect("the fuzz keys load");
    let default_tags = [(DEFAULT_TAG.0.to_string(), DEFAULT_TAG.1.to_string())];
    Preparer::new("relay.fuzz", keys, CONFIGURATION_SET, sign_legacy)
        .with_default_tags(default_tags.iter().map(|(n, v)| (n, v)))
}

/// The target: see the module docs.
pub fn run(data: &[u8]) {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let route = if flags & 1 == 0 {
        Route::Ses
    } else {
        Route::Legacy
    };
    let preparer = &PREPARERS[usize::from(flags & 8 != 0)];
    let envelope = Envelope {
        id: "0123456789ABCDEF".into(),
        client: "10.99.1.11:40000".parse().expect("an address"),
        helo: "mx1.goo.ne.jp".into(),
        tls: flags & 4 != 0,
        esmtp: true,
        mail: MailFrom {
            address: "a@goo.ne.jp".into(),
            size: message.len(),
            body_8bit: false,
            smtputf8: flags & 2 != 0,
        },
        rcpt_to: vec!["b@example.com".into()],
        route,
        tags: Vec::new(),
    };
    let Ok(prepared) = preparer.prepare(&envelope, message.to_vec()) else {
        return; // a refusal is an answer; not panicking is the point
    };
    let out = &prepared.message;

    let (fields_in, body_at) = headers::split(message);
    assert!(
        out.ends_with(&message[body_at..]),
        "the body changed on the way through"
    );

    let (fields_out, _) = headers::split(out);
    let count = |name: &str| fields_out.iter().filter(|f| f.is(name)).count();
    if route == Route::Ses {
        let ours = format!("{CONFIGURATION_SET_HEADER}: {CONFIGURATION_SET}\r\n");
        assert!(
            out.starts_with(ours.as_bytes()),
            "the SES route's message does not start with our configuration set"
        );
        let x_ses: Vec<_> = fields_out
            .iter()
            .filter(|f| f.name.len() >= 6 && f.name[..6].eq_ignore_ascii_case(b"x-ses-"))
            .map(|f| String::from_utf8_lossy(f.raw))
            .collect();
        assert_eq!(x_ses.len(), 1, "X-SES-* headers beside ours: {x_ses:?}");
        let names: Vec<&str> = prepared.tags.iter().map(|t| t.name.as_str()).collect();
        assert!(names.len() <= MAX_TAGS, "{} tags", names.len());
        for tag in &prepared.tags {
            assert_eq!(tag_text_problem(&tag.name), None, "tag name {:?}", tag.name);
            assert_eq!(
                tag_text_problem(&tag.value),
                None,
                "tag value {:?}",
                tag.value
            );
            assert_eq!(
                names.iter().filter(|n| **n == tag.name).count(),
                1,
                "tag {:?} twice: {names:?}",
                tag.name
            );
        }
        let default = prepared.tags.iter().find(|t| t.name == DEFAULT_TAG.0);
        assert_eq!(
            default.map(|t| t.value.as_str()),
            Some(DEFAULT_TAG.1),
            "the [ses] tags default lost: {:?}",
            prepared.tags
        );
        let froms = fields_in.iter().filter(|f| f.is("From")).count();
        assert_eq!(
            froms, 1,
            "the SES route took a message with {froms} From headers"
        );
    } else {
        assert!(prepared.tags.is_empty(), "tags on the legacy route");
    }

    if let Some((domain, _)) = &prepared.signed_by {
        assert!(
            route == Route::Ses || preparer_signs_legacy(flags),
            "signed on the legacy route"
        );
        if route == Route::Ses {
            assert_eq!(
                count("DKIM-Signature"),
                1,
                "more than our DKIM-Signature leaves for SES"
            );
        }
        // The legacy route keeps its own rules: one From is SES's demand.
        let froms = fields_in
            .iter()
            .filter(|f| route == Route::Ses && f.is("From"));
        for from in froms {
            // Read under a plain name, so `from :` parses as `From:` does.
            let mut field = b"From:".to_vec();
            field.extend_from_slice(from.value());
            field.extend_from_slice(b"\r\n");
            let key = header_from_domain(&field)
                .and_then(|d| preparer.dkim().key_for(&d).map(|k| k.domain.clone()));
            assert_eq!(
                key.as_deref(),
                Some(domain.as_str()),
                "signed for d={domain} over {:?}",
                String::from_utf8_lossy(from.raw)
            );
        }
    }
}

fn preparer_signs_legacy(flags: u8) -> bool {
    flags & 8 != 0
}
