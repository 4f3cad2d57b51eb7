//! AFL target: command and DATA framing over arbitrary read splits
//! (`ses_relay_fuzz::framing`).

fn main() {
    afl::fuzz!(|data: &[u8]| ses_relay_fuzz::framing::run(data));
}
