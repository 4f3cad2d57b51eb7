//! The judge's table: each condition's edges, the window's expiry, the
//! reject ratio's distinct clients.

use super::*;

#[test]
fn each_condition_has_its_label() {
    let labels = Condition::ALL.map(Condition::as_str);
    assert_eq!(
        labels,
        [
            "failure-ratio",
            "delay",
            "bounce-ratio",
            "complaint-ratio",
            "ses-paused",
            "reject-ratio"
        ]
    );
}

fn thresholds() -> Thresholds {
    Thresholds {
        window: Duration::from_secs(300),
        min_transactions: 10,
        max_failure_ratio: 0.05,
        max_delay: Duration::from_secs(300),
        max_bounce_ratio: 0.05,
        max_complaint_ratio: 0.001,
        max_reject_ratio: 0.05,
        min_reject_clients: 2,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn failure_ratio_waits_for_min_transactions_and_names_its_figures() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for _ in 0..9 {
        judge.outcome(start, false, None);
    }
    assert_eq!(judge.judge(start), None, "9 < min-transactions");
    judge.outcome(start, true, None);
    let trip = judge.judge(start).unwrap();
    assert_eq!(trip.condition, Condition::FailureRatio);
    assert_eq!(
        trip.reason,
        "guard: failure ratio 0.90 > 0.05 over 5m (9 of 10)"
    );
}

#[test]
fn failure_ratio_at_the_bound_holds_not_above_it_does() {
    let start = Instant::now();
    let mut judge = Judge::new(Thresholds {
        min_transactions: 200,
        ..thresholds()
    });
    for i in 0..200 {
        judge.outcome(start, i >= 10, None);
    }
    assert_eq!(
        judge.judge(start),
        None,
        "10 of 200 = 0.05 is not above 0.05"
    );
    let mut judge = Judge::new(Thresholds {
        min_transactions: 200,
        ..thresholds()
    });
    for i in 0..200 {
        judge.outcome(start, i >= 62, None);
    }
    assert_eq!(
        judge.judge(start).unwrap().reason,
        "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)"
    );
}

#[test]
fn window_expiry_drops_old_outcomes_exactly_at_the_window() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for _ in 0..10 {
        judge.outcome(start, false, None);
    }
    // At window - 1 s they still count; at the window they are gone.
    assert!(judge.figures(start + secs(299)).failures == 10);
    assert_eq!(judge.judge(start + secs(300)), None);
    let figures = judge.figures(start + secs(300));
    assert_eq!((figures.outcomes, figures.failures), (0, 0));
    // Half old failures, half new successes: only the new ones count.
    let mut judge = Judge::new(thresholds());
    for _ in 0..10 {
        judge.outcome(start, false, None);
    }
    for _ in 0..10 {
        judge.outcome(start + secs(200), true, None);
    }
    assert!(judge.judge(start + secs(299)).is_some());
    let mut judge = Judge::new(thresholds());
    for _ in 0..10 {
        judge.outcome(start, false, None);
    }
    for _ in 0..10 {
        judge.outcome(start + secs(200), true, None);
    }
    assert_eq!(judge.judge(start + secs(300)), None);
    assert_eq!(judge.figures(start + secs(300)).outcomes, 10);
}

#[test]
fn delay_trips_when_the_p95_is_over_max_delay_and_not_before() {
    let start = Instant::now();
    let mut judge = Judge::new(Thresholds {
        min_transactions: 20,
        ..thresholds()
    });
    // 20 samples: the p95 is the 19th smallest. One slow message is not enough.
    for _ in 0..19 {
        judge.outcome(start, true, Some(secs(10)));
    }
    judge.outcome(start, true, Some(secs(600)));
    assert_eq!(judge.judge(start), None);
    assert_eq!(judge.figures(start).delay_p95, Some(secs(10)));
    // Two slow ones out of 21 reach the 20th rank.
    judge.outcome(start, true, Some(secs(600)));
    let trip = judge.judge(start).unwrap();
    assert_eq!(trip.condition, Condition::Delay);
    assert_eq!(
        trip.reason,
        "guard: delay p95 10m > 5m over 5m (21 messages)"
    );
    // Exactly max-delay is not over it.
    let mut judge = Judge::new(Thresholds {
        min_transactions: 1,
        ..thresholds()
    });
    judge.outcome(start, true, Some(secs(300)));
    assert_eq!(judge.judge(start), None);
    // Failures carry no delay; messages without a date are left out.
    judge.outcome(start, false, Some(secs(900)));
    judge.outcome(start, true, None);
    assert_eq!(judge.figures(start).delays, 1);
}

