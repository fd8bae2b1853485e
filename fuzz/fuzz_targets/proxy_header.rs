//! Feeds arbitrary bytes to the PROXY protocol header parser (`--proxy-protocol`). Besides
//! "never panics", it checks what the connection reader relies on to consume exactly the
//! header and not one byte of the request after it:
//! - a complete header's length fits the input; a version 1 header ends in its first CRLF
//!   and is at most 107 bytes; a version 2 header is 16 bytes plus its length field;
//! - the verdict does not depend on what follows the header: the header alone parses the same;
//! - every shorter prefix of a complete header asks for more bytes, and never for more
//!   than the header holds (so waiting for them cannot read past it).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/proxy/protocol.rs"]
mod protocol;

use protocol::{parse, Parsed, V1_MAX_LEN, V2_HEADER_LEN, V2_SIGNATURE};

fuzz_target!(|data: &[u8]| {
    let verdict = parse(data);
    let Parsed::Complete { header, len } = verdict else {
        if let Parsed::Incomplete { at_least } = verdict {
            assert!(at_least > data.len());
        }
        return;
    };
    assert!(len <= data.len());
    if data.starts_with(&V2_SIGNATURE) {
        let body = usize::from(u16::from_be_bytes([data[14], data[15]]));
        assert_eq!(len, V2_HEADER_LEN + body);
    } else {
        assert!(data.starts_with(b"PROXY "));
        assert!(len <= V1_MAX_LEN);
        let crlf = data.windows(2).position(|w| w == b"\r\n").unwrap();
        assert_eq!(len, crlf + 2);
    }
    assert_eq!(parse(&data[..len]), Parsed::Complete { header, len });
    for cut in 0..len {
        match parse(&data[..cut]) {
            Parsed::Incomplete { at_least } => assert!(cut < at_least && at_least <= len),
            other => panic!("prefix of {cut} bytes gave {other:?}"),
        }
    }
});
