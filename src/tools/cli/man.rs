//! The manual pages, as roff: `ses-relay(8)` from the command line's own
//! description (clap, so a new option cannot be left out) with the sections an
//! operator looks for (signals, files, exit status, environment), and
//! `ses-relay.toml(5)` rendered from `docs/configuration.md`, the one source of
//! the configuration reference (a test checks it against the config structs).
//!
//! The markdown is a small, fixed subset: `##` headings (a table such as
//! `` `[smtp]` `` or a prose section), `###` keys with `- Type:` and
//! `- Default:` lines, paragraphs, `-` lists, fenced code and
//! `` `term` `` / `: text` definitions. The output renders without a warning
//! under `groff -ww -man` (CI checks it).

use crate::daemon::build_info;

/// The configuration reference, compiled in (`ses-relay man --section 5`).
pub const CONFIGURATION_MD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docs/configuration.md"
));

/// `ses-relay.toml(5)`: the configuration reference.
pub fn config_page() -> String {
    let mut out = title("ses-relay.toml", 5, "File Formats");
    out.push_str(".SH NAME\nses\\-relay.toml \\- configuration file of ses\\-relay(8)\n");
    out.push_str(".SH SYNOPSIS\n/etc/ses\\-relay/ses\\-relay.toml\n");
    render_markdown(CONFIGURATION_MD, &mut out);
    out
}

/// `ses-relay(8)`: the commands of `command` (the binary's clap description),
/// then the static sections.
pub fn command_page(command: clap::Command) -> String {
    let mut out = title("ses-relay", 8, "System Administration");
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    out.push_str(&format!(".SH NAME\nses\\-relay \\- {}\n", inline(&about)));
    out.push_str(".SH SYNOPSIS\n");
    let commands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    for sub in &commands {
        out.push_str(&format!("{}\n.br\n", synopsis(&[sub.get_name()], sub)));
    }
    out.push_str(DESCRIPTION);
    for sub in &commands {
        out.push_str(&format!(
            ".SH \"{}\"\n",
            escape(&format!("ses-relay {}", sub.get_name()))
        ));
        command_section(&[sub.get_name()], sub, &mut out);
    }
    out.push_str(STATIC_SECTIONS);
    out
}

/// `.TH`, with the version as the source.
fn title(name: &str, section: u8, manual: &str) -> String {
    // `.nh`: no hyphenation, so paths and keys stay whole and copy as typed.
    format!(
        ".TH {name} {section} \"{}\" \"ses-relay {}\" \"{manual}\"\n.nh\n",
        build_info::BUILD_DATE,
        build_info::VERSION
    )
}

/// One command: its synopsis, what it does, its options; nested actions as subsections.
fn command_section(path: &[&str], command: &clap::Command, out: &mut String) {
    out.push_str(&format!("{}\n.PP\n", synopsis(path, command)));
    let about = command
        .get_long_about()
        .or(command.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    push_text(&sentence(&about), out);
    for arg in command.get_arguments().filter(|a| shown(a)) {
        out.push_str(&format!(".TP\n{}\n", arg_usage(arg)));
        let mut help = sentence(&arg.get_help().map(|h| h.to_string()).unwrap_or_default());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() {
            help.push_str(&format!(" Default: `{}`.", defaults.join(",")));
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if arg.get_action().takes_values() && !values.is_empty() {
            help.push_str(&format!(" One of {}.", values.join(", ")));
        }
        push_text(&help, out);
    }
    for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
        let mut nested = path.to_vec();
        nested.push(sub.get_name());
        out.push_str(&format!(
            ".SS \"{}\"\n",
            escape(&format!("ses-relay {}", nested.join(" ")))
        ));
        command_section(&nested, sub, out);
    }
}

/// Arguments worth a line: not clap's own `--help` / `--version`.
fn shown(arg: &clap::Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// `ses-relay cutover set` `[--config FILE]` ... `PERCENT`, bold and italic as man(7) wants.
fn synopsis(path: &[&str], command: &clap::Command) -> String {
    let mut line = format!(
        "\\fB{}\\fR",
        escape(&format!("ses-relay {}", path.join(" ")))
    );
    for arg in command.get_arguments().filter(|a| shown(a)) {
        let usage = arg_usage(arg);
        if arg.is_required_set() {
            line.push_str(&format!(" {usage}"));
        } else {
            line.push_str(&format!(" [{usage}]"));
        }
    }
    if command.has_subcommands() {
        line.push_str(" \\fIaction\\fR");
    }
    line
}

/// `--config FILE`, `--dev`, `PERCENT`.
fn arg_usage(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_ascii_uppercase());
    if arg.is_positional() {
        return format!("\\fI{}\\fR", escape(&value));
    }
    let flag = match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => arg.get_id().to_string(),
    };
    if arg.get_action().takes_values() {
        format!("\\fB{}\\fR \\fI{}\\fR", escape(&flag), escape(&value))
    } else {
        format!("\\fB{}\\fR", escape(&flag))
    }
}