#[test]
fn delay_needs_min_transactions_samples_and_expires() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for _ in 0..9 {
        judge.outcome(start, true, Some(secs(600)));
    }
    assert_eq!(judge.judge(start), None, "9 samples < 10");
    judge.outcome(start + secs(100), true, Some(secs(600)));
    assert!(judge.judge(start + secs(100)).is_some());
    let mut judge = Judge::new(thresholds());
    for _ in 0..10 {
        judge.outcome(start, true, Some(secs(600)));
    }
    assert_eq!(judge.judge(start + secs(300)), None);
    assert_eq!(judge.figures(start + secs(300)).delay_p95, None);
}

#[test]
fn bounce_and_complaint_ratios_are_over_sends_from_min_transactions() {
    let start = Instant::now();
    let mut judge = Judge::new(Thresholds {
        min_transactions: 100,
        ..thresholds()
    });
    for _ in 0..10 {
        judge.event(start, EventKind::Bounce);
    }
    for _ in 0..99 {
        judge.event(start, EventKind::Send);
    }
    assert_eq!(judge.judge(start), None, "99 sends < 100");
    judge.event(start, EventKind::Send);
    let trip = judge.judge(start).unwrap();
    assert_eq!(trip.condition, Condition::BounceRatio);
    assert_eq!(
        trip.reason,
        "guard: bounce ratio 0.10 > 0.05 over 5m (10 of 100 sends)"
    );
    // 1 complaint in 1000 sends is the bound; 2 is above it.
    let mut judge = Judge::new(Thresholds {
        min_transactions: 100,
        ..thresholds()
    });
    for _ in 0..1000 {
        judge.event(start, EventKind::Send);
    }
    judge.event(start, EventKind::Complaint);
    assert_eq!(judge.judge(start), None);
    judge.event(start, EventKind::Complaint);
    assert_eq!(
        judge.judge(start).unwrap().reason,
        "guard: complaint ratio 0.002 > 0.001 over 5m (2 of 1000 sends)"
    );
    // Sends expire with the window like everything else.
    let figures = judge.figures(start + secs(300));
    assert_eq!((figures.sends, figures.complaints), (0, 0));
}

#[test]
fn restart_empties_the_window() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for _ in 0..10 {
        judge.outcome(start, false, Some(secs(1)));
        judge.event(start, EventKind::Send);
    }
    judge.restart();
    assert_eq!(judge.figures(start), Figures::default());
}

#[test]
fn ratios_and_durations_read_as_in_the_issue() {
    assert_eq!(format_ratio(0.31), "0.31");
    assert_eq!(format_ratio(0.05), "0.05");
    assert_eq!(format_ratio(1.0), "1.00");
    assert_eq!(format_ratio(0.001), "0.001");
    assert_eq!(format_ratio(2.0 / 3.0), "0.6667");
    assert_eq!(format_duration(secs(300)), "5m");
    assert_eq!(format_duration(Duration::from_millis(600_400)), "10m");
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
}

fn client(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

#[test]
fn rejections_from_one_client_never_trip_and_are_not_failures() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for _ in 0..50 {
        judge.rejection(start, client(1));
    }
    for _ in 0..10 {
        judge.outcome(start, true, None);
    }
    assert_eq!(judge.judge(start), None, "one broken Postfix");
    let figures = judge.figures(start);
    assert_eq!(
        (
            figures.outcomes,
            figures.failures,
            figures.rejected,
            figures.reject_clients
        ),
        (60, 0, 50, 1)
    );
}

