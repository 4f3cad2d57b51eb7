use super::*;
use crate::config::RuleConfig;

fn pct(value: f64) -> Percent {
    Percent::new(value).unwrap()
}

fn router(rules: Vec<Rule>, percent: f64) -> Router {
    Router::new(true, rules, Share::fixed(pct(percent)))
}

fn rule(text: &str) -> Rule {
    let config: RuleConfig = toml::from_str(text).unwrap();
    config.rule()
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 1, 12));

#[test]
fn bucket_values_are_stable() {
    // Pinned: a change of hash, seed or key layout reshuffles live traffic mid-migration.
    assert_eq!(bucket("a@goo.ne.jp", "b@example.com"), PINNED[0]);
    assert_eq!(bucket("news@goo.ne.jp", "user@docomo.ne.jp"), PINNED[1]);
    assert_eq!(bucket("", "postmaster@example.org"), PINNED[2]);
    // Case does not matter.
    assert_eq!(bucket("A@GOO.NE.JP", "B@Example.COM"), PINNED[0]);
}

/// Cross-checked with the Python `xxhash` package: `xxh3_64_intdigest(key, seed) % 10000`.
const PINNED: [u32; 3] = [7538, 4682, 5131];

#[test]
fn percentages_resolve_hundredths() {
    assert_eq!(pct(0.0).hundredths(), 0);
    assert_eq!(pct(0.5).hundredths(), 50);
    assert_eq!(pct(10.0).hundredths(), 1000);
    assert_eq!(pct(12.34).hundredths(), 1234);
    assert_eq!(pct(100.0).hundredths(), 10_000);
    assert_eq!(Percent::from_hundredths(15_000), Percent::ALL);
    // Every value of two decimals is exact, and shows as it was written.
    for hundredths in 0..=10_000u16 {
        let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
        let value: f64 = text.parse().unwrap();
        let percent = Percent::new(value).unwrap();
        assert_eq!(percent.hundredths(), hundredths, "{text}");
        assert_eq!(percent.as_f64(), value, "{text}");
    }
}

#[test]
fn one_validation_refuses_what_is_not_exactly_two_decimals() {
    for bad in [
        12.345,
        12.3400000001,
        99.999999999,
        1e-320,
        0.001,
        100.01,
        101.0,
        1e308,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -1.0,
        -0.0,
        -0.01,
    ] {
        assert!(Percent::new(bad).is_err(), "{bad} accepted");
    }
    assert!(matches!(Percent::new(-0.0), Err(PercentError::Negative(_))));
    assert!(matches!(
        Percent::new(12.3400000001),
        Err(PercentError::TooPrecise(_))
    ));
    // JSON keeps the sign of zero (`-0` and `-0.0` are both -0.0): refused.
    assert!(serde_json::from_str::<Percent>("-0").is_err());
    assert!(serde_json::from_str::<Percent>("-0.0").is_err());
    assert_eq!(serde_json::from_str::<Percent>("0").unwrap(), Percent::ZERO);
    assert!(serde_json::from_str::<Percent>("\"50\"").is_err());
    assert_eq!(serde_json::to_string(&pct(12.34)).unwrap(), "12.34");
}

#[test]
fn split_is_uniform_and_deterministic() {
    for percent in [10.0, 50.0, 90.0] {
        let r = router(Vec::new(), percent);
        let ses = (0..10_000)
            .filter(|i| {
                r.choose(CLIENT, &format!("sender{i}@goo.ne.jp"), "rcpt@example.com") == Route::Ses
            })
            .count();
        let share = ses as f64 / 100.0;
        assert!((share - percent).abs() <= 1.5, "{percent}%: got {share}%");
        let again = r.choose(CLIENT, "sender7@goo.ne.jp", "rcpt@example.com");
        assert_eq!(
            again,
            r.choose(CLIENT, "sender7@goo.ne.jp", "rcpt@example.com")
        );
    }
}

#[test]
fn raising_the_percentage_only_moves_legacy_to_ses() {
    let writer = ShareWriter::new(Percent::ZERO);
    let r = Router::new(true, Vec::new(), writer.reader());
    let keys: Vec<String> = (0..5_000).map(|i| format!("u{i}@goo.ne.jp")).collect();
    let mut before: Vec<Route> = keys
        .iter()
        .map(|k| r.choose(CLIENT, k, "x@example.com"))
        .collect();
    assert!(
        before.iter().all(|&x| x == Route::Legacy),
        "0 % is all legacy"
    );
    for percent in [0.5, 10.0, 50.0, 99.99, 100.0] {
        writer.publish(pct(percent));
        let now: Vec<Route> = keys
            .iter()
            .map(|k| r.choose(CLIENT, k, "x@example.com"))
            .collect();
        for (was, is) in before.iter().zip(&now) {
            assert!(
                !(*was == Route::Ses && *is == Route::Legacy),
                "{percent}%: SES moved back to legacy"
            );
        }
        before = now;
    }
    assert!(before.iter().all(|&x| x == Route::Ses), "100 % is all SES");
}