const DESCRIPTION: &str = r#".SH DESCRIPTION
ses\-relay sits between a Postfix fleet (its \fBrelayhost\fR) and Amazon SES v2 or a legacy
SMTP relay. For each transaction it picks a route by the operator\-set SES percentage and the
cutover rules, DKIM\-signs the message, and answers 250 only after the upstream accepted it:
Postfix's queue is the only queue. A rollback guard lowers the SES percentage when SES fails.
.PP
Every command reads the configuration file (\fB\-\-config\fR, default
\fI/etc/ses\-relay/ses\-relay.toml\fR, described in \fBses\-relay.toml\fR(5)), or with
\fB\-\-dev\fR the development configuration compiled into the binary.
"#;

const STATIC_SECTIONS: &str = r#".SH SIGNALS
The running relay (\fBses\-relay run\fR) handles:
.TP
.B HUP
Re\-read the configuration file. The allowed clients, limits, cutover rules, TLS certificate,
DKIM keys and admin tokens change without a restart; the listeners, [ses], [legacy] and
admin.listen need one. A configuration with a problem is refused and the running one stays.
systemd's \fBExecReload\fR sends it.
.TP
.B TERM
Drain: stop accepting, answer idle sessions \fB421 4.3.0\fR, let transactions in flight finish
within \fBsmtp.shutdown\-grace\fR, then exit. systemd's \fBTimeoutStopSec\fR must be longer.
.TP
.B INT
Stop now, without waiting for transactions in flight (Postfix retries what was not answered).
.SH FILES
.TP
.I /etc/ses\-relay/ses\-relay.toml
The configuration file (\fBses\-relay.toml\fR(5)).
.TP
.I /etc/ses\-relay/admin\-token
The admin API's write token (\fBadmin.token\-file\fR), generated by the Debian package.
.TP
.I /var/lib/ses\-relay/cutover.json
The SES percentage set at run time (\fBcutover.state\-file\fR), which wins at startup.
.TP
.I /var/lib/ses\-relay/outbox
Messages written instead of sent, in outbox mode (\fBses.outbox\-dir\fR).
.TP
.I /lib/systemd/system/ses\-relay.service
The systemd unit (Type=notify, user ses\-relay).
.SH "EXIT STATUS"
.TP
.B 0
Success: the relay stopped cleanly, the configuration is valid, every preflight check passed,
the health check answered, or the cutover change was made.
.TP
.B 1
Failure: the configuration has a problem (each printed with its key), a preflight check failed,
the relay could not start, the admin API refused or could not be reached.
.TP
.B 2
The command line could not be parsed.
.SH ENVIRONMENT
.TP
.B SES_RELAY__\fITABLE\fB__\fIKEY\fR
Overrides a configuration key: \fBSES_RELAY__SMTP__MAX_RECIPIENTS=20\fR sets
\fBsmtp.max\-recipients\fR (see \fBses\-relay.toml\fR(5)).
.TP
.B RUST_LOG
A log filter that overrides \fBlog.level\fR.
.TP
.BR AWS_REGION ", " AWS_PROFILE ", " AWS_ACCESS_KEY_ID ", " AWS_SECRET_ACCESS_KEY ", " AWS_SESSION_TOKEN
The standard AWS chain, searched for the region and the credentials of SES, SSM and SQS
(after them: the profile files, then the instance role).
.TP
.B NOTIFY_SOCKET
Set by systemd; readiness is sent there once every listener is bound.
.SH "SEE ALSO"
\fBses\-relay.toml\fR(5), \fBpostconf\fR(5), \fBsystemd.service\fR(5), \fBsystemctl\fR(1)
.PP
/usr/share/doc/ses\-relay/README.md.gz
"#;

