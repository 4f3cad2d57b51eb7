//! How a transaction ended, in the one set of words the reply's class, the
//! transaction log line, the metrics and the status page all use.

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disposition {
    /// The upstream took it (the client heard 2xx).
    Delivered,
    /// Failed for now (4xx): upstream trouble, or ours; Postfix retries.
    Deferred,
    /// Failed for good (5xx) by the upstream's (or the route's) verdict; Postfix bounces.
    Rejected,
    /// The client's own mistake (bare CR/LF, oversize, a shape SES refuses):
    /// nothing went upstream, and it is kept out of every success ratio.
    Refused,
}

impl Disposition {
    /// Every disposition, in the order tables list them.
    pub const ALL: [Disposition; 4] = [
        Disposition::Delivered,
        Disposition::Deferred,
        Disposition::Rejected,
        Disposition::Refused,
    ];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Delivered => "delivered",
            Disposition::Deferred => "deferred",
            Disposition::Rejected => "rejected",
            Disposition::Refused => "refused",
        }
    }

    /// The status page's column heading.
    pub fn heading(self) -> &'static str {
        match self {
            Disposition::Delivered => "delivered",
            Disposition::Deferred => "deferred (4xx)",
            Disposition::Rejected => "rejected (5xx)",
            Disposition::Refused => "refused (client)",
        }
    }

    /// An upstream's (or the route's) verdict from the class of its reply
    /// code: 2xx delivered, 4xx deferred, anything else (5xx, and a reply
    /// out of place such as a 3xx) rejected.
    pub fn of_code(code: u16) -> Disposition {
        match code {
            200..=299 => Disposition::Delivered,
            400..=499 => Disposition::Deferred,
            _ => Disposition::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_contract() {
        let labels: Vec<_> = Disposition::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels, ["delivered", "deferred", "rejected", "refused"]);
    }

    #[test]
    fn status_page_headings_name_the_reply_class() {
        let headings: Vec<_> = Disposition::ALL.iter().map(|d| d.heading()).collect();
        assert_eq!(
            headings,
            [
                "delivered",
                "deferred (4xx)",
                "rejected (5xx)",
                "refused (client)"
            ]
        );
    }

    #[test]
    fn the_reply_class_decides() {
        assert_eq!(Disposition::of_code(250), Disposition::Delivered);
        assert_eq!(Disposition::of_code(299), Disposition::Delivered);
        assert_eq!(Disposition::of_code(400), Disposition::Deferred);
        assert_eq!(Disposition::of_code(451), Disposition::Deferred);
        assert_eq!(Disposition::of_code(499), Disposition::Deferred);
        assert_eq!(Disposition::of_code(500), Disposition::Rejected);
        assert_eq!(Disposition::of_code(554), Disposition::Rejected);
        assert_eq!(Disposition::of_code(354), Disposition::Rejected);
        assert_eq!(Disposition::of_code(600), Disposition::Rejected);
    }
}
