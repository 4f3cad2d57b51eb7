//! The SMTP protocol layer, without I/O: bytes in, commands and message
//! bodies out; replies in, bytes out. Commands are parsed by `smtp-proto`;
//! this module adds the framing and limits RFC 5321 leaves to the server
//! (line length, bare CR/LF, message size) so it can be table-tested.

mod data;
mod input;
mod memory;
mod path;
mod reply;

pub use data::{DataEnd, MessageReceiver, dot_stuff};
pub use input::{Command, Input};
pub use memory::DataMemory;
pub use path::{ByteClass, Refusal};
pub use reply::Reply;

/// Random input never panics the protocol layer: a quick deterministic check
/// beside the coverage-guided fuzz targets in `fuzz/` (cargo-afl, docs/development.md,
/// "Fuzzing"). The buffering bounds have their own tests in `input` and `data`.
#[cfg(test)]
mod robustness {
    use super::*;

    /// xorshift64*: reproducible bytes without a dependency.
    struct Bytes(u64);

    impl Bytes {
        fn next(&mut self) -> u8 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        }

        /// Bytes biased toward the characters SMTP cares about.
        fn chunk(&mut self, len: usize) -> Vec<u8> {
            const ALPHABET: &[u8] = b"\r\n.:<>@ =MAILFROMRCPTTODATA\x00\xff";
            (0..len)
                .map(|_| {
                    let b = self.next();
                    if b < 160 {
                        ALPHABET[b as usize % ALPHABET.len()]
                    } else {
                        b
                    }
                })
                .collect()
        }
    }

    #[test]
    fn random_commands_and_data() {
        let mut rng = Bytes(0x5e5_2e1a7);
        for _ in 0..2_000 {
            let mut input = Input::new();
            let mut receiver: Option<MessageReceiver> = None;
            for _ in 0..8 {
                let len = rng.next() as usize * 8;
                input.push(&rng.chunk(len));
                loop {
                    if let Some(rx) = receiver.as_mut() {
                        match input.feed(rx) {
                            DataEnd::Pending => break,
                            _ => receiver = None,
                        }
                    } else {
                        match input.next_command() {
                            Some(Command::Request(smtp_proto::Request::Data)) => {
                                receiver = Some(MessageReceiver::new(512, 0))
                            }
                            Some(_) => {}
                            None => break,
                        }
                    }
                }
            }
        }
    }
}