#[test]
fn rules_first_match_wins() {
    let rules = vec![
        rule("clients = [\"10.99.1.11/32\"]\nroute = \"ses\""),
        rule("recipient-domains = [\"docomo.ne.jp\"]\nroute = \"legacy\""),
        rule("sender-domains = [\"news.goo.ne.jp\"]\nroute = \"ses\""),
    ];
    let r = router(rules, 0.0);
    let server = "10.99.1.11".parse().unwrap();
    let mapped = "::ffff:10.99.1.11".parse().unwrap();
    // The first rule wins over the second.
    assert_eq!(
        r.choose(server, "a@goo.ne.jp", "x@docomo.ne.jp"),
        Route::Ses
    );
    assert_eq!(
        r.choose(mapped, "a@goo.ne.jp", "x@docomo.ne.jp"),
        Route::Ses
    );
    assert_eq!(
        r.choose(CLIENT, "a@news.goo.ne.jp", "x@docomo.ne.jp"),
        Route::Legacy
    );
    assert_eq!(
        r.choose(CLIENT, "a@news.goo.ne.jp", "x@example.com"),
        Route::Ses
    );
    // Subdomains match; look-alikes do not.
    assert_eq!(
        r.choose(CLIENT, "a@mail.news.goo.ne.jp", "x@example.com"),
        Route::Ses
    );
    assert_eq!(
        r.choose(CLIENT, "a@fakenews.goo.ne.jp", "x@example.com"),
        Route::Legacy
    );
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@DOCOMO.ne.jp"),
        Route::Legacy
    );
    // Otherwise the percentage (0 % here).
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@example.com"),
        Route::Legacy
    );
}

#[test]
fn without_a_legacy_route_everything_goes_to_ses() {
    let r = Router::new(
        false,
        vec![rule("sender-domains = [\"goo.ne.jp\"]\nroute = \"legacy\"")],
        Share::fixed(Percent::ZERO),
    );
    assert_eq!(r.choose(CLIENT, "a@goo.ne.jp", "b@example.com"), Route::Ses);
}

#[test]
fn internationalized_addresses_go_to_legacy_whatever_the_percentage_and_rules() {
    let ses_rule = rule("clients = [\"10.99.0.0/16\"]\nroute = \"ses\"");
    let r = router(vec![ses_rule], 100.0);
    assert_eq!(r.choose(CLIENT, "a@goo.ne.jp", "b@example.com"), Route::Ses);
    for (sender, first) in [
        ("\u{5c71}\u{7530}@goo.ne.jp", "b@example.com"),
        ("a@goo.ne.jp", "\u{3042}@example.jp"),
        ("a@goo.ne.jp", "b@\u{4f8b}\u{3048}.jp"),
    ] {
        assert_eq!(
            r.choose(CLIENT, sender, first),
            Route::Legacy,
            "{sender} {first}"
        );
    }
    // Without a legacy route there is nowhere else: SES, where RCPT refuses it.
    let only_ses = Router::new(false, Vec::new(), Share::fixed(Percent::ALL));
    assert_eq!(
        only_ses.choose(CLIENT, "a@goo.ne.jp", "\u{3042}@example.jp"),
        Route::Ses
    );
    assert_eq!(BUILT_IN_RULES[0].route, Route::Legacy);
}

#[test]
fn set_rules_replaces_the_rules_for_the_next_choice() {
    let r = router(
        vec![rule(
            "recipient-domains = [\"docomo.ne.jp\"]\nroute = \"ses\"",
        )],
        0.0,
    );
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@docomo.ne.jp"),
        Route::Ses
    );
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@example.com"),
        Route::Legacy
    );
    // A reload: the old rule is gone, the new one applies at once.
    r.set_rules(vec![rule(
        "recipient-domains = [\"example.com\"]\nroute = \"ses\"",
    )]);
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@docomo.ne.jp"),
        Route::Legacy
    );
    assert_eq!(r.choose(CLIENT, "a@goo.ne.jp", "x@example.com"), Route::Ses);
    // And a reload without rules leaves only the percentage.
    r.set_rules(Vec::new());
    assert_eq!(
        r.choose(CLIENT, "a@goo.ne.jp", "x@example.com"),
        Route::Legacy
    );
    assert_eq!(
        r.ses_percent(),
        0.0,
        "a rules reload leaves the percentage alone"
    );
}
