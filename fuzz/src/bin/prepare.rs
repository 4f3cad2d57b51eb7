//! AFL target: message preparation on arbitrary bytes
//! (`ses_relay_fuzz::prepare`).

fn main() {
    afl::fuzz!(|data: &[u8]| ses_relay_fuzz::prepare::run(data));
}
