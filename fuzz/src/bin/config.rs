//! AFL target: the config loader and `validate()` on hostile values of
//! every numeric key (`ses_relay_fuzz::config`).

fn main() {
    afl::fuzz!(|data: &[u8]| ses_relay_fuzz::config::run(data));
}