#[test]
fn rejections_from_min_reject_clients_trip_the_reject_ratio_above_its_bound() {
    let start = Instant::now();
    let mut judge = Judge::new(Thresholds {
        min_transactions: 20,
        ..thresholds()
    });
    for _ in 0..19 {
        judge.outcome(start, true, None);
    }
    judge.rejection(start, client(1));
    assert_eq!(judge.judge(start), None, "0.05 is not above 0.05");
    judge.rejection(start + secs(1), client(1));
    assert_eq!(judge.judge(start + secs(1)), None, "still one client");
    judge.rejection(start + secs(2), client(2));
    let trip = judge.judge(start + secs(2)).unwrap();
    assert_eq!(trip.condition, Condition::RejectRatio);
    assert_eq!(
        trip.reason,
        "guard: reject ratio 0.1364 > 0.05 over 5m (3 of 22, from 2 clients)"
    );
    // Once the first client's rejections leave the window, one client is left.
    let mut judge = Judge::new(Thresholds {
        min_transactions: 2,
        ..thresholds()
    });
    judge.rejection(start, client(1));
    judge.rejection(start + secs(100), client(2));
    judge.rejection(start + secs(100), client(2));
    assert!(judge.judge(start + secs(299)).is_some());
    let mut judge = Judge::new(Thresholds {
        min_transactions: 2,
        ..thresholds()
    });
    judge.rejection(start, client(1));
    judge.rejection(start + secs(100), client(2));
    judge.rejection(start + secs(100), client(2));
    assert_eq!(judge.judge(start + secs(300)), None);
    assert_eq!(judge.figures(start + secs(300)).reject_clients, 1);
}

#[test]
fn the_reject_ratio_waits_for_min_transactions() {
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    for n in 0..9 {
        judge.rejection(start, client(n));
    }
    assert_eq!(judge.judge(start), None, "9 outcomes < 10");
    judge.rejection(start, client(9));
    assert_eq!(
        judge.judge(start).unwrap().condition,
        Condition::RejectRatio
    );
}

#[test]
fn the_reject_ratio_exactly_at_its_bound_holds_not_even_from_enough_clients() {
    let start = Instant::now();
    let mut judge = Judge::new(Thresholds {
        min_transactions: 40,
        ..thresholds()
    });
    for _ in 0..38 {
        judge.outcome(start, true, None);
    }
    judge.rejection(start, client(1));
    judge.rejection(start, client(2));
    assert_eq!(
        judge.judge(start),
        None,
        "2 of 40 = 0.05 from 2 clients is not above 0.05"
    );
    judge.rejection(start, client(3));
    assert_eq!(
        judge.judge(start).map(|trip| trip.condition),
        Some(Condition::RejectRatio)
    );
}

#[test]
fn durations_round_to_the_nearest_second() {
    assert_eq!(format_duration(Duration::from_millis(299_500)), "5m");
    assert_eq!(format_duration(Duration::from_millis(299_499)), "4m 59s");
    assert_eq!(format_duration(Duration::from_millis(1_500)), "2s");
}

#[test]
fn delay_p95_rank_follows_the_sample_count() {
    let start = Instant::now();
    // 10 samples: the p95 is the 10th smallest, so one slow message is the p95.
    let mut judge = Judge::new(thresholds());
    for _ in 0..9 {
        judge.outcome(start, true, Some(secs(10)));
    }
    judge.outcome(start, true, Some(secs(600)));
    assert_eq!(
        judge.judge(start).map(|trip| trip.condition),
        Some(Condition::Delay)
    );
    // 40 samples: the p95 is the 38th smallest, so two slow ones are not enough.
    let mut judge = Judge::new(thresholds());
    for _ in 0..38 {
        judge.outcome(start, true, Some(secs(10)));
    }
    judge.outcome(start, true, Some(secs(600)));
    judge.outcome(start, true, Some(secs(600)));
    assert_eq!(judge.judge(start), None);
    judge.outcome(start, true, Some(secs(600)));
    assert_eq!(
        judge.judge(start).map(|trip| trip.condition),
        Some(Condition::Delay),
        "3 of 41: the 39th smallest is slow"
    );
}
