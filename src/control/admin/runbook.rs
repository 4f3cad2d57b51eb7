//! `GET /runbook`: the operations guide (`docs/operations.md`) this binary
//! was built with, so the status page's runbook links work wherever the page
//! opens (no documentation site or internet needed at 3 a.m., and the text
//! matches the running version). The markdown is shown as it is written,
//! wrapped to the screen; only its headings become HTML, each with the
//! anchor a forge's renderer gives it (`## Cutover runbook` →
//! `#cutover-runbook`), so the page's links and a link to the repository's
//! copy name the same sections.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::status::escape;

/// The guide, compiled in.
const OPERATIONS_MD: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"));

/// The anchor of a heading's text: lowercase, letters, digits, `-` and `_`
/// kept, spaces to `-`, the rest dropped.
pub(crate) fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `markdown` as HTML: headings anchored (a repeated anchor gets `-1`,
/// `-2`…), everything else escaped as written.
fn render(markdown: &str) -> String {
    let mut out = String::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut text = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let level = line.bytes().take_while(|&b| b == b'#').count();
        let heading = !fenced && (1..=6).contains(&level) && line[level..].starts_with(' ');
        if !heading {
            text.push_str(&escape(line));
            text.push('\n');
            continue;
        }
        flush(&mut text, &mut out);
        let title = line[level..].trim();
        let mut id = anchor(title);
        let n = seen.entry(id.clone()).or_insert(0);
        if *n > 0 {
            id = format!("{id}-{n}");
        }
        *n += 1;
        out.push_str(&format!(
            "<h{level} id=\"{}\"><a href=\"#{0}\">{}</a></h{level}>\n",
            escape(&id),
            escape(title)
        ));
    }
    flush(&mut text, &mut out);
    out
}

fn flush(text: &mut String, out: &mut String) {
    if !text.trim().is_empty() {
        out.push_str("<div class=\"md\">");
        out.push_str(text.trim_matches('\n'));
        out.push_str("</div>\n");
    }
    text.clear();
}

/// The page, rendered once.
pub fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>ses-relay runbook</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: .8em; max-width: 60em; color: #222; }}
.md {{ white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .9em; }}
h1 a, h2 a, h3 a, h4 a {{ color: inherit; text-decoration: none; }}
</style></head><body>
<p><a href="/">← status page</a> · ses-relay {version}: <code>docs/operations.md</code> of this build</p>
{body}</body></html>
"#,
            version = crate::daemon::build_info::VERSION,
            body = render(OPERATIONS_MD),
        )
    })
}

/// Whether the guide has a heading with this anchor.
#[cfg(test)]
pub(crate) fn has_anchor(id: &str) -> bool {
    page().contains(&format!(" id=\"{}\">", escape(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_a_forge_s_anchors_and_text_is_escaped() {
        assert_eq!(anchor("Cutover runbook"), "cutover-runbook");
        assert_eq!(anchor("1. Advance notice"), "1-advance-notice");
        assert_eq!(anchor("`[smtp]` keys & more"), "smtp-keys--more");
        let html = render(
            "# Title\ntext <script>x</script>\n```\n# not a heading\n```\n## Title\n###no space\n",
        );
        assert!(html.contains("<h1 id=\"title\">"), "{html}");
        assert!(html.contains("<h2 id=\"title-1\">"), "{html}");
        assert!(
            html.contains("text &lt;script&gt;x&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("# not a heading"), "{html}");
        assert!(html.contains("###no space"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn the_guide_is_compiled_in_with_its_sections() {
        for id in ["cutover-runbook", "after-a-trip", "dkim-key-rotation"] {
            assert!(has_anchor(id), "{id}");
        }
        assert!(!has_anchor("no-such-section"));
    }
}
