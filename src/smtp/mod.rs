//! The SMTP protocol layer, without I/O: bytes in, commands and message
//! bodies out; replies in, bytes out. Commands are parsed by `smtp-proto`;
//! this module adds the framing and limits RFC 5321 leaves to the server
//! (line length, bare CR/LF, message size) so it can be table-tested.

mod data;
mod input;
mod reply;

pub use data::{DataEnd, MessageReceiver, dot_stuff};
pub use input::{Command, Input, MAX_LINE_LEN};
pub use reply::Reply;
