//! Parsing, scope and keys of feedback queue messages.

use super::*;

const BOUNCE: &str = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"a@example.net"}]},"mail":{"messageId":"x","sendingAccountId":"123456789012","tags":{"ses:configuration-set":["relay"]}}}"#;

const TOPIC: &str = "arn:aws:sns:ap-northeast-1:123456789012:ses-events";

fn wrapped(message: &str, id: &str, topic: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": topic,
        "Message": message,
    })
    .to_string()
}

#[test]
fn raw_and_sns_wrapped_bodies_parse() {
    assert_eq!(parse(BOUNCE), Ok(SesEvent::PermanentBounce));
    assert_eq!(
        parse(&wrapped(BOUNCE, "1", TOPIC)),
        Ok(SesEvent::PermanentBounce)
    );
    assert_eq!(
        parse(r#"{"eventType":"Send","mail":{}}"#),
        Ok(SesEvent::Send)
    );
    assert_eq!(
        parse(r#"{"notificationType":"Complaint","complaint":{}}"#),
        Ok(SesEvent::Complaint)
    );
    assert_eq!(
        parse(r#"{"notificationType":"Bounce","bounce":{"bounceType":"Transient"}}"#),
        Ok(SesEvent::TransientBounce)
    );
    assert_eq!(
        parse(r#"{"eventType":"Bounce","bounce":{"bounceType":"Undetermined"}}"#),
        Ok(SesEvent::TransientBounce)
    );
    assert_eq!(
        parse(r#"{"eventType":"Bounce"}"#),
        Ok(SesEvent::PermanentBounce)
    );
    assert_eq!(parse(r#"{"eventType":"Open"}"#), Ok(SesEvent::Other));
    assert_eq!(
        parse(r#"{"Type":"SubscriptionConfirmation","Message":"confirm"}"#),
        Ok(SesEvent::Other)
    );
}

#[test]
fn poison_is_an_error_not_a_panic() {
    assert!(matches!(parse("not json"), Err(ParseError::Json(_))));
    assert_eq!(parse(r#"{"hello":1}"#), Err(ParseError::NoType));
    assert!(matches!(
        parse(r#"{"Type":"Notification","Message":"{broken"}"#),
        Err(ParseError::Json(_))
    ));
    assert_eq!(
        parse(r#"{"Type":"Notification","Message":5}"#),
        Err(ParseError::NoType)
    );
    assert_eq!(parse(r#"{"eventType":7}"#), Err(ParseError::NoType));
    assert!(matches!(
        read(r#"{"eventType":"Send","mail":{"tags":{"ses:configuration-set":"relay"}}}"#),
        Ok(Notification {
            configuration_set: None,
            ..
        })
    ));
}

#[test]
fn only_sends_permanent_bounces_and_complaints_reach_the_guard() {
    assert_eq!(SesEvent::Send.guard_kind(), Some(EventKind::Send));
    assert_eq!(
        SesEvent::PermanentBounce.guard_kind(),
        Some(EventKind::Bounce)
    );
    assert_eq!(SesEvent::Complaint.guard_kind(), Some(EventKind::Complaint));
    assert_eq!(SesEvent::TransientBounce.guard_kind(), None);
    assert_eq!(SesEvent::Delivery.guard_kind(), None);
}

fn scope() -> Scope {
    Scope {
        configuration_set: "relay".into(),
        account_id: "123456789012".into(),
        topic_arn: TOPIC.into(),
    }
}

#[test]
fn only_this_relays_configuration_set_account_and_topic_are_admitted() {
    let ours = read(&wrapped(BOUNCE, "1", TOPIC)).unwrap();
    assert_eq!(ours.configuration_set.as_deref(), Some("relay"));
    assert_eq!(ours.account.as_deref(), Some("123456789012"));
    assert_eq!(scope().admits(&ours), Ok(()));
    let other_set = BOUNCE.replace("[\"relay\"]", "[\"marketing\"]");
    let other_account = BOUNCE.replace("123456789012", "210987654321");
    let no_tags = r#"{"eventType":"Bounce","bounce":{},"mail":{"messageId":"x","sendingAccountId":"123456789012"}}"#;
    for (body, why) in [
        (wrapped(&other_set, "2", TOPIC), Ignored::ConfigurationSet),
        (wrapped(no_tags, "3", TOPIC), Ignored::ConfigurationSet),
        (wrapped(&other_account, "4", TOPIC), Ignored::Account),
        (
            wrapped(
                BOUNCE,
                "5",
                "arn:aws:sns:ap-northeast-1:123456789012:forged",
            ),
            Ignored::Topic,
        ),
        // Raw delivery carries no topic to check.
        (BOUNCE.to_string(), Ignored::Topic),
    ] {
        let notification = read(&body).unwrap();
        assert_eq!(scope().admits(&notification), Err(why), "{body}");
    }
    // Without account-id and topic-arn, only the configuration set is checked.
    let loose = Scope {
        configuration_set: "relay".into(),
        ..Scope::default()
    };
    assert_eq!(loose.admits(&read(BOUNCE).unwrap()), Ok(()));
    assert_eq!(loose.admits(&read(&other_account).unwrap()), Ok(()));
    assert_eq!(
        loose.admits(&read(&other_set).unwrap()),
        Err(Ignored::ConfigurationSet)
    );
    assert_eq!(Ignored::ConfigurationSet.label(), "configuration-set");
    assert_eq!(Ignored::Duplicate.label(), "duplicate");
    assert_eq!(Ignored::Malformed.label(), "malformed");
}

#[test]
fn keys_are_the_sns_message_id_or_the_ses_message_event_and_recipients() {
    let key = |body: &str| read(body).unwrap().key;
    // The same SNS message twice: one key, whatever else differs.
    assert_eq!(
        key(&wrapped(BOUNCE, "sns-1", TOPIC)),
        key(&wrapped(r#"{"eventType":"Send"}"#, "sns-1", TOPIC))
    );
    assert_ne!(
        key(&wrapped(BOUNCE, "sns-1", TOPIC)),
        key(&wrapped(BOUNCE, "sns-2", TOPIC))
    );
    // Raw: the same event twice is one key; another recipient, another type
    // or another message is another key.
    assert_eq!(key(BOUNCE), key(BOUNCE));
    assert_ne!(
        key(BOUNCE),
        key(&BOUNCE.replace("a@example.net", "b@example.net"))
    );
    let send = r#"{"eventType":"Send","mail":{"messageId":"x","destination":["a@example.net"]}}"#;
    assert_ne!(key(BOUNCE), key(send));
    assert_ne!(key(send), key(&send.replace("\"x\"", "\"y\"")));
    assert_eq!(
        key(send),
        key(r#"{"mail":{"destination":["a@example.net"],"messageId":"x"},"eventType":"Send"}"#),
        "the same event, its fields in another order"
    );
}