/// clap drops the period of a one-line help; the page reads as sentences.
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() || text.ends_with(['.', '!', '?', ')']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// Roff-escapes plain text: backslashes, hyphens (so keys and options copy as typed).
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('"', "\\(dq")
}

/// Markdown inline text to roff: `` `code` `` in bold, `[text](url)` as its text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            out.push_str(if code { "\\fR" } else { "\\fB" });
            code = !code;
            rest = &rest[1..];
            continue;
        }
        if c == '['
            && !code
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close..].find(')')
        {
            out.push_str(&inline(&rest[1..close]));
            rest = &rest[close + end + 1..];
            continue;
        }
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    if code {
        out.push_str("\\fR");
    }
    out
}

/// One line of text: inline markup, and a leading `.` or `'` kept from being a request.
fn push_line(line: &str, out: &mut String) {
    let line = inline(line.trim());
    if line.starts_with('.') || line.starts_with('\'') {
        out.push_str("\\&");
    }
    out.push_str(&line);
    out.push('\n');
}

/// Paragraphs of plain text (clap's help), each line through [`push_line`].
fn push_text(text: &str, out: &mut String) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        push_line(line, out);
    }
}

/// The markdown subset of `docs/configuration.md` to roff, from its first `##` on
/// (the lines before it speak of the file itself, not of the configuration).
fn render_markdown(md: &str, out: &mut String) {
    let mut lines = md.lines().skip_while(|l| !l.starts_with("## ")).peekable();
    // Whether the next text line starts a paragraph (after a heading, a blank line, a list).
    let mut new_paragraph = true;
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ") {
            let heading = heading.trim().trim_matches('`');
            // A table keeps its name (`[smtp]`); a prose section is upper case, as man(7) has them.
            let heading = if heading.starts_with('[') {
                escape(heading)
            } else {
                escape(&heading.to_uppercase())
            };
            if heading.contains(' ') || heading.starts_with('[') {
                out.push_str(&format!(".SH \"{heading}\"\n"));
            } else {
                out.push_str(&format!(".SH {heading}\n"));
            }
            new_paragraph = false;
        } else if let Some(key) = line.strip_prefix("### ") {
            out.push_str(&format!(
                ".SS \"{}\"\n",
                escape(key.trim().trim_matches('`'))
            ));
            new_paragraph = false;
        } else if line.starts_with("```") {
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                let code = code.replace('\\', "\\e").replace('-', "\\-");
                if code.starts_with('.') || code.starts_with('\'') {
                    out.push_str("\\&");
                }
                out.push_str(&code);
                out.push('\n');
            }
            out.push_str(".fi\n.RE\n");
            new_paragraph = true;
        } else if let Some(item) = line.strip_prefix("- ") {
            if let Some(field) = ["Type:", "Default:"]
                .into_iter()
                .find(|f| item.starts_with(f))
            {
                // A key's type and default: one tagged line each, as postconf(5) heads a parameter.
                out.push_str(if field == "Type:" { ".PP\n" } else { ".br\n" });
                out.push_str(&format!("\\fI{field}\\fR "));
                push_line(&item[field.len()..], out);
            } else {
                out.push_str(".IP \\(bu 2\n");
                push_line(item, out);
            }
            new_paragraph = true;
        } else if line.trim().is_empty() {
            new_paragraph = true;
        } else if lines.peek().is_some_and(|next| next.starts_with(": ")) {
            // `term` then `: definition`.
            out.push_str(".TP\n");
            push_line(line, out);
            if let Some(definition) = lines.next() {
                push_line(&definition[2..], out);
            }
            new_paragraph = true;
        } else {
            if new_paragraph {
                out.push_str(".PP\n");
                new_paragraph = false;
            }
            push_line(line, out);
        }
    }
}
